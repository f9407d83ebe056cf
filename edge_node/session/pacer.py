"""Downlink pacing: Opus packets leave at the rate the device plays them.

The device queues at most 40 packets and silently drops the rest (docs/protocol.md §2.8), and an
abort only silences what has not been sent yet. So the pacer keeps a small lead (the
pre-buffer) and otherwise sends each packet when the device is about to need it, scheduled
against an absolute clock so that a late wake-up is made up by the next packet instead of
accumulating drift. When the device has drained its queue (TTS was slower than playback), the
clock is re-anchored and the lead is rebuilt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from edge_node import metrics


class Pacer:
    """Paces one reply's packets; one instance per reply, owned by the reply task."""

    def __init__(
        self,
        frame_ms: int,
        prebuffer: int,
        send: Callable[[bytes], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.frame_s = frame_ms / 1000.0
        self.prebuffer = prebuffer
        self._send = send
        self._clock = clock
        self._anchor: float | None = None
        self._since_anchor = 0
        self.sent = 0
        self.first_sent_at: float | None = None
        self.max_lead = 0

    def _play_end(self) -> float:
        """When the device finishes playing everything sent so far (its clock, seen from here)."""
        if self._anchor is None:
            return self._clock()
        return self._anchor + self._since_anchor * self.frame_s

    def lead(self) -> int:
        """Packets queued on the device right now, by the playback model."""
        if self._anchor is None:
            return 0
        played = (self._clock() - self._anchor) / self.frame_s
        return max(0, int(round(self._since_anchor - played)))

    async def play(self, packets: list[bytes]) -> None:
        for packet in packets:
            now = self._clock()
            if self._anchor is None or now >= self._play_end():
                # The device ran dry (or this is the first packet): start a new lead.
                self._anchor = now
                self._since_anchor = 0
            due = self._anchor + (self._since_anchor - self.prebuffer) * self.frame_s
            if due > now:
                await asyncio.sleep(due - now)
                lag = max(0.0, self._clock() - due)  # how late the loop woke us
            else:  # behind schedule already (the pre-buffer's packets are due at once by design)
                lag = now - due if self._since_anchor >= self.prebuffer else 0.0
            metrics.AUDIO_SEND_LAG.observe(lag)
            await self._send(packet)
            if self.first_sent_at is None:
                self.first_sent_at = self._clock()
            self._since_anchor += 1
            self.sent += 1
            self.max_lead = max(self.max_lead, self.lead())

    def remaining_playout(self) -> float:
        """Seconds until the device has played the last packet sent."""
        return max(0.0, self._play_end() - self._clock())
