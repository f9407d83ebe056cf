"""Minimal WAV I/O with the stdlib ``wave`` module (tests, benchmarks, debugging dumps).

No soundfile/libsndfile dependency: only 16-bit PCM WAV is ever written or read here.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

__all__ = ["read_wav", "write_wav"]


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM WAV file; returns (int16 mono samples, sample rate). Stereo is mixed down."""
    with wave.open(str(path), "rb") as wf:
        channels = wf.getnchannels()
        width = wf.getsampwidth()
        rate = wf.getframerate()
        raw = wf.readframes(wf.getnframes())
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.int64) >> 16
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        data = data[: len(data) - len(data) % channels].reshape(-1, channels).mean(axis=1)
    return np.clip(data, -32768, 32767).astype(np.int16), rate


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> None:
    """Write int16 mono PCM as a 16-bit WAV file."""
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise ValueError(f"expected mono PCM as a 1-D array, got shape {arr.shape}")
    if arr.dtype != np.int16:
        arr = np.clip(arr, -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(sample_rate)
        wf.writeframes(arr.astype("<i2").tobytes())
