"""Test speech for the device client: Piper (bundled "joe" voice) at 16 kHz, cached on disk.

The device uplink is 16 kHz mono, so everything here returns int16 mono 16 kHz numpy arrays.
Synthesis is deterministic for a given text and voice, so results are cached as WAV files under
``$XIAOZHI_SPEECH_CACHE`` (default ``~/.cache/xiaozhi-speech/``), keyed by sha1 of the text:
a test run that has seen a sentence before never loads the voice at all.

Deliberately independent of ``shared.audio`` (uses ``wave``/``soxr`` directly).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soxr

__all__ = ["RATE", "cache_dir", "load_wav_16k", "save_wav", "synthesize_16k"]

RATE = 16000
# Bump when the synthesis recipe changes so stale cached WAVs are not reused.
_CACHE_VERSION = "joe-medium-v1"

_voice: Any = None
_voice_lock = threading.Lock()


def cache_dir() -> Path:
    env = os.environ.get("XIAOZHI_SPEECH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "xiaozhi-speech"


def _load_voice() -> Any:
    """Load the Piper voice once per process (lazily: importing this module costs nothing)."""
    global _voice
    with _voice_lock:
        if _voice is None:
            from piper import PiperVoice

            from shared.models import joe_piper_voice

            onnx, config = joe_piper_voice()
            _voice = PiperVoice.load(onnx, config_path=config)
        return _voice


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def synthesize_16k(text: str) -> np.ndarray:
    """Speak ``text`` with the bundled Piper voice; int16 mono 16 kHz, cached on disk by sha1(text)."""
    if not text.strip():
        raise ValueError("synthesize_16k needs non-empty text")
    key = hashlib.sha1(f"{_CACHE_VERSION}\n{text}".encode()).hexdigest()
    path = cache_dir() / f"{key}.wav"
    if path.is_file():
        try:
            return load_wav_16k(path)
        except (wave.Error, EOFError, ValueError):
            pass  # a corrupt cache entry (e.g. a killed writer): synthesise again
    voice = _load_voice()
    chunks: list[np.ndarray] = []
    rate = 22050
    for chunk in voice.synthesize(text):
        rate = chunk.sample_rate
        chunks.append(np.asarray(chunk.audio_float_array, dtype=np.float32))
    if not chunks:
        raise ValueError(f"Piper produced no audio for {text!r}")
    audio = np.concatenate(chunks)
    y = audio if rate == RATE else np.asarray(soxr.resample(audio, rate, RATE, quality="HQ"))
    pcm = _to_int16(y)
    try:
        save_wav(path, pcm, RATE)
    except OSError:
        pass  # a read-only home is not a reason to fail a test
    return pcm


def save_wav(path: str | os.PathLike[str], pcm: np.ndarray, rate: int) -> None:
    """Write int16 mono PCM as a WAV file atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".wav")
    try:
        with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(int(rate))
            w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_wav_16k(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PCM WAV file (8/16/24/32-bit, any rate, any channel count) as int16 mono 16 kHz."""
    with wave.open(str(path), "rb") as w:
        channels = w.getnchannels()
        width = w.getsampwidth()
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    if width == 2 and channels == 1 and rate == RATE:
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if width == 1:
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(raw, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        x = x[: len(x) - len(x) % channels].reshape(-1, channels).mean(axis=1)
    if rate != RATE and x.size:
        x = np.asarray(soxr.resample(x, rate, RATE, quality="HQ"), dtype=np.float32)
    return _to_int16(x)
