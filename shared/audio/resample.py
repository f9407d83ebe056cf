"""Sample-rate conversion between the models and the device link.

Piper speaks at 22.05 kHz, Opus cannot carry that rate, and the device listens at 16/24 kHz; Silero
and Whisper need 16 kHz. soxr ("HQ") is used because it is fast, band-limited (no aliasing, unlike
``np.interp``) and already a dependency.
"""

from __future__ import annotations

import numpy as np
import soxr

__all__ = ["pcm_to_float", "resample"]


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample int16 mono PCM; returns int16 (a copy-free identity when the rates are equal)."""
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise ValueError(f"expected mono PCM as a 1-D array, got shape {arr.shape}")
    if arr.dtype != np.int16:
        arr = arr.astype(np.int16)
    if src_rate == dst_rate or arr.size == 0:
        return arr
    # soxr handles int16 natively (it clips internally), so no float round trip is needed.
    out = soxr.resample(arr, src_rate, dst_rate, quality="HQ")
    return np.asarray(out, dtype=np.int16)


def pcm_to_float(pcm: np.ndarray) -> np.ndarray:
    """int16 -> float32 in [-1, 1], the layout Silero, Whisper and sherpa-onnx expect."""
    arr = np.asarray(pcm)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32, copy=False)
    return arr.astype(np.float32) / 32768.0
