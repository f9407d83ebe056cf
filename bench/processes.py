"""Helper processes started on this machine (cloud workers, provisioning, OpenAI-compatible
servers): each logs to a file and is stopped politely, then by force. The tests and the fleet run
start theirs with :func:`spawn`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen.server import ROOT

__all__ = ["Proc", "ready_field", "spawn"]


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def spawn(
    name: str,
    args: list[str],
    ready: str,
    timeout_s: float = 90,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> Proc:
    """Start ``args`` and wait until ``ready`` appears in its output (logged to ``log_dir``)."""
    log_dir = log_dir or ROOT / "test-artifacts"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{os.getpid()}.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    p = Proc(proc, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready in p.log_text():
            return p
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    p.stop()
    raise RuntimeError(f"{name} did not start:\n{p.log_text()[-3000:]}")


def ready_field(proc: Proc, key: str) -> str:
    """A ``key=value`` field of the process's READY line (``READY worker=... http=41234``)."""
    for line in proc.log_text().splitlines():
        if line.startswith("READY"):
            fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
            return fields[key]
    raise RuntimeError(f"no READY line in {proc.log_path}")
