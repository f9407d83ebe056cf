"""Fault: a device that stops reading in the middle of a long spoken reply.

A raw WebSocket device with a small receive buffer completes the hello, asks for a long reply, reads
the first second of it and then stops reading (its kernel stops acknowledging). The edge's memory for
it is bounded by ``server.send_buffer_bytes`` (WebSocket write limit plus SO_SNDBUF); once a send has
waited ``server.send_timeout_s`` the edge drops the connection, logs it with the device id and counts
it in ``xiaozhi_send_timeouts_total``. Meanwhile another device's turn is answered as fast as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import metric_value, text_turn
from tests.faults.helpers import (
    LONG_REPLY,
    RawDevice,
    RssSampler,
    log_lines,
    metrics_text,
    observed,
    timing_env,
    wait_until,
    write_profile,
)

pytestmark = pytest.mark.slow

SEND_TIMEOUT_S = 2.0
SLOW_ID = "aa:f5:00:00:00:01"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    profile = write_profile(tmp_path_factory.mktemp("slow-reader"), llm={"reply": LONG_REPLY})
    node = start_edge(
        "fault-slow-reader",
        timing_env(
            profile,
            XIAOZHI__LLM__MAX_TOKENS="600",
            XIAOZHI__SERVER__SEND_BUFFER_BYTES="4096",
            XIAOZHI__SERVER__SEND_TIMEOUT_S=str(SEND_TIMEOUT_S),
            XIAOZHI__CACHE__ENABLED="false",
        ),
    )
    yield node
    stop_edge(node)


async def _quick_turn(edge: EdgeProcess, device_id: str) -> float:
    """A well-behaved device's turn (an intent: one short sentence); its first-audio latency in ms."""
    turn = await text_turn(edge.url, device_id, "What time is it?", 30)
    assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0 and turn.first_audio_ms is not None
    return turn.first_audio_ms


async def test_a_device_that_stops_reading_is_dropped_and_others_are_unaffected(
    edge: EdgeProcess, tmp_path: Path
) -> None:
    baseline = [await _quick_turn(edge, f"aa:f5:00:00:01:{i:02x}") for i in range(2)]
    before = await metrics_text(edge)
    offset = edge.log_offset()
    slow = await RawDevice.device(edge.ws_port, SLOW_ID, rcvbuf=4096)
    with RssSampler(edge.pid) as rss:
        await slow.hello()
        await slow.send_json({"type": "listen", "state": "detect", "text": "Tell me a long story about the sea"})
        audio = 0
        deadline = time.monotonic() + 20
        while audio < 15 and time.monotonic() < deadline:  # about a second of the reply, then stop reading
            opcode, _ = await slow.recv_frame(20)
            audio += opcode == 2
        slow.pause()
        paused_at = time.monotonic()
        await asyncio.sleep(1.0)
        during = await _quick_turn(edge, "aa:f5:00:00:02:01")  # while the edge's sends to the slow one wait
        dropped = await wait_until(lambda: bool(log_lines(edge, "device stopped reading", offset)), 90)
        closed_after = time.monotonic() - paused_at
        assert dropped, edge.log_text()[offset:][-3000:]
        after_turn = await _quick_turn(edge, "aa:f5:00:00:02:02")
    slow.resume()
    frames, ending = await slow.drain_until_closed(10)
    await slow.close()
    after = await metrics_text(edge)
    line = log_lines(edge, "device stopped reading", offset)[0]
    assert f"device={SLOW_ID}" in line
    assert metric_value(after, "xiaozhi_send_timeouts_total") - metric_value(before, "xiaozhi_send_timeouts_total") == 1
    assert ending != "still open"
    # Bounded: the buffers are a few KiB, the reply's remaining audio is never queued for it.
    assert rss.growth_mb < 20, rss.samples
    limit = max(baseline) * 3 + 1000
    assert during < limit and after_turn < limit, (baseline, during, after_turn)
    assert "session crashed" not in edge.log_text()[offset:]
    observed(
        f"slow reader: stopped reading after {audio} audio frames; the edge dropped it {closed_after:.1f} s "
        f"later (send timeout {SEND_TIMEOUT_S:g} s, xiaozhi_send_timeouts_total +1, log names device={SLOW_ID}); "
        f"reading again it got {frames} buffered frames then {ending}; edge RSS +{rss.growth_mb:.1f} MB peak; "
        f"another device's first audio {during:.0f} ms during the stall, {after_turn:.0f} ms after "
        f"(baseline {min(baseline):.0f}-{max(baseline):.0f} ms)"
    )
