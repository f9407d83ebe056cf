"""Real helper processes the tests start (OpenAI-compatible servers, cloud workers, Prometheus),
each logging to test-artifacts/ and stopped politely, then by force."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ARTIFACTS, ROOT


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


def spawn(name: str, args: list[str], ready: str, timeout_s: float = 90, env: dict[str, str] | None = None) -> Proc:
    """Start ``args`` and wait until ``ready`` appears in its output."""
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{name}-{os.getpid()}.log"
    log = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})  # fmt: skip
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
    raise AssertionError(f"no READY line in {proc.log_path}")


def start_prometheus(work: Path, jobs: dict[str, list[str]], port: int) -> Proc:
    """A real Prometheus (Debian's package) scraping ``jobs`` (job -> host:port targets) every second."""
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]} for job, hosts in jobs.items()],
    }
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return spawn("prometheus", [
        "prometheus", f"--config.file={path}", f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}"], "Server is ready to receive web requests", timeout_s=60)  # fmt: skip
