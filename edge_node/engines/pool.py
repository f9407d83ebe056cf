"""A stage's worker pool: model instances on their own threads, fed by one bounded priority queue.

Why not a ThreadPoolExecutor: the models are not thread-safe, so each worker owns one instance;
a reply's first sentence must overtake the tail of other replies (the device is waiting in
silence for it); and a job that cannot start in time must fail fast with ``BusyError`` so the
session can say so, instead of the device waiting in the speaking state for a turn that comes
minutes later. CTranslate2, onnxruntime and llama.cpp release the GIL while they compute, so
threads give real parallelism here; the pool's interface is what a process-backed pool would
keep.

An engine that raises inside a job is counted (``xiaozhi_engine_failures_total``) and, when the
pool was given a ``reload`` factory, its worker replaces that instance with a fresh one before
taking the next job ("it restarts", ``xiaozhi_engine_restarts_total``): after an exception in the
middle of a call the instance's state is unknown (a llama.cpp context mid-decode, an onnxruntime
session), and a broken instance that stayed in the pool would fail every turn it is given.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from edge_node import metrics
from edge_node.engines import priority

log = logging.getLogger(__name__)

M = TypeVar("M")
T = TypeVar("T")

FIRST = 0  # a reply's first sentence / the turn's ASR: the device is waiting in silence
NORMAL = 1


class BusyError(RuntimeError):
    """The stage could not take or start the job in time; the turn should say it is busy."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(f"{stage} busy: {reason}")
        self.stage = stage
        self.reason = reason


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    fn: Callable[[Any], Any] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    enqueued: float = field(compare=False)  # time.monotonic()
    # Set under the pool's lock: a worker took it / its start deadline passed first.
    started: bool = field(default=False, compare=False)
    abandoned: bool = field(default=False, compare=False)


