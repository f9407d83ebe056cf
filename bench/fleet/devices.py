"""Simulated devices of the fleet run: boot, OTA, connect to the assigned edge, hold, talk.

Each device does what unmodified firmware does at boot: ``POST /xiaozhi/ota/`` to provisioning,
then opens the WebSocket it was told (with the token it got) and sends its hello. Then it holds
the session. A share of the devices (talkers) take turns like the load generator's devices: real
Opus speech at real-time pace, waiting for the reply and its playback, thinking, again.

When its connection drops (its edge died), a device tries the same server once more after a
second, as the firmware does when it is woken again; when that fails too it reboots, which means
a new OTA check, and provisioning sends it to a healthy edge. The time from losing the
connection to the next server hello is the device's recovery time.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from bench.loadgen.device import MIN_THINK_S, LoadState, one_turn
from bench.loadgen.mix import MixSampler
from bench.loadgen.pacing import DEFAULT_PREBUFFER
from shared.client.device import DeviceClient, DeviceClientError
from shared.client.ota import ota_request

__all__ = ["DeviceLog", "FleetState", "run_fleet_device"]

RETRY_S = 1.0  # the firmware's pause before trying its server again
OTA_BACKOFF_S = 2.0  # after an OTA answered 503 (no edge) or not at all


@dataclass
class DeviceLog:
    """What one device went through, as it saw it; times in ms, ``t`` in s from the run start."""

    index: int
    device_id: str
    talker: bool
    edge: str = ""  # the edge it is connected to now ("" while not connected)
    edges: list[str] = field(default_factory=list)  # every edge it was assigned, in order
    ota_ms: list[float] = field(default_factory=list)
    ota_failures: int = 0
    hello_ms: list[float] = field(default_factory=list)
    connect_failures: int = 0
    connected_at: float | None = None  # first server hello
    lost: list[tuple[float, str]] = field(default_factory=list)  # (t, edge) connections that dropped
    recovered: list[tuple[float, float, str]] = field(default_factory=list)  # (t, recovery ms, new edge)
    _lost_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "device_id": self.device_id,
            "talker": self.talker,
            "edge": self.edge,
            "edges": self.edges,
            "ota_failures": self.ota_failures,
            "connect_failures": self.connect_failures,
            "lost": self.lost,
            "recovered": self.recovered,
        }


@dataclass
class FleetState:
    """Shared by every device task (one event loop: no locks)."""

    load: LoadState  # turn records and the run's clock, as the load generator keeps them
    ota_url: str
    edge_by_port: dict[int, str]
    devices: list[DeviceLog] = field(default_factory=list)
    connected: Counter[str] = field(default_factory=Counter)  # edge -> devices holding a session there

    def now(self) -> float:
        return self.load.now()

    def edge_of(self, ws_url: str) -> str:
        port = httpx.URL(ws_url).port
        return self.edge_by_port.get(port or 0, f"unknown:{ws_url}")


def device_id(index: int) -> str:
    return f"f1:ee:00:00:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"


async def _ota(http: httpx.AsyncClient, state: FleetState, dev: DeviceLog, client_id: str) -> tuple[str, str] | None:
    headers, body = ota_request(dev.device_id, client_id)
    started = time.monotonic()
    try:
        r = await http.post(f"{state.ota_url}/xiaozhi/ota/", headers=headers, content=body)
    except httpx.HTTPError:
        dev.ota_failures += 1
        return None
    if r.status_code != 200:
        dev.ota_failures += 1
        return None
    dev.ota_ms.append((time.monotonic() - started) * 1000.0)
    ws = r.json().get("websocket") or {}
    return str(ws.get("url", "")), str(ws.get("token", ""))


async def run_fleet_device(
    dev: DeviceLog,
    state: FleetState,
    http: httpx.AsyncClient,
    start_delay_s: float,
    bank: dict[str, np.ndarray] | None = None,
    sampler: MixSampler | None = None,
    rate_per_min: float = 4.0,
    turn_timeout_s: float = 60.0,
) -> None:
    """One device from boot to the end of the run (``state.load.deadline``)."""
    loop = asyncio.get_running_loop()
    load = state.load
    rng = random.Random(dev.index)
    client_id = str(uuid.UUID(int=rng.getrandbits(128)))
    await asyncio.sleep(max(0.0, load.t0 + start_delay_s - loop.time()))
    target: tuple[str, str] | None = None
    failures = 0
    while loop.time() < load.deadline:
        if target is None:
            target = await _ota(http, state, dev, client_id)
            if target is None:
                await asyncio.sleep(OTA_BACKOFF_S * rng.uniform(0.5, 1.5))
                continue
            edge = state.edge_of(target[0])
            if not dev.edges or dev.edges[-1] != edge:
                dev.edges.append(edge)
        url, token = target
        client = DeviceClient(url, device_id=dev.device_id, client_id=client_id, token=token)
        started = time.monotonic()
        try:
            await client.connect()
        except DeviceClientError:
            await client.close()
            dev.connect_failures += 1
            failures += 1
            if failures >= 2:
                target = None  # the firmware gives up on this server: reboot, OTA again
            await asyncio.sleep(RETRY_S * rng.uniform(0.8, 1.2))
            continue
        failures = 0
        dev.hello_ms.append((time.monotonic() - started) * 1000.0)
        edge = state.edge_of(url)
        dev.edge = edge
        state.connected[edge] += 1
        now = state.now()
        if dev.connected_at is None:
            dev.connected_at = now
        if dev._lost_at is not None:
            dev.recovered.append((now, (now - dev._lost_at) * 1000.0, edge))
            dev._lost_at = None
        try:
            if bank is not None and sampler is not None:
                await _talk(client, dev, state, bank, sampler, rate_per_min, turn_timeout_s, rng)
            else:
                await client.wait_closed(max(0.0, load.deadline - loop.time()))
        finally:
            state.connected[edge] -= 1
            dev.edge = ""
            dropped = client.closed and loop.time() < load.deadline
            await client.close()
        if dropped:
            dev.lost.append((state.now(), edge))
            dev._lost_at = state.now()
            await asyncio.sleep(RETRY_S * rng.uniform(0.8, 1.2))


async def _talk(
    client: DeviceClient,
    dev: DeviceLog,
    state: FleetState,
    bank: dict[str, np.ndarray],
    sampler: MixSampler,
    rate_per_min: float,
    turn_timeout_s: float,
    rng: random.Random,
) -> None:
    """Turns until the connection drops or the run ends (the load generator's turn, think, repeat)."""
    loop = asyncio.get_running_loop()
    load = state.load
    interval = 60.0 / rate_per_min
    next_turn_at = loop.time() + rng.uniform(0, interval)
    while loop.time() < load.deadline and not client.closed:
        wait = next_turn_at - loop.time()
        if wait > 0:
            if await client.wait_closed(min(wait, max(0.0, load.deadline - loop.time()))):
                return
            continue
        category, phrase = sampler.sample()
        record = await one_turn(
            client, dev.index, category, phrase, bank[phrase], load, turn_timeout_s, DEFAULT_PREBUFFER
        )
        load.records.append(record)
        turn_s = (record.turn_total_ms or 0.0) / 1000.0
        think = rng.expovariate(1.0 / max(MIN_THINK_S, interval - turn_s))
        next_turn_at = loop.time() + client.playback_remaining_s() + think
