"""The stage pool: one model per worker, priorities, bounded queue, queue-time limit."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from edge_node.engines.pool import FIRST, NORMAL, BusyError, StagePool


class FakeModel:
    """Fake engine (the pool is what is tested): records what ran, blocks until released."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.gate = threading.Event()

    def work(self, tag: str) -> str:
        self.gate.wait(5)
        self.ran.append(tag)
        return tag


async def test_runs_on_the_worker_and_returns() -> None:
    model = FakeModel()
    model.gate.set()
    pool = StagePool("t", [model])
    try:
        assert await pool.run(lambda m: m.work("a")) == "a"
        assert model.ran == ["a"]
    finally:
        pool.close()


async def test_first_sentences_overtake_queued_work() -> None:
    model = FakeModel()
    pool = StagePool("t", [model])
    try:
        blocker = asyncio.create_task(pool.run(lambda m: m.work("running")))
        await asyncio.sleep(0.05)
        tail = [asyncio.create_task(pool.run(lambda m, i=i: m.work(f"tail{i}"), NORMAL)) for i in range(3)]
        await asyncio.sleep(0.01)
        first = asyncio.create_task(pool.run(lambda m: m.work("first"), FIRST))
        await asyncio.sleep(0.05)
        model.gate.set()
        await asyncio.gather(blocker, first, *tail)
        assert model.ran == ["running", "first", "tail0", "tail1", "tail2"]
    finally:
        pool.close()


async def test_full_queue_refuses_at_once() -> None:
    model = FakeModel()
    pool = StagePool("t", [model], max_queue=2)
    try:
        running = asyncio.create_task(pool.run(lambda m: m.work("r")))
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(pool.run(lambda m: m.work("q"))) for _ in range(2)]
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(BusyError, match="queued"):
            await pool.run(lambda m: m.work("x"))
        assert time.perf_counter() - started < 0.1
        model.gate.set()
        await asyncio.gather(running, *queued)
        assert pool.busy_rejections == 1
    finally:
        pool.close()


async def test_job_that_waited_too_long_is_refused_not_run() -> None:
    model = FakeModel()
    pool = StagePool("t", [model], max_wait_s=0.1)
    try:
        running = asyncio.create_task(pool.run(lambda m: m.work("r")))
        await asyncio.sleep(0.02)
        late = asyncio.create_task(pool.run(lambda m: m.work("late")))
        await asyncio.sleep(0.3)
        model.gate.set()
        await running
        with pytest.raises(BusyError, match="waited"):
            await late
        assert model.ran == ["r"]
    finally:
        pool.close()


async def test_cancelled_job_is_skipped() -> None:
    model = FakeModel()
    pool = StagePool("t", [model])
    try:
        running = asyncio.create_task(pool.run(lambda m: m.work("r")))
        await asyncio.sleep(0.02)
        doomed = asyncio.create_task(pool.run(lambda m: m.work("doomed")))
        await asyncio.sleep(0.02)
        doomed.cancel()
        model.gate.set()
        await running
        await asyncio.sleep(0.05)
        assert model.ran == ["r"]
    finally:
        pool.close()


async def test_workers_run_in_parallel() -> None:
    models = [FakeModel(), FakeModel()]
    for m in models:
        m.gate.set()
    pool = StagePool("t", models)
    try:
        results = await asyncio.gather(*(pool.run(lambda m: (time.sleep(0.2), m.work("x"))[1]) for _ in range(2)))
        assert results == ["x", "x"]
        assert all(m.ran == ["x"] for m in models)
    finally:
        pool.close()


async def test_exceptions_reach_the_caller() -> None:
    pool = StagePool("t", [FakeModel()])
    try:
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda m: 1 / 0)
    finally:
        pool.close()


