"""The caches in a real edge node: a repeated open question is answered from the answer cache (no LLM)
and its audio from the TTS cache (no Piper), in the same run (L1) and after a restart (L3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.client.device import Turn
from tests.conftest import EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import text_turn

pytestmark = pytest.mark.slow


async def _ask(edge: EdgeProcess, device_id: str, question: str) -> Turn:
    return await text_turn(edge.url, device_id, question, 90)


async def _stats(edge: EdgeProcess) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{edge.http}/stats")
    assert r.status_code == 200
    return r.json()


def _routes(log: str) -> list[str]:
    return [line.split("route=")[1].split()[0] for line in log.splitlines() if "-> route=" in line]


async def test_repeated_question_is_answered_from_the_cache(edge: EdgeProcess) -> None:
    question = "How many legs does a spider have?"
    before = await _stats(edge)
    offset = edge.log_offset()
    first = await _ask(edge, "aa:bb:cc:00:0c:01", question)
    second = await _ask(edge, "aa:bb:cc:00:0c:02", question)
    after = await _stats(edge)
    assert _routes(edge.log_text()[offset:]) == ["local_llm", "cache"]
    assert first.sentences and second.sentences == first.sentences
    assert second.audio_packets == first.audio_packets
    assert first.first_audio_ms is not None and second.first_audio_ms is not None
    assert second.first_audio_ms < first.first_audio_ms
    answer_before = before["caches"]["answer"]["l1"]["hits"]
    assert after["caches"]["answer"]["l1"]["hits"] == answer_before + 1
    assert after["caches"]["tts"]["hits"] >= before["caches"]["tts"]["hits"] + len(first.sentences)
    assert isinstance(after["sessions"], int)
    print(
        f"\nfirst audio: uncached {first.first_audio_ms:.0f} ms, cached {second.first_audio_ms:.0f} ms; "
        f"reply {first.sentences}"
    )


async def test_cached_answer_survives_a_restart(tmp_path: Path) -> None:
    question = "Who wrote the play Romeo and Juliet?"
    env = {"XIAOZHI__CACHE__DIR": str(tmp_path)}
    node = start_edge("cache-restart-1", env)
    try:
        first = await _ask(node, "aa:bb:cc:00:0c:03", question)
        assert _routes(node.log_text()) == ["local_llm"]
    finally:
        stop_edge(node)
    assert list((tmp_path / "answer").glob("*.bin")) and list((tmp_path / "tts").glob("*.bin"))
    node = start_edge("cache-restart-2", env)
    try:
        second = await _ask(node, "aa:bb:cc:00:0c:04", question)
        assert _routes(node.log_text()) == ["cache"]
        stats = (await _stats(node))["caches"]
    finally:
        stop_edge(node)
    assert second.sentences == first.sentences and second.audio_packets == first.audio_packets
    assert stats["answer"]["l3"]["hits"] == 1 and stats["answer"]["l1"]["hits"] == 0
    assert stats["tts"]["l3"]["hits"] >= len(first.sentences)
    print(
        f"\nafter restart: first audio uncached {first.first_audio_ms:.0f} ms, from L3 {second.first_audio_ms:.0f} ms"
    )
