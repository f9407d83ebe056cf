"""Fault: the disk cache (L3) is corrupt or full.

(a) Corrupt: an edge fills its cache directory, stops, and the test damages every entry (truncated,
a flipped payload byte, garbage, empty) and adds debris (a half-written temp file, a foreign file,
an orphan entry). There is no separate index or database to corrupt: the index is rebuilt from the
directory at start. A new edge on that directory -- with no memory level, so every lookup reads the
disk -- starts, drops what it can see is bad at once, drops the rest when it reads them, and answers
exactly as before. The entries are damaged again while it runs, with the same result.

(b) Full: the edge runs with RLIMIT_FSIZE of 16 bytes, so every cache write fails (EFBIG, as a full
disk fails with ENOSPC). Turns are still answered, each failure is counted in
``xiaozhi_cache_errors_total`` but logged once per kind, and nothing crashes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.client.device import Turn
from tests.conftest import EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import metric_at_least, metric_value, text_turn
from tests.faults.helpers import (
    log_lines,
    metrics_text,
    observed,
    timing_env,
    write_profile,
)

pytestmark = pytest.mark.slow

QUESTION = "How many legs does a spider have?"  # reusable: its answer goes to the answer cache
DAMAGE = ("truncate", "flip", "garbage", "empty")


def _routes(edge: EdgeProcess, offset: int) -> list[str]:
    return [line.split("route=")[1].split()[0] for line in log_lines(edge, "-> route=", offset)]


async def _ask(edge: EdgeProcess, device_id: str, question: str = QUESTION) -> Turn:
    done = metric_value(await metrics_text(edge), "xiaozhi_turns_total")
    turn = await text_turn(edge.url, device_id, question, 30)
    assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0 and turn.sentences, turn.order
    # An answer is stored after its turn's tts/stop, before the turn is counted: wait for the count.
    assert await metric_at_least(edge.http, "xiaozhi_turns_total", done + 1) >= done + 1
    return turn


async def _caches(edge: EdgeProcess) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{edge.http}/stats", timeout=10)).json()["caches"]


def _damage(root: Path) -> dict[str, int]:
    """Damage every entry, one way after another; returns how many of each."""
    done = dict.fromkeys(DAMAGE, 0)
    entries = sorted(root.glob("*/*.bin"))
    assert entries, f"no cache entries under {root}"
    for i, path in enumerate(entries):
        kind = DAMAGE[i % len(DAMAGE)]
        data = path.read_bytes()
        if kind == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif kind == "flip":  # header intact, payload changed: only the CRC can tell
            path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
        elif kind == "garbage":
            path.write_bytes(os.urandom(len(data)))
        else:
            path.write_bytes(b"")
        done[kind] += 1
    return done


def _debris(root: Path) -> None:
    """What a crash or a careless operator leaves: a temp file, a foreign file, an orphan entry."""
    (root / "tts" / ".tmpk1ll3d").write_bytes(os.urandom(300))
    (root / "answer" / "notes.txt").write_text("not a cache entry")
    (root / "tts" / ("0" * 64 + ".bin")).write_bytes(b"XZC1" + os.urandom(40))


async def test_corrupt_cache_entries_are_dropped_and_answers_stay_right(tmp_path: Path) -> None:
    profile = write_profile(tmp_path)
    env = timing_env(profile, XIAOZHI__CACHE__DIR=str(tmp_path / "cache"), XIAOZHI__LLM__MAX_TOKENS="6")
    first = start_edge("fault-cache-fill", env)
    try:
        reference = await _ask(first, "aa:f3:00:00:00:01")
        await _ask(first, "aa:f3:00:00:00:06", "What is the capital of France?")  # more entries to damage
        await _ask(first, "aa:f3:00:00:00:07", "What time is it?")
    finally:
        stop_edge(first)
    root = tmp_path / "cache"
    damaged = _damage(root)
    _debris(root)
    # No memory level: every lookup reads the disk, so the damage cannot hide behind L1.
    edge = start_edge("fault-cache-corrupt", {**env, "XIAOZHI__CACHE__L1_MAX_MB": "0"})
    try:
        at_start = log_lines(edge, "removed at start")
        assert at_start, edge.log_text()[-2000:]
        dropped_at_start = sum(int(line.split(": ")[-1].split()[0]) for line in at_start)
        assert not (root / "tts" / ".tmpk1ll3d").exists() and not (root / "tts" / ("0" * 64 + ".bin")).exists()
        offset = edge.log_offset()
        again = await _ask(edge, "aa:f3:00:00:00:02")
        assert again.sentences == reference.sentences and _routes(edge, offset) == ["local_llm"]
        cached = await _ask(edge, "aa:f3:00:00:00:03")  # written back: a cache hit, from the disk
        assert cached.sentences == reference.sentences and _routes(edge, offset)[-1] == "cache"
        # Damaged again while it runs: found when read, dropped, answered right, and rewritten.
        before = await metrics_text(edge)
        running_damage = _damage(root)
        offset = edge.log_offset()
        third = await _ask(edge, "aa:f3:00:00:00:04")
        fourth = await _ask(edge, "aa:f3:00:00:00:05")
        assert third.sentences == fourth.sentences == reference.sentences
        assert _routes(edge, offset) == ["local_llm", "cache"]
        after = await metrics_text(edge)
        read_corrupt = metric_value(after, "xiaozhi_cache_errors_total", op="corrupt") - metric_value(
            before, "xiaozhi_cache_errors_total", op="corrupt"
        )
        assert read_corrupt >= 1 and log_lines(edge, "corrupt entry", offset)
        caches = await _caches(edge)
        assert edge.proc.poll() is None
        assert "Traceback" not in edge.log_text()
    finally:
        stop_edge(edge)
    corrupt_total = caches["answer"]["l3"]["corrupt"] + caches["tts"]["l3"]["corrupt"]
    observed(
        f"corrupt disk cache: {sum(damaged.values())} entries damaged ({damaged}) plus a temp file, a "
        f"foreign file and an orphan entry; the edge started, dropped {dropped_at_start} entries at start by "
        f"their headers (logged once per directory) and the payload-damaged one when read, and answered the "
        f"same {len(reference.sentences)} sentence(s) (LLM, then from the rewritten cache); damaged again "
        f"while running ({sum(running_damage.values())} entries): dropped when read ({read_corrupt:.0f} "
        f"counted, {corrupt_total} corrupt in /stats), same answer; there is no index/db file to corrupt "
        f"(the index is rebuilt from the directory)"
    )


async def test_a_full_disk_costs_no_turn_and_logs_once(tmp_path: Path) -> None:
    profile = write_profile(tmp_path)
    cache = tmp_path / "cache"
    env = timing_env(profile, XIAOZHI__CACHE__DIR=str(cache), XIAOZHI__LLM__MAX_TOKENS="6")
    # PYTHONDONTWRITEBYTECODE: the edge's own .pyc writes would fail on the limit too.
    edge = start_edge("fault-cache-full", {**env, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=60, fsize_bytes=16)
    try:
        before = await metrics_text(edge)
        offset = edge.log_offset()
        questions = [QUESTION, "What is the capital of France?", "Who painted the Mona Lisa?", QUESTION]
        turns = [await _ask(edge, f"aa:f3:00:00:01:{i:02x}", q) for i, q in enumerate(questions)]
        # Cache writes run off the event loop after their turn: on a busy machine the last ones land
        # after the last tts/stop, so wait for them (with a deadline) instead of counting at one instant.
        base = metric_value(before, "xiaozhi_cache_errors_total", op="write")
        failed = await metric_at_least(edge.http, "xiaozhi_cache_errors_total", base + 4, op="write") - base
        assert edge.proc.poll() is None, "the edge died"
        log = edge.log_text()[offset:]
    finally:
        stop_edge(edge)
    lines = [line for line in log.splitlines() if "disk cache: cannot write" in line]
    kinds = {line.split("errors are counted")[0].rsplit("further ", 1)[-1].strip() for line in lines}
    assert failed >= 4, failed  # every answer and every sentence's audio failed to reach the disk
    assert len(lines) == 2 and all("EFBIG" in line for line in lines), lines  # once per cache (tts, answer)
    assert turns[3].sentences == turns[0].sentences  # the memory level still answers the repeat
    assert not list(cache.glob("*/.tmp*")), "a failed write left its temp file"
    assert "Traceback" not in log
    observed(
        f"full disk (RLIMIT_FSIZE 16 B: EFBIG on every cache write): {len(turns)} turns answered, "
        f"{failed:.0f} failed writes counted in xiaozhi_cache_errors_total, {len(lines)} log lines "
        f"({', '.join(sorted(kinds))}; one per cache), no temp files left, edge alive"
    )
