"""The edge node under test: spawning one, sampling its CPU and memory, reading its /metrics.

``spawn_edge`` starts ``python -m edge_node serve`` on free loopback ports and parses its
``READY ws=.. http=..`` line; the tests start their edge nodes with it too (tests/conftest.py).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["ROOT", "EdgeProcess", "ResourceSampler", "spawn_edge", "stop_edge"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class EdgeProcess:
    proc: subprocess.Popen[str]
    ws_port: int
    http_port: int
    log_path: Path
    temp_cache: Path | None = None  # removed by stop_edge

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/xiaozhi/v1/"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_offset(self) -> int:
        return len(self.log_text())

    def wait_for_log(self, needle: str, timeout: float = 10.0, after: int = 0) -> str:
        """Wait until the server log (from character offset ``after``) contains ``needle``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()[after:]
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in server log:\n{self.log_text()[after:][-3000:]}")


def parse_cpus(spec: str) -> set[int]:
    """ "0-1,3" -> {0, 1, 3} (taskset -c syntax)."""
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def spawn_edge(
    name: str = "loadgen-edge",
    env_extra: dict[str, str] | None = None,
    timeout: float = 180,
    log_dir: Path | None = None,
    config: str | None = None,
    fsize_bytes: int | None = None,
    cpus: str | None = None,
    root: Path | None = None,
) -> EdgeProcess:
    """Start an edge node on free ports with the bundled models; returns once it printed READY.

    ``fsize_bytes`` puts RLIMIT_FSIZE on the edge: every file it writes past that size fails with
    EFBIG, as writes to a full disk fail with ENOSPC (the fault tests). Its log then goes through a
    pipe (a pipe has no size limit) to a file this process writes, so the log stays complete.
    ``cpus`` pins the node to those CPUs (``taskset -c`` syntax: "0", "0-1"); it sizes its pools to them.
    ``root``: run the node from another checkout (an older commit, for a before/after comparison).
    """
    log_dir = log_dir or ROOT / "test-artifacts"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{os.getpid()}.log"
    env = dict(os.environ)
    env.update({"XIAOZHI__SERVER__HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"})
    env.update(env_extra or {})
    # A cold cache per run unless one is named: answers cached by an earlier run would make the
    # hit ratios (and the throughput) of this one look better than they are.
    temp_cache = None
    if "XIAOZHI__CACHE__DIR" not in env:
        temp_cache = Path(tempfile.mkdtemp(prefix=f"{name}-cache-"))
        env["XIAOZHI__CACHE__DIR"] = str(temp_cache)
    limit = None
    pin = parse_cpus(cpus) if cpus else None
    if fsize_bytes is not None or pin is not None:
        size = fsize_bytes

        def limit() -> None:
            if size is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
            if pin is not None:
                os.sched_setaffinity(0, pin)

    with log_path.open("w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_node", "serve", "--port", "0", "--http-port", "0"]
            + (["--config", str(Path(config).resolve())] if config else []),
            cwd=root or ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log_file if fsize_bytes is None else subprocess.PIPE,
            text=True,
            preexec_fn=limit,
        )
    assert proc.stdout is not None
    if proc.stderr is not None:
        stderr = proc.stderr

        def pump() -> None:
            with log_path.open("a", encoding="utf-8") as log:
                for line in stderr:
                    log.write(line)
                    log.flush()

        threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY"):
            parts = dict(p.split("=", 1) for p in line.split()[1:])
            return EdgeProcess(proc, int(parts["ws"]), int(parts["http"]), log_path, temp_cache)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    if temp_cache is not None:
        shutil.rmtree(temp_cache, ignore_errors=True)
    raise RuntimeError(f"edge node did not start:\n{log_path.read_text(errors='replace')[-4000:]}")


def stop_edge(edge: EdgeProcess) -> None:
    edge.proc.terminate()
    try:
        edge.proc.wait(15)
    except subprocess.TimeoutExpired:
        edge.proc.kill()
        edge.proc.wait()
    if edge.proc.stdout is not None:
        edge.proc.stdout.close()
    if edge.temp_cache is not None:
        shutil.rmtree(edge.temp_cache, ignore_errors=True)


@dataclass
class ResourceSampler:
    """Samples CPU% (100 = one core) and RSS of a process and its children every ``interval`` s.

    Runs on its own thread so it never stalls the load generator's event loop.
    """

    pid: int
    interval: float = 1.0
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (monotonic, cpu_pct, rss_mb)
    error: str = ""

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loadgen-sampler", daemon=True)
        self._procs: dict[int, psutil.Process] = {}

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        current = {root.pid: root}
        try:
            for child in root.children(recursive=True):
                current[child.pid] = child
        except psutil.Error:
            pass
        # Keep the Process objects so cpu_percent() measures since the previous call.
        for pid in list(self._procs):
            if pid not in current:
                del self._procs[pid]
        for pid, proc in current.items():
            if pid not in self._procs:
                self._procs[pid] = proc
                try:
                    proc.cpu_percent(None)  # the first call only sets the reference point
                except psutil.Error:
                    pass
        return list(self._procs.values())

    def _run(self) -> None:
        try:
            self._tree()
        except psutil.Error as exc:
            self.error = f"cannot sample pid {self.pid}: {exc}"
            return
        while not self._stop.wait(self.interval):
            cpu = rss = 0.0
            try:
                procs = self._tree()
            except psutil.Error as exc:
                self.error = f"pid {self.pid} went away: {exc}"
                return
            for proc in procs:
                try:
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.samples.append((time.monotonic(), cpu, rss / 2**20))
