"""Per-device rate limits on a real edge (timing engines: it starts in seconds without models).

Each limit is driven past its edge by one device while another, well-behaved device on the same
edge goes on as if nothing happened: handshakes over ``limits.connects_per_min`` get 429, turns
over ``limits.turns_per_min`` are answered with the spoken slow-down message, and a text flood
over ``limits.text_per_s`` closes that connection with 1008. Each is counted in
``xiaozhi_rate_limited_total{kind}`` and logged with the device id, once, not once per refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from shared.client.device import DeviceClient, DeviceClientError
from tests.conftest import ROOT, EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import metric_value

SLOW_DOWN = "Slow down please, one question at a time."
QUESTION = "what time is it"  # answered by an intent: quick on timing engines


@pytest.fixture(scope="module")
def limited() -> Iterator[EdgeProcess]:
    node = start_edge(
        "limits-edge",
        {
            "XIAOZHI__TIMING__PROFILE": str(ROOT / "bench" / "fleet" / "timing.2026-11-25.yaml"),
            "XIAOZHI__LLM__WORKERS": "1",
            "XIAOZHI__TTS__WORKERS": "1",
            "XIAOZHI__ASR__WORKERS": "1",
            "XIAOZHI__LIMITS__CONNECTS_PER_MIN": "4",
            "XIAOZHI__LIMITS__TURNS_PER_MIN": "2",
            "XIAOZHI__LIMITS__TEXT_PER_S": "5",
            "XIAOZHI__LIMITS__TEXT_BURST": "15",
            "XIAOZHI__LIMITS__LOG_EVERY_S": "300",
            "XIAOZHI__LIMITS__SLOW_DOWN_MESSAGE": SLOW_DOWN,
        },
    )
    yield node
    stop_edge(node)


async def _metrics(edge: EdgeProcess) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{edge.http}/metrics", timeout=10)).text


async def _ask(client: DeviceClient, text: str = QUESTION) -> list[str]:
    await client.listen_start("auto")
    client.turn_reset()
    await client.listen_detect(text)
    turn = await client.wait_turn_end(30)
    assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0  # a complete spoken turn either way
    return turn.sentences


def _lines(edge: EdgeProcess, offset: int, needle: str) -> list[str]:
    return [line for line in edge.log_text()[offset:].splitlines() if needle in line]


async def test_handshakes_over_the_limit_get_429_and_other_devices_still_connect(limited: EdgeProcess) -> None:
    before = await _metrics(limited)
    offset = limited.log_offset()
    for _ in range(4):  # the burst: connects_per_min
        async with DeviceClient(limited.url, device_id="d8:3b:da:10:00:01"):
            pass
    for _ in range(3):
        with pytest.raises(DeviceClientError, match="HTTP 429"):
            await DeviceClient(limited.url, device_id="d8:3b:da:10:00:01").connect()
    async with DeviceClient(limited.url, device_id="d8:3b:da:10:00:02") as polite:
        assert polite.session_id and await _ask(polite) != [SLOW_DOWN]
    after = await _metrics(limited)
    name = "xiaozhi_rate_limited_total"
    assert metric_value(after, name, kind="connect") - metric_value(before, name, kind="connect") == 3
    name = "xiaozhi_ws_connections_total"
    assert metric_value(after, name, result="rate_limited") - metric_value(before, name, result="rate_limited") == 3
    lines = _lines(limited, offset, "rate limit: WebSocket handshakes")
    assert len(lines) == 1 and "d8:3b:da:10:00:01" in lines[0]  # one line for three refusals


async def test_turns_over_the_limit_are_answered_with_the_slow_down_message(limited: EdgeProcess) -> None:
    before = await _metrics(limited)
    offset = limited.log_offset()
    async with (
        DeviceClient(limited.url, device_id="d8:3b:da:20:00:01") as chatty,
        DeviceClient(limited.url, device_id="d8:3b:da:20:00:02") as polite,
    ):
        answers = [await _ask(chatty) for _ in range(4)]
        polite_answer = await _ask(polite)
    assert all(a != [SLOW_DOWN] for a in answers[:2]), answers
    assert answers[2:] == [[SLOW_DOWN], [SLOW_DOWN]]
    assert polite_answer != [SLOW_DOWN]
    after = await _metrics(limited)
    name = "xiaozhi_rate_limited_total"
    assert metric_value(after, name, kind="turn") - metric_value(before, name, kind="turn") == 2
    name = "xiaozhi_turns_total"
    assert metric_value(after, name, outcome="rate_limited") - metric_value(before, name, outcome="rate_limited") == 2
    lines = _lines(limited, offset, "rate limit: turns")
    assert len(lines) == 1 and "d8:3b:da:20:00:01" in lines[0] and "2/min" in lines[0]


async def test_a_text_flood_closes_that_connection_with_1008(limited: EdgeProcess) -> None:
    before = await _metrics(limited)
    offset = limited.log_offset()
    async with DeviceClient(limited.url, device_id="d8:3b:da:30:00:02") as polite:
        flood = DeviceClient(limited.url, device_id="d8:3b:da:30:00:01")
        await flood.connect()
        try:
            for _ in range(100):
                await flood.send_json({"type": "ping"})
        except Exception:  # noqa: BLE001 - the server may close while we still send
            pass
        assert await flood.wait_closed(10)
        assert flood.close_code == 1008 and flood.close_reason == "too many messages"
        await flood.close()
        # The other device's connection and turns are untouched.
        assert not polite.closed and await _ask(polite) != [SLOW_DOWN]
        await asyncio.sleep(0.5)
        assert not polite.closed
    after = await _metrics(limited)
    name = "xiaozhi_rate_limited_total"
    assert metric_value(after, name, kind="text") - metric_value(before, name, kind="text") == 1
    lines = _lines(limited, offset, "rate limit: text frames")
    assert len(lines) == 1 and "d8:3b:da:30:00:01" in lines[0]
