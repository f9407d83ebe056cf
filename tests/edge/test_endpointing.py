"""End of speech in auto mode: a command ends the turn at a short pause (early commit), an open
question waits out the full silence; both use the ASR started during that wait."""

from __future__ import annotations

import httpx
import pytest

from shared.client.device import DeviceClient, Turn
from tests.conftest import EdgeProcess
from tests.edge.helpers import metric_value, speech, words

pytestmark = pytest.mark.slow


async def _metrics(edge: EdgeProcess) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{edge.http}/metrics")).text


async def _spoken_turn(edge: EdgeProcess, device_id: str, text: str) -> Turn:
    client = DeviceClient(edge.url, device_id=device_id)
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.send_speech(speech(text), trailing_silence_ms=1500)
        return await client.wait_turn_end(60)
    finally:
        await client.close()


async def test_command_ends_at_the_pause_open_question_waits(edge: EdgeProcess) -> None:
    early = "xiaozhi_early_commits_total"
    used = "xiaozhi_speculative_asr_total"
    before = await _metrics(edge)
    offset = edge.log_offset()
    command = await _spoken_turn(edge, "aa:bb:cc:00:0e:01", "What time is it?")
    middle = await _metrics(edge)
    assert "time" in words(command.stt_text)
    assert metric_value(middle, early) == metric_value(before, early) + 1
    assert "turn ended at a 200 ms pause" in edge.log_text()[offset:]

    question = await _spoken_turn(edge, "aa:bb:cc:00:0e:02", "How do airplanes stay in the air?")
    after = await _metrics(edge)
    assert "airplanes" in words(question.stt_text)
    assert metric_value(after, early) == metric_value(middle, early), "an LLM question must wait out the silence"
    # Both transcripts came from the speculative ASR.
    assert metric_value(after, used, result="used") == metric_value(before, used, result="used") + 2
    # The command's turn ended sooner: by up to min_silence_ms - speculative_asr_ms (350 ms) on a quiet
    # machine, less when the ASR itself takes that long (a busy machine), never later.
    assert command.stt_ms is not None and question.stt_ms is not None
    assert command.stt_ms < question.stt_ms, (command.stt_ms, question.stt_ms)
