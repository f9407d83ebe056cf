"""Prometheus metrics that edge nodes and cloud workers share by name.

One app prefix, ``xiaozhi_``, on both tiers: a dashboard sums ``xiaozhi_stage_duration_seconds``
across edges and workers, and which tier or node a series came from is the scrape target's own
label (``job``, ``instance``, ``node``), never a label set in code. No metric is labelled by
device or session: a thousand devices would be a thousand series per metric. Per-device detail
goes to the log, whose every line carries the device and session id (``shared.logs``).

Each process is its own scrape target: an edge node is one process (its engines are threads),
a cloud worker is one process per role. So the default registry is enough; multiprocess mode
would only be needed if one target forked workers, which none does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from importlib import metadata
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "BUILD",
    "CLOUD_LINK_CONFIGURED",
    "CLOUD_LINK_UP",
    "LATENCY_BUCKETS",
    "LLM_TOKENS",
    "LOOP_LAG",
    "LOOP_TASKS",
    "STAGE_SECONDS",
    "WORKER_CAPACITY",
    "WORKER_INFLIGHT",
    "WORKER_REQUESTS",
    "metrics_handler",
    "sample_sum",
    "set_build_info",
    "watch_loop_lag",
]

# Voice latencies: what a person notices lies between 0.2 and 3 s, so the buckets are densest there.
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)

BUILD = Gauge("xiaozhi_build_info", "Always 1; the labels say what runs", ["component", "version", "commit"])
STAGE_SECONDS = Histogram(
    "xiaozhi_stage_duration_seconds",
    "Time spent in one pipeline stage (asr, llm, tts, llm_first_token, vad_tick, opus_decode, "
    "cloud_first_chunk on edges; cloud_llm_first_token, cloud_llm_total, cloud_asr on workers)",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
LLM_TOKENS = Counter(
    "xiaozhi_llm_tokens_total", "LLM tokens by direction (prompt, completion) and model", ["direction", "model"]
)
CLOUD_LINK_UP = Gauge("xiaozhi_cloud_link_up", "1 while this process is connected to its NATS server")
CLOUD_LINK_CONFIGURED = Gauge(
    "xiaozhi_cloud_link_configured", "1 when this process should have a NATS link (an edge with nats.url, a worker)"
)
LOOP_LAG = Histogram(
    "xiaozhi_event_loop_lag_seconds",
    "How late the event loop woke a 0.5 s timer: anything above a few ms means something blocks it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
LOOP_TASKS = Gauge("xiaozhi_event_loop_tasks", "Tasks alive on the event loop (counted every 5 s)")

# -- the worker side of a cloud service (shared.nats.streaming, cloud.workers) ------------------
WORKER_REQUESTS = Counter(
    "xiaozhi_worker_requests_total",
    "Requests a cloud worker took, by role and result (ok, error, cancelled, refused_busy, bad_request)",
    ["role", "result"],
)
WORKER_INFLIGHT = Gauge("xiaozhi_worker_inflight", "Requests a cloud worker is serving now", ["role"])
WORKER_CAPACITY = Gauge("xiaozhi_worker_capacity", "Requests a cloud worker serves at once at most", ["role"])


def _commit() -> str:
    """The git commit this process runs, from XIAOZHI_COMMIT (set by packaging) or the checkout."""
    env = os.environ.get("XIAOZHI_COMMIT")
    if env:
        return env[:12]
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def set_build_info(component: str) -> None:
    """Called once at start-up, before the loop serves anything (it may run git)."""
    try:
        version = metadata.version("xiaozhi-fleet")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    BUILD.labels(component=component, version=version, commit=_commit()).set(1)


async def watch_loop_lag(interval: float = 0.5, tasks_every: int = 10) -> None:
    """How late the loop wakes us: the early warning that something blocks it. Every
    ``tasks_every`` wakes it also counts the loop's tasks: a count that grows while sessions do
    not is a leak the soak run (bench/soak.py) looks for."""
    n = 0
    while True:
        before = time.perf_counter()
        await asyncio.sleep(interval)
        LOOP_LAG.observe(max(0.0, time.perf_counter() - before - interval))
        n += 1
        if n % tasks_every == 1:
            LOOP_TASKS.set(len(asyncio.all_tasks()))


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``. Rendering reads /proc for the thread CPU collector and grows with the
    number of series, so it runs off the loop."""
    body = await asyncio.to_thread(generate_latest)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def sample_sum(text: str, name: str, **labels: str) -> float:
    """The sum of another process's samples called ``name`` whose labels include ``labels`` (0
    when it has none yet), from its /metrics text: how the tests, the fleet run and the load
    generator read an edge's counters, with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
