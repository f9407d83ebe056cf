"""The fault-handling pieces on their own, quickly: a pool worker replacing an instance that raised,
the timing LLM's fault injection, and the disk cache's once-per-kind error log and start-up check."""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

import pytest

from edge_node.cache.disk import DiskCache
from edge_node.engines.pool import StagePool
from edge_node.engines.timing import InjectedFault, TimingLlm, load_profile
from tests.faults.helpers import write_profile


class Flaky:
    """An engine that raises once it is broken, and stays broken (a corrupted model state)."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.broken = False

    def work(self, fail: bool) -> int:
        if fail or self.broken:
            self.broken = True
            raise RuntimeError(f"instance {self.generation} is broken")
        return self.generation


async def test_a_worker_replaces_an_instance_that_raised() -> None:
    made: list[int] = []

    def reload(index: int) -> Flaky:
        made.append(index)
        return Flaky(len(made))

    pool = StagePool("t", [Flaky(0)], reload=reload)
    try:
        assert await pool.run(lambda m: m.work(False)) == 0
        with pytest.raises(RuntimeError, match="instance 0 is broken"):
            await pool.run(lambda m: m.work(True))
        assert await pool.run(lambda m: m.work(False)) == 1  # the fresh instance, same single worker
        assert (pool.failures, pool.restarts, made) == (1, 1, [0])
    finally:
        pool.close()


async def test_a_failed_reload_keeps_the_worker_and_its_old_instance() -> None:
    def reload(_index: int) -> Flaky:
        raise OSError("model file gone")

    pool = StagePool("t", [Flaky(0)], reload=reload)
    try:
        with pytest.raises(RuntimeError):
            await pool.run(lambda m: m.work(True))
        with pytest.raises(RuntimeError, match="instance 0"):  # still there, still serving (and still broken)
            await pool.run(lambda m: m.work(False))
        assert (pool.failures, pool.restarts) == (2, 0)
    finally:
        pool.close()


def test_fault_injection_is_off_by_default_and_fires_on_its_trigger(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "please self-destruct"}]
    plain = TimingLlm(load_profile(write_profile(tmp_path, "plain.yaml", llm={"first_token_s": 0, "per_token_s": 0})))
    assert len(list(plain.stream_chat(messages))) > 5
    profile = load_profile(
        write_profile(
            tmp_path,
            "faulty.yaml",
            llm={"first_token_s": 0, "per_token_s": 0},
            faults={"llm_raise_on": "self-destruct", "llm_raise_after_words": 2, "llm_stays_broken": True},
        )
    )
    llm = TimingLlm(profile)
    said: list[str] = []
    with pytest.raises(InjectedFault):
        for word in llm.stream_chat(messages, cancel=threading.Event()):
            said.append(word)
    assert len(said) == 2
    with pytest.raises(InjectedFault, match="broken"):  # stays broken, whatever it is asked
        next(iter(llm.stream_chat([{"role": "user", "content": "hello"}])))


def test_disk_write_errors_are_counted_each_time_but_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = DiskCache(tmp_path / "tts", 1 << 20)

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with caplog.at_level(logging.WARNING, logger="edge_node.cache.disk"):
        for i in range(20):
            assert cache.put(f"k{i}", b"x" * 100) is False
    lines = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(lines) == 1 and "ENOSPC" in lines[0], lines
    assert cache.errors == 20 and len(cache) == 0
    assert not list((tmp_path / "tts").iterdir()), "failed writes must not leave temp files"


def test_entries_with_bad_headers_are_dropped_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = DiskCache(tmp_path, 1 << 20)
    assert cache.put("good", b"payload")
    good = next(tmp_path.glob("*.bin"))
    (tmp_path / ("1" * 64 + ".bin")).write_bytes(good.read_bytes()[:-3])  # truncated
    (tmp_path / ("2" * 64 + ".bin")).write_bytes(b"")
    (tmp_path / ("3" * 64 + ".bin")).write_bytes(os.urandom(64))
    with caplog.at_level(logging.WARNING, logger="edge_node.cache.disk"):
        reopened = DiskCache(tmp_path, 1 << 20)
    assert len(reopened) == 1 and reopened.get("good") == b"payload"
    assert reopened.corrupt == 3 and sorted(p.name for p in tmp_path.iterdir()) == [good.name]
    assert any("3 corrupt entries" in r.getMessage() for r in caplog.records)
