"""Where the process's CPU goes, by the role of each thread.

The design rule is that the event loop only moves bytes while the engines' threads do the
inference; this module is how that is checked on a running node rather than assumed. Each live
thread's CPU time (``/proc/self/task``, through psutil) is attributed by its Python thread name:

- ``event_loop``: the main thread (WebSocket, protocol, sessions, pacing, routing);
- ``asr``, ``llm``, ``tts``: the StagePool workers (model inference; TTS includes resampling and
  Opus encoding of the reply);
- ``vad``: the VAD batcher (uplink Opus decoding and the batched Silero call);
- ``audio``: bulk Opus decoding of push-to-talk utterances;
- ``cache``: the caches' disk I/O threads;
- ``native``: threads Python does not know, which the inference libraries start themselves
  (onnxruntime, CTranslate2, OpenMP and llama.cpp thread pools when ``threads`` > 1);
- ``other``: any other Python thread (the default asyncio executor, aiohttp's resolver).

Child processes that run an engine (the engine host's, ``edge_node/engines/host``) are registered with
their role and counted under it: the Chinese voice's CPU is TTS CPU though it is spent in another
process. A child's CPU stays counted after it ends, so the counter never goes down.

``server overhead`` in the load generator's report is event_loop + cache + other: everything that
is not model inference or audio coding. Thread CPU of threads that have exited is not counted, so
read the figures as deltas between two calls on a node whose engine threads live for the whole run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psutil
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import REGISTRY, Collector

ROLES = ("event_loop", "asr", "llm", "tts", "vad", "audio", "cache", "native", "other")
OVERHEAD_ROLES = ("event_loop", "cache", "other")

_PREFIXES = (("asr-", "asr"), ("llm-", "llm"), ("tts-", "tts"), ("vad", "vad"), ("audio", "audio"), ("cache-", "cache"))


def role_of(name: str | None, is_main: bool) -> str:
    if is_main:
        return "event_loop"
    if name is None:
        return "native"
    for prefix, role in _PREFIXES:
        if name.startswith(prefix):
            return role
    return "other"


_children_lock = threading.Lock()
_children: dict[int, tuple[str, psutil.Process, float]] = {}  # pid -> (role, process, CPU last read)
_retired = dict.fromkeys(ROLES, 0.0)  # CPU of registered children that have ended


def register_child(pid: int, role: str) -> None:
    """Count the process ``pid`` (an engine host's child) under ``role`` from now on."""
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return
    with _children_lock:
        _children[pid] = (role, process, 0.0)


def unregister_child(pid: int) -> None:
    """The child is ending: keep what it spent (read now, while it can still be read)."""
    with _children_lock:
        entry = _children.pop(pid, None)
        if entry is None:
            return
        role, process, last = entry
        _retired[role] += max(last, _cpu(process, last))


def _cpu(process: psutil.Process, fallback: float) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return fallback
    return times.user + times.system


def _children_cpu(out: dict[str, float]) -> None:
    with _children_lock:
        for role, value in _retired.items():
            out[role] += value
        for pid, (role, process, last) in list(_children.items()):
            now = max(last, _cpu(process, last))
            _children[pid] = (role, process, now)
            out[role] += now


def cpu_seconds_by_role() -> dict[str, float]:
    """CPU seconds (user + system) of the live threads of this process, summed per role, plus the
    registered child processes' under theirs."""
    main_id = threading.main_thread().native_id
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    out = dict.fromkeys(ROLES, 0.0)
    for thread in psutil.Process().threads():
        role = role_of(names.get(thread.id), thread.id == main_id)
        out[role] += thread.user_time + thread.system_time
    _children_cpu(out)
    return {role: round(value, 3) for role, value in out.items()}


class RoleCpuCollector(Collector):
    """``xiaozhi_thread_cpu_seconds_total{role}`` for Prometheus, read at scrape time."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "xiaozhi_thread_cpu_seconds",
            "CPU seconds of this process's live threads (and its engine hosts' children) by role",
            labels=["role"],
        )
        for role, seconds in cpu_seconds_by_role().items():
            family.add_metric([role], seconds)
        yield family


_registered = False


def register() -> None:
    """Add the collector to the default registry once per process."""
    global _registered
    if not _registered:
        REGISTRY.register(RoleCpuCollector())
        _registered = True