async def test_busy_is_told_at_the_deadline_not_when_a_worker_frees() -> None:
    model = FakeModel()
    pool = StagePool("t", [model], max_wait_s=10.0)
    try:
        running = asyncio.create_task(pool.run(lambda m: m.work("r")))
        await asyncio.sleep(0.02)
        started = time.monotonic()
        # The turn's budget (0.15 s) is shorter than the stage's own limit (10 s) and wins.
        with pytest.raises(BusyError, match="waited"):
            await pool.run(lambda m: m.work("late"), FIRST, deadline=time.monotonic() + 0.15)
        told_after = time.monotonic() - started
        assert 0.1 < told_after < 0.5, told_after  # the worker is still blocked on "r"
        model.gate.set()
        await running
        await asyncio.sleep(0.05)
        assert model.ran == ["r"]  # the abandoned job never ran
        assert pool.busy_rejections == 1
    finally:
        pool.close()


async def test_a_started_job_is_not_abandoned_at_its_deadline() -> None:
    model = FakeModel()
    pool = StagePool("t", [model])
    try:
        job = asyncio.create_task(pool.run(lambda m: m.work("slow"), FIRST, deadline=time.monotonic() + 0.05))
        await asyncio.sleep(0.2)  # started at once, still running past its start deadline
        model.gate.set()
        assert await job == "slow"
    finally:
        pool.close()


async def test_reserved_worker_takes_only_first_jobs() -> None:
    general, reserved = FakeModel(), FakeModel()
    pool = StagePool("t", [reserved, general], reserved_first=1)  # worker 0 is the reserved one
    try:
        tails = [asyncio.create_task(pool.run(lambda m, i=i: m.work(f"tail{i}"), NORMAL)) for i in range(3)]
        await asyncio.sleep(0.05)
        assert reserved.ran == [] and pool.depth() == 2  # one tail on the general worker, two queued
        reserved.gate.set()
        first = await asyncio.wait_for(pool.run(lambda m: m.work("first"), FIRST), 1.0)
        assert first == "first" and reserved.ran == ["first"]  # did not wait behind the tails
        general.gate.set()
        await asyncio.gather(*tails)
        assert general.ran == ["tail0", "tail1", "tail2"] and reserved.ran == ["first"]
    finally:
        pool.close()


def test_thread_priority_follows_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from edge_node.engines import priority

    if not priority.enabled():
        pytest.skip("no per-thread priorities on this platform")
    seen: list[int] = []

    def job() -> None:
        tid = threading.get_native_id()
        priority.use_priority(first=True)
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))
        priority.demote()
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))
        priority.use_priority(first=True)  # back up: needs CAP_SYS_NICE; without it priorities turn off
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))

    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    assert seen[:2] == [0, priority.TAIL_NICE]
    assert seen[2] == 0 or not priority.enabled()
    priority.set_enabled(True)


async def test_a_job_predicted_to_start_too_late_is_refused_at_once() -> None:
    """Jobs that held the worker ~0.3 s each, three queued: a job that must start within 0.5 s is
    told "busy" now, not after waiting out its 0.5 s; one with room enough is queued and runs."""
    model = FakeModel()
    pool = StagePool("t", [model], max_wait_s=30)

    def slow(m: FakeModel, tag: str) -> str:
        time.sleep(0.3)
        m.ran.append(tag)
        return tag

    try:
        model.gate.set()
        await pool.run(lambda m: slow(m, "measure"))
        assert 0.25 < pool.job_s < 1.0
        queued = [asyncio.create_task(pool.run(lambda m, i=i: slow(m, f"q{i}"), FIRST)) for i in range(4)]
        await asyncio.sleep(0.05)  # one running, three waiting: ~0.9 s before a new job starts
        started = time.monotonic()
        with pytest.raises(BusyError, match="predicted wait"):
            await pool.run(lambda m: slow(m, "late"), FIRST, deadline=time.monotonic() + 0.5)
        assert time.monotonic() - started < 0.1, "refused only after waiting"
        assert await pool.run(lambda m: slow(m, "fits"), FIRST, deadline=time.monotonic() + 10) == "fits"
        await asyncio.gather(*queued)
        assert "late" not in model.ran and pool.running == 0
    finally:
        pool.close()
