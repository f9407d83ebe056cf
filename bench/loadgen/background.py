"""Devices that load the node without talking: idle connections and uplink streams.

- idle devices connect, exchange hellos and then send nothing: what an edge holds for the devices
  of a site that are switched on but not in use. They measure memory per connection.
- streaming devices connect, ``listen/start`` in auto mode and stream quiet room noise as Opus at
  real-time pace for the whole run, like a device whose microphone is open: every packet goes
  through the node's batched VAD (and never becomes a turn). They measure what uplink audio from
  many devices does to the talking devices' downlink pacing.

A background device the node closes (its idle timeout, a restart) is counted and reconnected.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.client.device import ChannelClosed, DeviceClient, DeviceClientError

__all__ = ["Background", "connect_idle", "noise_packets", "stream_noise"]

NOISE_SECONDS = 3.0
NOISE_LEVEL = 40  # int16 RMS: a quiet room (about -58 dBFS), well below what Silero calls speech


@dataclass
class Background:
    """Counters of the background devices (one event loop, no locks)."""

    idle_target: int = 0
    streaming_target: int = 0
    idle_connected: int = 0
    streaming_connected: int = 0
    connect_errors: int = 0
    closed_by_server: int = 0
    packets_sent: int = 0
    notes: list[str] = field(default_factory=list)
    clients: list[DeviceClient] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "idle_devices": self.idle_target,
            "idle_connected": self.idle_connected,
            "streaming_devices": self.streaming_target,
            "streaming_connected": self.streaming_connected,
            "connect_errors": self.connect_errors,
            "closed_by_server": self.closed_by_server,
            "uplink_packets_sent": self.packets_sent,
        }


def noise_packets(frame_ms: int = 60, seed: int = 0) -> list[bytes]:
    """A few seconds of quiet noise, Opus-encoded like the firmware's microphone (looped by callers)."""
    rng = np.random.default_rng(seed)
    pcm = (rng.standard_normal(int(NOISE_SECONDS * 16000)) * NOISE_LEVEL).astype(np.int16)
    return DeviceClient("ws://unused", frame_ms=frame_ms).encode_speech(pcm)


def _device_id(kind: int, index: int) -> str:
    return f"10:b{kind}:00:00:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"


async def _connect(url: str, device_id: str, bg: Background) -> DeviceClient | None:
    client = DeviceClient(url, device_id=device_id, auto_listen=False)
    try:
        await client.connect()
    except DeviceClientError as exc:
        bg.connect_errors += 1
        if len(bg.notes) < 5:
            bg.notes.append(f"background {device_id}: {exc}"[:200])
        return None
    bg.clients.append(client)
    return client


async def connect_idle(url: str, count: int, bg: Background, concurrency: int = 50) -> float:
    """Connect ``count`` idle devices (hello only); returns the seconds it took. They stay open."""
    bg.idle_target = count
    started = time.monotonic()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            if await _connect(url, _device_id(1, i), bg) is not None:
                bg.idle_connected += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    return time.monotonic() - started


async def stream_noise(url: str, index: int, bg: Background, deadline: float, packets: list[bytes]) -> None:
    """One streaming device until ``deadline`` (loop time): listen/start, then noise at real-time pace."""
    loop = asyncio.get_running_loop()
    # Spread the streams' packet phases so they do not all arrive in the same millisecond.
    await asyncio.sleep((index % 60) * 0.001)
    while loop.time() < deadline:
        client = await _connect(url, _device_id(2, index), bg)
        if client is None:
            await asyncio.sleep(1.0)
            continue
        bg.streaming_connected += 1
        try:
            await client.listen_start("auto")
            frame_s = client.frame_ms / 1000
            t0 = loop.time()
            k = 0
            while loop.time() < deadline and not client.closed:
                delay = t0 + k * frame_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await client.send_audio(packets[k % len(packets)])
                bg.packets_sent += 1
                k += 1
        except (ChannelClosed, DeviceClientError):
            pass
        finally:
            bg.streaming_connected -= 1
        if client.closed and loop.time() < deadline:
            bg.closed_by_server += 1
        await client.close()


async def close_all(bg: Background) -> None:
    await asyncio.gather(*(c.close() for c in bg.clients), return_exceptions=True)
    bg.clients.clear()