class StagePool(Generic[M]):
    def __init__(
        self,
        stage: str,
        models: list[M],
        max_queue: int = 64,
        max_wait_s: float = 5.0,
        reserved_first: int = 0,
        reload: Callable[[int], M] | None = None,
    ) -> None:
        """``reserved_first`` workers take FIRST jobs only, so a device waiting in silence never waits
        behind the later sentences of replies that are already playing (capped at ``len(models) - 1``).
        ``reload(i)`` builds a fresh instance for worker ``i``, used after its instance raised."""
        if not models:
            raise ValueError(f"{stage}: a pool needs at least one model instance")
        self.stage = stage
        self.models = models
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cv = threading.Condition()
        self._closed = False
        self.busy_rejections = 0
        self.failures = 0
        self.restarts = 0
        self.running = 0  # jobs on a worker now (under the lock)
        # Seconds a job holds a worker, smoothed: what a queued job's wait is predicted from. Starts
        # at 0 (no refusal by prediction before anything was measured).
        self.job_s = 0.0
        self._reload = reload
        self.reserved_first = max(0, min(reserved_first, len(models) - 1))
        self._threads = [
            threading.Thread(target=self._work, args=(i, i < self.reserved_first), name=f"{stage}-{i}", daemon=True)
            for i in range(len(models))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def size(self) -> int:
        return len(self.models)

    def depth(self) -> int:
        with self._cv:
            return len(self._heap)

    def first_waiting(self) -> int:
        """FIRST jobs (a silent device's ASR, first clause or first sentence) that no worker is free to
        take: a job a free worker has not picked up yet (a thread waking) is not waiting for one."""
        with self._cv:
            queued = sum(1 for job in self._heap if job.priority == FIRST and not job.abandoned)
            return max(0, queued - max(0, len(self.models) - self.running))

    def _predicted_wait(self, priority: int) -> float:
        """Seconds until a new job of ``priority`` would start (under the lock): the jobs ahead of it
        go through the workers ``job_s`` at a time, the running ones half done on average."""
        ahead = sum(1 for job in self._heap if job.priority <= priority and not job.abandoned)
        workers = len(self.models) if priority == FIRST else len(self.models) - self.reserved_first
        free = max(0, workers - self.running)
        if ahead < free:
            return 0.0
        return (ahead - free + 0.5) * self.job_s / max(1, workers)

    async def run(self, fn: Callable[[M], T], priority: int = NORMAL, deadline: float | None = None) -> T:
        """Run ``fn(model)`` on a worker; raises BusyError when the queue is full or too slow.

        The job must start within the stage's ``max_wait_s`` and, when given, by ``deadline``
        (``time.monotonic()``: the turn's first-audio budget). The caller is told at that moment,
        not when a worker finally frees up, so a saturated node answers "busy" on time. A job
        that has started is never abandoned; a cancelled caller's job is never started.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        now = time.monotonic()
        start_by = now + self.max_wait_s if deadline is None else min(now + self.max_wait_s, deadline)
        job = _Job(priority, next(self._seq), fn, future, loop, now)
        with self._cv:
            if self._closed:
                raise RuntimeError(f"{self.stage} pool is closed")
            if len(self._heap) >= self.max_queue:
                self._reject("queue full")
                raise BusyError(self.stage, f"{len(self._heap)} jobs queued")
            predicted = self._predicted_wait(priority)
            if now + predicted > start_by:
                # Say "busy" now rather than after waiting out the bound for the same answer.
                self._reject("predicted wait")
                raise BusyError(self.stage, f"predicted wait {predicted:.1f} s, over the {start_by - now:.1f} s left")
            heapq.heappush(self._heap, job)
            metrics.QUEUE_DEPTH.labels(stage=self.stage).set(len(self._heap))
            # Every waiting worker re-checks: a reserved one may not take this job, another may.
            self._cv.notify_all()

        def expire() -> None:
            with self._cv:
                if job.started or future.done():
                    return
                job.abandoned = True
            self._reject("waited too long")
            waited = time.monotonic() - job.enqueued
            metrics.QUEUE_WAIT_SECONDS.labels(stage=self.stage).observe(waited)
            future.set_exception(BusyError(self.stage, f"waited {waited:.1f} s for a worker"))

        timer = loop.call_later(max(0.0, start_by - now), expire)
        try:
            return await future
        finally:
            timer.cancel()

    def _reject(self, reason: str) -> None:
        self.busy_rejections += 1
        metrics.BUSY.labels(stage=self.stage, reason=reason).inc()

    def _work(self, index: int, first_only: bool) -> None:
        def has_work() -> bool:
            # The heap's top is its most urgent job: FIRST whenever there is one.
            return bool(self._heap) and (not first_only or self._heap[0].priority == FIRST)

        while True:
            with self._cv:
                while not has_work() and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job = heapq.heappop(self._heap)
                metrics.QUEUE_DEPTH.labels(stage=self.stage).set(len(self._heap))
                # Barge-in while queued, or the caller was already told "busy": never done.
                if job.abandoned or job.future.cancelled():
                    continue
                job.started = True
                self.running += 1
            metrics.QUEUE_WAIT_SECONDS.labels(stage=self.stage).observe(time.monotonic() - job.enqueued)
            started = time.perf_counter()
            priority.use_priority(job.priority == FIRST)
            try:
                result = job.fn(self.models[index])
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                self.failures += 1  # counted before the caller hears of it
                metrics.ENGINE_FAILURES.labels(stage=self.stage).inc()
                self._finished(time.perf_counter() - started)
                self._settle(job, error=exc)
                self._replace(index, exc)
                continue
            self._finished(time.perf_counter() - started)  # before the caller hears: its next job sees it
            self._settle(job, result=result)

    def _finished(self, elapsed: float) -> None:
        metrics.STAGE_SECONDS.labels(stage=self.stage).observe(elapsed)
        with self._cv:
            self.running -= 1
            self.job_s = elapsed if self.job_s == 0 else 0.8 * self.job_s + 0.2 * elapsed

    def _replace(self, index: int, exc: BaseException) -> None:
        """On the worker's thread, after its instance raised: replace the instance when the pool can
        (``reload``) before this worker takes another job. A reload that fails keeps the old instance:
        a pool with a worker that may fail beats one with a worker missing."""
        if self._reload is None:
            log.warning(
                "%s worker %d: engine raised %r (instance kept: this pool cannot reload)", self.stage, index, exc
            )
            return
        started = time.perf_counter()
        try:
            fresh = self._reload(index)
        except Exception as reload_exc:  # noqa: BLE001 - a failed reload must not kill the worker
            metrics.ENGINE_RESTARTS.labels(stage=self.stage, result="failed").inc()
            log.error(
                "%s worker %d: engine raised %r and reloading it failed (%r): old instance kept",
                self.stage,
                index,
                exc,
                reload_exc,
            )
            return
        stale, self.models[index] = self.models[index], fresh
        close = getattr(stale, "close", None)
        if close is not None:  # an engine host's child process, a model's native memory
            try:
                close()
            except Exception as close_exc:  # noqa: BLE001 - the fresh instance is in place either way
                log.warning("%s worker %d: closing the replaced instance failed: %r", self.stage, index, close_exc)
        self.restarts += 1
        metrics.ENGINE_RESTARTS.labels(stage=self.stage, result="ok").inc()
        log.warning(
            "%s worker %d: engine raised %r: instance replaced by a fresh one (loaded in %.2f s)",
            self.stage,
            index,
            exc,
            time.perf_counter() - started,
        )

    @staticmethod
    def _settle(job: _Job, result: Any = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if job.future.done():
                return
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

        try:
            job.loop.call_soon_threadsafe(apply)
        except RuntimeError:
            pass  # the loop is gone (shutdown): nobody is waiting any more

    def close(self) -> None:
        with self._cv:
            self._closed = True
            pending, self._heap = self._heap, []
            self._cv.notify_all()
        for job in pending:
            self._settle(job, error=RuntimeError(f"{self.stage} pool closed"))
