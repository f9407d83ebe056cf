"""One simulated device: firmware in auto mode, turn after turn, until the deadline.

Per turn: ``listen/start`` (auto), the phrase's speech streamed as real Opus at real-time pace (plus
trailing silence, which the firmware keeps sending until ``tts/start``), wait for ``tts/stop``, let the
simulated playback queue drain, then "think". Think time is exponential with mean
``max(MIN_THINK_S, 60 / rate - turn_s)`` where ``turn_s`` is how long the turn just took, so a device
averages about ``rate`` turns per minute while the server keeps up (and fewer when it does not, like a
real user waiting for the answer). A closed connection is counted as an error and the device
reconnects (after a short back-off); a handshake the server refuses (HTTP 503 from admission
control) is counted as ``refused`` and retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bench.loadgen.mix import MixSampler
from bench.loadgen.pacing import DEFAULT_PREBUFFER, analyse_turn
from edge_node.config import QueueConfig
from shared.client.device import ChannelClosed, DeviceClient, DeviceClientError

__all__ = ["LoadState", "TurnRecord", "one_turn", "run_device"]

MIN_THINK_S = 0.5
BUSY_MESSAGE = QueueConfig().busy_message
RECONNECT_BACKOFF_S = 1.0
# Firmware violation counters that mean the server broke the protocol (queue_full_drops: it sent
# faster than the device plays, i.e. a pacing fault).
_VIOLATION_COUNTERS = (
    "audio_before_start",
    "audio_after_stop",
    "queue_full_drops",
    "decode_errors",
    "framing_errors",
    "invalid_json",
    "mcp_protocol_violations",
)


@dataclass
class TurnRecord:
    """One turn as the device saw it; times in ms from the end of speech, ``t`` in s from the run start."""

    t: float  # when the turn ended (or failed), seconds since the run started
    device: int
    category: str
    phrase: str
    stt_ms: float | None = None
    first_audio_ms: float | None = None
    tts_stop_ms: float | None = None
    turn_total_ms: float | None = None  # listen/start -> tts/stop (speech streaming included)
    speech_ms: float = 0.0
    packets: int = 0  # downlink packets accepted for playback
    max_queue_depth: int = 0
    violations: int = 0  # new firmware violation notes during this turn
    error: str = ""  # "" | "timeout" | "closed" | "send"
    stt_text: str = ""
    busy: bool = False  # the node answered with its spoken "busy" message (saturated)
    stalls: int = 0  # playback stalls: the device queue ran dry mid-reply (see bench.loadgen.pacing)
    jitter_ms: list[float] = field(default_factory=list, repr=False)
    stall_ms: list[float] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("jitter_ms")
        d["stall_ms"] = [round(x, 1) for x in self.stall_ms]
        return d


@dataclass
class LoadState:
    """Shared by all device tasks (one event loop, so no locks)."""

    t0: float  # loop.time() at the start of the run
    deadline: float  # loop.time() after which no new turn starts
    records: list[TurnRecord] = field(default_factory=list)
    connected: int = 0
    connects: int = 0
    reconnects: int = 0  # connections lost (closed by the server or the network) and reopened
    leaves: int = 0  # sessions a device ended itself (--session-turns: devices connecting and leaving)
    refused: int = 0  # handshakes refused (HTTP 503 from admission control, or full)
    connect_errors: int = 0  # other failures to connect or to get the server hello
    protocol_errors: int = 0  # firmware violation notes (see _VIOLATION_COUNTERS)
    violation_notes: list[str] = field(default_factory=list)
    connected_samples: list[tuple[float, int]] = field(default_factory=list)  # (s since t0, connected)

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self.t0


def _violations(client: DeviceClient) -> int:
    return sum(int(getattr(client, name, 0)) for name in _VIOLATION_COUNTERS)


async def _connect(index: int, url: str, state: LoadState) -> DeviceClient | None:
    client = DeviceClient(url, device_id=f"10:ad:00:00:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}", auto_listen=False)
    try:
        await client.connect()
    except DeviceClientError as exc:
        if "HTTP 503" in str(exc) or "HTTP 429" in str(exc):
            state.refused += 1
        else:
            state.connect_errors += 1
            state.violation_notes.append(f"device {index}: connect: {exc}"[:300])
        return None
    state.connects += 1
    return client


async def run_device(
    index: int,
    url: str,
    bank: dict[str, np.ndarray],
    sampler: MixSampler,
    state: LoadState,
    rate_per_min: float,
    start_delay_s: float,
    turn_timeout_s: float = 60.0,
    prebuffer: int = DEFAULT_PREBUFFER,
    session_turns: float = 0.0,
) -> None:
    """``session_turns`` > 0: after each turn the device leaves with probability 1/session_turns
    (closes its connection, as the firmware does when it goes back to idle) and reconnects after a
    pause of 1-5 s, so sessions come and go for the whole run (the soak's churn)."""
    loop = asyncio.get_running_loop()
    rng = random.Random(sampler.rng.random())
    interval = 60.0 / rate_per_min
    await asyncio.sleep(max(0.0, state.t0 + start_delay_s - loop.time()))
    client: DeviceClient | None = None
    # First turn after a uniform offset within one interval: arrivals do not come in lockstep.
    next_turn_at = loop.time() + rng.uniform(0, min(interval, max(0.0, state.deadline - loop.time())))
    try:
        while loop.time() < state.deadline:
            if client is None or client.closed:
                if client is not None:
                    state.connected -= 1
                    state.reconnects += 1
                    await client.close()
                    client = None
                    await asyncio.sleep(RECONNECT_BACKOFF_S)
                    continue
                client = await _connect(index, url, state)
                if client is None:
                    await asyncio.sleep(RECONNECT_BACKOFF_S + rng.uniform(0, RECONNECT_BACKOFF_S))
                    continue
                state.connected += 1
            wait = next_turn_at - loop.time()
            if wait > 0:
                await asyncio.sleep(min(wait, max(0.0, state.deadline - loop.time()) + 0.001))
                if loop.time() < next_turn_at:
                    continue  # the deadline came first (loop condition ends it)
            if client.closed:
                continue
            category, phrase = sampler.sample()
            record = await one_turn(client, index, category, phrase, bank[phrase], state, turn_timeout_s, prebuffer)
            state.records.append(record)
            turn_s = (record.turn_total_ms or 0.0) / 1000.0
            drain = client.playback_remaining_s()
            think = rng.expovariate(1.0 / max(MIN_THINK_S, interval - turn_s))
            next_turn_at = loop.time() + drain + think
            if session_turns > 0 and not client.closed and rng.random() < 1.0 / session_turns:
                await asyncio.sleep(drain)  # the reply plays out, then the device goes idle
                state.connected -= 1
                state.leaves += 1
                await client.close()
                client = None
                await asyncio.sleep(rng.uniform(1.0, 5.0))
    finally:
        if client is not None:
            if not client.closed:
                state.connected -= 1
            await client.close()


async def one_turn(
    client: DeviceClient,
    index: int,
    category: str,
    phrase: str,
    pcm: np.ndarray,
    state: LoadState,
    timeout_s: float,
    prebuffer: int,
) -> TurnRecord:
    record = TurnRecord(t=0.0, device=index, category=category, phrase=phrase, speech_ms=pcm.size / 16.0)
    notes_before = len(client.violations)
    count_before = _violations(client)
    started = time.monotonic()
    try:
        await client.listen_start("auto")
        await client.send_speech(pcm)
        turn = await client.wait_turn_end(timeout_s)
    except TimeoutError:
        record.error = "timeout"
    except ChannelClosed:
        record.error = "closed"
    except DeviceClientError as exc:
        record.error = f"send: {exc}"[:200]
    else:
        record.stt_ms = turn.stt_ms
        record.first_audio_ms = turn.first_audio_ms
        record.tts_stop_ms = turn.tts_stop_ms
        record.turn_total_ms = (time.monotonic() - started) * 1000.0
        record.packets = turn.audio_packets
        record.max_queue_depth = turn.max_queue_depth
        record.stt_text = turn.stt_text
        record.busy = BUSY_MESSAGE in turn.sentences
        arrivals = [e.at for e in turn.events if e.kind == "audio" and e.pcm is not None]
        record.jitter_ms, record.stall_ms = analyse_turn(arrivals, client.downlink_frame_ms, prebuffer)
        record.stalls = len(record.stall_ms)
    if record.error and record.turn_total_ms is None:
        record.turn_total_ms = (time.monotonic() - started) * 1000.0
    new = max(0, _violations(client) - count_before)
    record.violations = new
    if new:
        state.protocol_errors += new
        state.violation_notes.extend(f"device {index}: {n}" for n in client.violations[notes_before:][:5])
    record.t = state.now()
    return record
