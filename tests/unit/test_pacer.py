"""Downlink pacing against an absolute clock, with a virtual clock so the test is exact."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from edge_node.session.pacer import Pacer


@dataclass
class VirtualTime:
    """A clock that only moves when the pacer sleeps (or the test says so), and a send log."""

    now: float = 0.0
    sent: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def send(self, packet: bytes) -> None:
        self.sent.append(self.now)

    def pacer(self, prebuffer: int) -> Pacer:
        return Pacer(60, prebuffer, self.send, clock=self)


@pytest.fixture
def vt(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    clock = VirtualTime()
    monkeypatch.setattr(asyncio, "sleep", clock.sleep)
    return clock


async def test_prebuffer_then_real_time(vt: VirtualTime) -> None:
    pacer = vt.pacer(5)
    await pacer.play([b"x"] * 50)
    # The one that starts playing plus a lead of 5 go at once, then one per 60 ms.
    assert vt.sent[:6] == [0.0] * 6
    assert all(abs((vt.sent[i] - vt.sent[i - 1]) - 0.06) < 1e-9 for i in range(7, 50))
    assert pacer.max_lead <= 6
    # The device finishes 50 x 60 ms after the first packet.
    assert abs(pacer.remaining_playout() - (3.0 - vt.sent[-1])) < 1e-9


async def test_underrun_reanchors_and_rebuilds_the_lead(vt: VirtualTime) -> None:
    pacer = vt.pacer(3)
    await pacer.play([b"x"] * 4)
    vt.now += 2.0  # TTS was slow: the device drained its queue
    start = vt.now
    await pacer.play([b"x"] * 6)
    assert vt.sent[4:8] == [start] * 4  # a fresh pre-buffer
    assert abs(vt.sent[8] - (start + 0.06)) < 1e-9


async def test_never_exceeds_device_buffer(vt: VirtualTime) -> None:
    pacer = vt.pacer(5)
    for _ in range(10):
        await pacer.play([b"x"] * 30)
    assert pacer.max_lead <= 40
