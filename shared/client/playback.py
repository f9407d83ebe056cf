"""The firmware's downlink playback: the Opus decoder and the 40-packet decode queue.

The firmware (``audio_service.cc``) decodes downlink Opus with a decoder opened at the rate and
frame duration the server hello announced, its output buffer sized to that duration (a longer packet
fails to decode, docs/protocol.md §2.8), and queues at most 40 packets, dropping the rest. The model
plays the queue out in real time at the announced frame duration, so a server that sends faster than
real time fills it and one that paces its audio keeps it shallow. Whether a packet reaches playback at
all (only in the speaking state) is the state machine's decision, in ``DeviceClient``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import opuslib_next

from shared.client.events import Event

__all__ = [
    "DEFAULT_DOWNLINK_FRAME_MS",
    "DEFAULT_DOWNLINK_RATE",
    "MAX_DECODE_PACKETS_IN_QUEUE",
    "OPUS_RATES",
    "Playback",
]

DEFAULT_DOWNLINK_RATE = 24000  # firmware >= 1.5.4 default when the hello has no audio_params
DEFAULT_DOWNLINK_FRAME_MS = 60
MAX_DECODE_PACKETS_IN_QUEUE = 40  # FW audio_service.h
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class Playback:
    """Decoder and decode queue of one device; drops and depths are counted and noted."""

    def __init__(self, violation: Callable[[str], None]) -> None:
        self.rate = DEFAULT_DOWNLINK_RATE
        self.frame_ms = DEFAULT_DOWNLINK_FRAME_MS
        self.max_queue_depth = 0  # deepest the queue got, over the whole connection
        self.queue_full_drops = 0
        self.decode_errors = 0
        self._violation = violation
        self._decoder: Any = None
        self._decoder_frame_samples = 0
        self._play_end = 0.0  # monotonic time at which the simulated decode/playback queue runs dry

    def configure(self, rate: int, frame_ms: int) -> None:
        """The server hello's audio parameters: a decoder opened for them (FW on every hello)."""
        self.rate, self.frame_ms = rate, frame_ms
        self._open_decoder()

    def reset(self) -> None:
        """FW ``ResetDecoder`` on ``tts/start``: fresh decoder state, empty queue."""
        self._open_decoder()
        self._play_end = 0.0

    def remaining_s(self, now: float | None = None) -> float:
        """Seconds until the simulated playback queue runs dry (0 when nothing is playing)."""
        return max(0.0, self._play_end - (time.monotonic() if now is None else now))

    def play(self, packet: bytes, event: Event, now: float) -> None:
        """Queue one packet received at ``now`` and decode it; the outcome is written on ``event``.

        ``event.queue_depth`` is the depth after queueing; ``event.pcm`` the decoded audio, or
        ``event.dropped`` says why there is none (``queue_full`` or ``decode_error``).
        """
        frame_s = self.frame_ms / 1000
        if self._play_end < now:
            self._play_end = now  # queue empty (first packet, or an underrun): playback starts now
        queued = math.ceil((self._play_end - now) / frame_s - 1e-6)
        if queued >= MAX_DECODE_PACKETS_IN_QUEUE:
            self.queue_full_drops += 1
            event.dropped = "queue_full"
            event.queue_depth = queued
            self._violation("decode queue full (40 packets): packet dropped")
            return
        self._play_end += frame_s
        event.queue_depth = queued + 1
        self.max_queue_depth = max(self.max_queue_depth, queued + 1)
        if self._decoder is None:
            self.decode_errors += 1
            event.dropped = "decode_error"
            return
        try:
            pcm = self._decoder.decode(packet, self._decoder_frame_samples)
        except Exception as exc:  # opuslib_next.OpusError and friends
            self.decode_errors += 1
            event.dropped = "decode_error"
            self._violation(f"downlink Opus packet ({len(packet)} bytes) failed to decode: {exc}")
            return
        event.pcm = np.frombuffer(pcm, dtype=np.int16).copy()

    def _open_decoder(self) -> None:
        self._decoder = None
        self._decoder_frame_samples = self.rate * self.frame_ms // 1000
        if self.rate not in OPUS_RATES:
            self._violation(f"server hello sample_rate {self.rate} is not an Opus decoder rate")
            return
        self._decoder = opuslib_next.Decoder(self.rate, 1)
