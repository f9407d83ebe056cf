"""Downlink pacing against an absolute clock, with a virtual clock so the test is exact."""

from __future__ import annotations

import asyncio

from edge_node.session.pacer import Pacer


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_prebuffer_then_real_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = VirtualClock()
    sent: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    async def send(packet: bytes) -> None:
        sent.append(clock.now)

    pacer = Pacer(60, 5, send, clock=clock)
    await pacer.play([b"x"] * 50)
    # The one that starts playing plus a lead of 5 go at once, then one per 60 ms.
    assert sent[:6] == [0.0] * 6
    assert all(abs((sent[i] - sent[i - 1]) - 0.06) < 1e-9 for i in range(7, 50))
    assert pacer.max_lead <= 6
    # The device finishes 50 x 60 ms after the first packet.
    assert abs(pacer.remaining_playout() - (3.0 - sent[-1])) < 1e-9


async def test_underrun_reanchors_and_rebuilds_the_lead(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = VirtualClock()
    sent: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    async def send(packet: bytes) -> None:
        sent.append(clock.now)

    pacer = Pacer(60, 3, send, clock=clock)
    await pacer.play([b"x"] * 4)
    clock.now += 2.0  # TTS was slow: the device drained its queue
    start = clock.now
    await pacer.play([b"x"] * 6)
    assert sent[4:8] == [start] * 4  # a fresh pre-buffer
    assert abs(sent[8] - (start + 0.06)) < 1e-9


async def test_never_exceeds_device_buffer(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = VirtualClock()

    async def fake_sleep(seconds: float) -> None:
        clock.now += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    async def send(packet: bytes) -> None:
        return None

    pacer = Pacer(60, 5, send, clock=clock)
    for _ in range(10):
        await pacer.play([b"x"] * 30)
    assert pacer.max_lead <= 40
