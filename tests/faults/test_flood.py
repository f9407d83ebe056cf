"""Fault: devices that flood the edge with frames faster than real time.

Firmware streams its microphone in real time (one Opus packet per 60 ms here) and sends a handful
of text messages per turn. Three hostile devices on one edge: one streams speech at 20x real time
(reconnecting whenever it is dropped, like a firmware reconnect loop), one sends audio frames as
fast as TCP takes them, one sends a burst of text messages. Each is closed with 1008 and a reason
(limits.audio_per_s / limits.text_per_s) and counted in ``xiaozhi_rate_limited_total``; the edge's
memory stays bounded; and a well-behaved device speaking at the same time gets its first audio as
fast as in its own baseline turns (generous margin: the box is shared).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from shared.client.device import DeviceClient, DeviceClientError
from tests.conftest import EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import metric_value, speech
from tests.faults.helpers import RssSampler, log_lines, metrics_text, observed, timing_env, write_profile

pytestmark = pytest.mark.slow

QUESTION = "Tell me something nice about the weather."


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    # The timing ASR "hears" this one transcript: every voice turn is the same local-LLM turn.
    profile = write_profile(tmp_path_factory.mktemp("flood"), transcripts=[{"text": QUESTION, "weight": 1.0}])
    node = start_edge(
        "fault-flood", timing_env(profile, XIAOZHI__LLM__MAX_TOKENS="12", XIAOZHI__CACHE__ENABLED="false")
    )
    yield node
    stop_edge(node)


async def _voice_turn(edge: EdgeProcess, device_id: str) -> float:
    """A well-behaved device speaks the question in real time; its first-audio latency (ms after its speech)."""
    client = DeviceClient(edge.url, device_id=device_id)
    await client.connect()
    try:
        await client.listen_start("auto")
        await client.send_speech(speech(QUESTION))
        turn = await client.wait_turn_end(30)
    finally:
        await client.close()
    assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0 and turn.first_audio_ms is not None
    return turn.first_audio_ms


@dataclass
class Flooder:
    """What a flooding device saw: per connection (frames sent, seconds until closed, code, reason)."""

    device_id: str
    closes: list[tuple[int, float, int | None, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        codes = sorted({f"{code} {reason!r}" for _, _, code, reason in self.closes})
        sent = [n for n, _, _, _ in self.closes]
        secs = [s for _, s, _, _ in self.closes]
        refused = f"; {len(self.refused)} reconnect(s) refused ({self.refused[0]})" if self.refused else ""
        return (
            f"{len(self.closes)} connection(s), each closed after {min(secs):.2f}-{max(secs):.2f} s and "
            f"{min(sent)}-{max(sent)} frames with {', '.join(codes)}{refused}"
        )


async def _audio_flood(edge: EdgeProcess, flooder: Flooder, interval_s: float, stop: asyncio.Event) -> None:
    """Stream speech packets every ``interval_s`` (0: as fast as possible), reconnecting when closed."""
    packets: list[bytes] = []
    while not stop.is_set():
        client = DeviceClient(edge.url, device_id=flooder.device_id, features={})
        try:
            await client.connect()
        except DeviceClientError as exc:
            flooder.refused.append(str(exc).rsplit(":", 1)[-1].strip())
            await asyncio.sleep(0.5)
            continue
        packets = packets or client.encode_speech(speech(QUESTION))
        await client.listen_start("realtime")
        started, sent = time.monotonic(), 0
        try:
            while not client.closed and not stop.is_set():
                await client.send_audio(packets[sent % len(packets)])
                sent += 1
                await asyncio.sleep(interval_s)
        except DeviceClientError:
            pass
        await client.wait_closed(5)
        if client.closed and not stop.is_set():
            flooder.closes.append((sent, time.monotonic() - started, client.close_code, client.close_reason))
        await client.close()


async def _text_burst(edge: EdgeProcess, flooder: Flooder, count: int) -> None:
    client = DeviceClient(edge.url, device_id=flooder.device_id, features={})
    await client.connect()
    started, sent = time.monotonic(), 0
    try:
        for i in range(count):
            await client.send_json(
                {"type": "iot", "update": True, "states": [{"name": "Speaker", "state": {"volume": i % 100}}]}
            )
            sent += 1
    except DeviceClientError:
        pass
    await client.wait_closed(10)
    flooder.closes.append((sent, time.monotonic() - started, client.close_code, client.close_reason))
    await client.close()


async def test_floods_are_closed_and_a_polite_device_keeps_its_latency(edge: EdgeProcess) -> None:
    baseline = [await _voice_turn(edge, f"aa:f4:00:00:00:{i:02x}") for i in range(2)]
    before = await metrics_text(edge)
    offset = edge.log_offset()
    stop = asyncio.Event()
    fast, fastest, text = Flooder("aa:f4:00:00:01:01"), Flooder("aa:f4:00:00:01:02"), Flooder("aa:f4:00:00:01:03")
    with RssSampler(edge.pid) as rss:
        attacks = [
            asyncio.create_task(_audio_flood(edge, fast, 0.060 / 20, stop)),
            asyncio.create_task(_audio_flood(edge, fastest, 0.0, stop)),
            asyncio.create_task(_text_burst(edge, text, 500)),
        ]
        await asyncio.sleep(0.5)
        during = [await _voice_turn(edge, f"aa:f4:00:00:02:{i:02x}") for i in range(2)]
        stop.set()
        await asyncio.gather(*attacks)
    after = await metrics_text(edge)
    assert fast.closes and fastest.closes and text.closes
    assert all(code == 1008 and reason == "audio faster than real time" for _, _, code, reason in fast.closes)
    assert all(code == 1008 and reason == "audio faster than real time" for _, _, code, reason in fastest.closes)
    assert text.closes[0][2:] == (1008, "too many messages")
    name = "xiaozhi_rate_limited_total"
    audio_closed = metric_value(after, name, kind="audio") - metric_value(before, name, kind="audio")
    recorded = len(fast.closes) + len(fastest.closes)  # a connection closed as the attack stopped is not recorded
    assert recorded <= audio_closed <= recorded + 2
    assert metric_value(after, name, kind="text") - metric_value(before, name, kind="text") == 1
    # One log line per closed connection, naming the device, not one per frame.
    lines = log_lines(edge, f"rate limit: audio frames from {fast.device_id}", offset)
    assert len(fast.closes) <= len(lines) <= len(fast.closes) + 1
    assert rss.growth_mb < 40, rss.samples
    limit = max(baseline) * 2 + 1500
    assert max(during) < limit, (baseline, during)
    assert "session crashed" not in edge.log_text()[offset:]
    observed(
        f"flood: 20x real-time audio device: {fast.summary()}; full-speed audio device: {fastest.summary()}; "
        f"text burst of 500: closed after {text.closes[0][0]} frames with {text.closes[0][2]} "
        f"{text.closes[0][3]!r}; edge RSS +{rss.growth_mb:.1f} MB peak; a polite device's first audio "
        f"{min(during):.0f}-{max(during):.0f} ms during the floods (baseline {min(baseline):.0f}-"
        f"{max(baseline):.0f} ms)"
    )
