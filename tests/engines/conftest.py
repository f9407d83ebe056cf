"""Shared helpers for the engine tests: synthetic speech from espeak-ng (skipped when absent)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shared.audio.resample import resample
from shared.audio.wav import read_wav


@pytest.fixture(scope="session")
def espeak_16k(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], np.ndarray]:
    """Return a function text -> int16 16 kHz speech (espeak-ng, en-us), cached per text."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    folder: Path = tmp_path_factory.mktemp("espeak")
    cache: dict[str, np.ndarray] = {}

    def speak(text: str) -> np.ndarray:
        if text not in cache:
            out = folder / f"{len(cache)}.wav"
            subprocess.run([exe, "-v", "en-us", "-w", str(out), text], check=True, timeout=60)
            pcm, rate = read_wav(out)
            cache[text] = resample(pcm, rate, 16000)
        return cache[text]

    return speak
