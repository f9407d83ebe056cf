"""The device's microphone path: Opus encoding with the firmware's settings and real-time pacing.

The firmware encodes 16 kHz mono with application AUDIO, complexity 0 and DTX on
(``AS_OPUS_ENC_CONFIG``), one packet per binary frame, and sends as the microphone produces: one
packet per frame duration. Pacing runs on an absolute clock (packet k at ``t0 + k * frame``) so that
a slow send does not push every later packet back. What the audio *is* in a turn (speech, then
trailing silence cut short by ``tts/start``) is decided in ``DeviceClient.send_speech``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable

import numpy as np
import opuslib_next

from shared.client.errors import ChannelClosed

__all__ = ["UPLINK_RATE", "Uplink"]

UPLINK_RATE = 16000


class Uplink:
    """Encodes microphone PCM at ``frame_ms`` and streams the packets through ``send``."""

    def __init__(self, frame_ms: int, send: Callable[[bytes], Awaitable[None]]) -> None:
        self.frame_ms = frame_ms
        self._send = send  # one Opus packet -> one binary frame (framed for the protocol version)

    @property
    def frame_samples(self) -> int:
        return UPLINK_RATE * self.frame_ms // 1000

    def encode(self, pcm16k: np.ndarray) -> list[bytes]:
        """int16 mono 16 kHz -> Opus packets of ``frame_ms`` (last frame zero-padded).

        A fresh encoder with the firmware's settings (application AUDIO, complexity 0, DTX on).
        """
        pcm = np.asarray(pcm16k)
        if pcm.ndim != 1:
            raise ValueError(f"expected mono PCM (1-D), got shape {pcm.shape}")
        if np.issubdtype(pcm.dtype, np.floating):
            pcm = np.clip(pcm * 32768.0, -32768, 32767)
        pcm = pcm.astype(np.int16)
        n = self.frame_samples
        if pcm.size % n:
            pcm = np.concatenate([pcm, np.zeros(n - pcm.size % n, dtype=np.int16)])
        encoder = opuslib_next.Encoder(UPLINK_RATE, 1, opuslib_next.APPLICATION_AUDIO)
        encoder.complexity = 0
        encoder.dtx = True
        return [encoder.encode(pcm[i : i + n].tobytes(), n) for i in range(0, pcm.size, n)]

    def utterance(self, pcm16k: np.ndarray, trailing_silence_ms: int) -> tuple[list[bytes], int]:
        """Speech then silence as one continuous stream (one encoder, like a microphone that stays
        open): the packets, and how many of them carry the speech (the rest are the silence)."""
        n = self.frame_samples
        pcm = np.asarray(pcm16k)
        speech_frames = math.ceil(pcm.size / n) if pcm.size else 0
        silence_frames = math.ceil(max(0, trailing_silence_ms) / self.frame_ms)
        if speech_frames:
            pcm = np.concatenate([pcm.astype(np.int16), np.zeros(speech_frames * n - pcm.size, dtype=np.int16)])
        pcm = np.concatenate([pcm.astype(np.int16), np.zeros(silence_frames * n, dtype=np.int16)])
        return self.encode(pcm), speech_frames

    async def stream(
        self,
        packets: Iterable[bytes],
        realtime: bool,
        stop: Callable[[], bool] | None = None,
        t0: float | None = None,
        first_index: int = 0,
    ) -> int:
        """Send packets; with ``realtime`` packet k goes out at ``t0 + (first_index + k) * frame``.

        Ends early when ``stop()`` turns true or the connection closes (quietly, like the firmware
        dropping its send queue). Returns the number of packets sent.
        """
        loop = asyncio.get_running_loop()
        frame_s = self.frame_ms / 1000
        if t0 is None:
            t0 = loop.time()
        sent = 0
        for k, packet in enumerate(packets, start=first_index):
            if realtime:
                delay = t0 + k * frame_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # a burst, but let the receive task run
            if stop is not None and stop():
                break
            try:
                await self._send(packet)
            except ChannelClosed:
                break
            sent += 1
        return sent
