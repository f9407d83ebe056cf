"""Shared fixtures: a real edge node process on free loopback ports, with the bundled models."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@dataclass
class EdgeProcess:
    proc: subprocess.Popen[str]
    ws_port: int
    http_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/xiaozhi/v1/"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 10.0, after: int = 0) -> str:
        """Wait until the server log (from byte offset ``after``) contains ``needle``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()[after:]
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in server log:\n{self.log_text()[after:][-3000:]}")

    def log_offset(self) -> int:
        return len(self.log_text())


def start_edge(name: str, env_extra: dict[str, str] | None = None, timeout: float = 120) -> EdgeProcess:
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{name}-{os.getpid()}.log"
    env = dict(os.environ)
    env.update({"XIAOZHI__SERVER__HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"})
    # A fresh cache per node unless the test names one: answers cached by an earlier run must not
    # change which route a test sees.
    env["XIAOZHI__CACHE__DIR"] = tempfile.mkdtemp(prefix=f"{name}-cache-")
    env.update(env_extra or {})
    log_file = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_node", "serve", "--port", "0", "--http-port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY"):
            parts = dict(p.split("=") for p in line.split()[1:])
            return EdgeProcess(proc, int(parts["ws"]), int(parts["http"]), log_path)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"edge node did not start:\n{log_path.read_text()[-4000:]}")


def stop_edge(edge: EdgeProcess) -> None:
    edge.proc.terminate()
    try:
        edge.proc.wait(15)
    except subprocess.TimeoutExpired:
        edge.proc.kill()


@pytest.fixture(scope="session")
def edge() -> Iterator[EdgeProcess]:
    """One edge node for the whole run; idle timeout shortened so idle tests finish quickly."""
    node = start_edge("edge", {"XIAOZHI__SERVER__IDLE_TIMEOUT_S": "6"})
    yield node
    stop_edge(node)
