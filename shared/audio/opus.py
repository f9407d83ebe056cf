"""Opus encode/decode for the device link.

Why ``opuslib-next-bundled`` (import name ``opuslib_next``) and not ``opuslib``: it ships its own
``libopus.so``, so an edge node needs no apt package, and its API is the same as opuslib's. It was
also faster here: 0.58 ms vs 0.80 ms to encode one 60 ms frame (docs/models.md §6).

The uplink is 16 kHz mono from the device; the downlink is whatever the server hello announced
(24 kHz, 60 ms frames by default). Both wrappers speak int16 numpy arrays so callers never touch
raw byte buffers.
"""

from __future__ import annotations

import numpy as np
import opuslib_next

__all__ = ["AudioError", "OpusDecoder", "OpusEncoder"]

# The longest frame Opus allows; decoding with this as the buffer size accepts any packet duration.
MAX_FRAME_MS = 120

_APPLICATIONS = {
    "audio": opuslib_next.APPLICATION_AUDIO,
    "voip": opuslib_next.APPLICATION_VOIP,
    "restricted_lowdelay": opuslib_next.APPLICATION_RESTRICTED_LOWDELAY,
}


class AudioError(ValueError):
    """Audio input that cannot be used (an empty or corrupt Opus packet, a bad PCM array)."""


def _as_int16_mono(pcm: np.ndarray) -> np.ndarray:
    """Validate and normalise PCM to a contiguous 1-D int16 array (the only layout Opus gets here)."""
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise AudioError(f"expected mono PCM as a 1-D array, got shape {arr.shape}")
    if arr.dtype != np.int16:
        if np.issubdtype(arr.dtype, np.floating):
            raise AudioError("expected int16 PCM, got floating point samples (use int16)")
        arr = arr.astype(np.int16)
    return np.ascontiguousarray(arr)


class OpusDecoder:
    """Decode device Opus packets of any frame duration (2.5 to 120 ms) to int16 samples.

    Each session owns one: Opus decoding is stateful, so a decoder must see its own stream in order.
    """

    def __init__(self, sample_rate: int = 16000, channels: int = 1) -> None:
        if channels not in (1, 2):
            raise AudioError(f"channels must be 1 or 2, got {channels}")
        self.sample_rate = sample_rate
        self.channels = channels
        self._max_frame = sample_rate * MAX_FRAME_MS // 1000
        try:
            self._decoder = opuslib_next.Decoder(sample_rate, channels)
        except opuslib_next.OpusError as exc:
            raise AudioError(f"cannot create an Opus decoder at {sample_rate} Hz: {exc}") from exc

    def decode(self, packet: bytes) -> np.ndarray:
        """Decode one packet to int16 mono samples.

        An empty packet is refused rather than treated as packet-loss concealment: the WebSocket
        never carries an intentional empty frame, so one is a client bug worth reporting.
        """
        if not packet:
            raise AudioError("empty Opus packet")
        try:
            raw = self._decoder.decode(bytes(packet), self._max_frame)
        except opuslib_next.OpusError as exc:
            raise AudioError(f"corrupt Opus packet ({len(packet)} bytes): {exc}") from exc
        samples = np.frombuffer(raw, dtype=np.int16)
        if self.channels == 2:
            # Mix down so callers always get mono; int32 avoids overflow in the sum.
            samples = (samples.reshape(-1, 2).astype(np.int32).sum(axis=1) // 2).astype(np.int16)
        return samples


class OpusEncoder:
    """Encode int16 mono PCM into fixed-duration Opus packets for the device downlink.

    The device plays packets of exactly the duration announced in the server hello, so the last
    partial frame is zero-padded instead of sent short.
    """

    def __init__(
        self,
        sample_rate: int = 24000,
        frame_ms: int = 60,
        channels: int = 1,
        application: str = "audio",
    ) -> None:
        if application not in _APPLICATIONS:
            raise AudioError(f"application must be one of {sorted(_APPLICATIONS)}, got {application!r}")
        if channels != 1:
            raise AudioError("only mono downlink audio is supported")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.channels = channels
        self.application = application
        self.frame_samples = sample_rate * frame_ms // 1000
        self._encoder = self._create()

    def _create(self) -> opuslib_next.Encoder:
        try:
            return opuslib_next.Encoder(self.sample_rate, self.channels, _APPLICATIONS[self.application])
        except opuslib_next.OpusError as exc:
            raise AudioError(
                f"cannot create an Opus encoder at {self.sample_rate} Hz / {self.frame_ms} ms: {exc}"
            ) from exc

    def encode_pcm(self, pcm: np.ndarray) -> list[bytes]:
        """Encode the whole array; returns one packet per ``frame_ms`` (last frame zero-padded)."""
        samples = _as_int16_mono(pcm)
        if samples.size == 0:
            return []
        n = self.frame_samples
        remainder = samples.size % n
        if remainder:
            samples = np.concatenate([samples, np.zeros(n - remainder, dtype=np.int16)])
        packets: list[bytes] = []
        try:
            for start in range(0, samples.size, n):
                packets.append(self._encoder.encode(samples[start : start + n].tobytes(), n))
        except opuslib_next.OpusError as exc:
            raise AudioError(f"Opus encode failed: {exc}") from exc
        return packets

    def reset(self) -> None:
        """Start a fresh stream (OPUS_RESET_STATE) so a new reply carries no state from the last one."""
        reset_state = getattr(self._encoder, "reset_state", None)
        if reset_state is not None:
            try:
                reset_state()
                return
            except opuslib_next.OpusError:
                pass
        self._encoder = self._create()
