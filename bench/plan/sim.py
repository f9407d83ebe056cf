"""A discrete-event simulation of one edge node (SimPy): devices talking, cores doing the work.

The model follows what the edge really does (docs/architecture.md):

- a turn starts at the end of the user's speech; ASR starts after ``early_commit_s`` of silence
  (speculative ASR), and a reply may not start before ``endpoint_s`` of silence (the VAD's wait),
  except intent and cache turns, which commit early;
- every stage holds an instance of its engine pool (ASR one per core, LLM four per core, TTS one
  per core plus one) for as long as it runs, and needs a core for its CPU work; first-clause work
  (ASR, the LLM's first clause, the first sentence's TTS) goes before reply tails (the rest of the
  LLM's reply and its TTS). An LLM instance stays busy until the whole reply is generated, so under
  load the next turn waits for an instance, not only for a core: that is where "busy" comes from;
- a turn whose ASR or LLM cannot start within ``budget_s`` of the end of speech is answered
  "busy" at once (``queues.first_audio_budget_s``);
- cloud turns wait on the cloud's LLM (a pool of GPU stream slots) instead of the edge's cores.

Service times are CPU seconds per job, gamma-distributed around their measured means with
coefficient of variation ``service_cv`` (1.0 = exponential, the M/M/c case).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import simpy

__all__ = ["EdgeModel", "RouteCost", "SimResult", "simulate_edge"]

FIRST, TAIL = 0, 1


@dataclass(frozen=True)
class RouteCost:
    share: float
    asr_s: float = 0.0
    llm_first_s: float = 0.0
    llm_total_s: float = 0.0
    tts_first_s: float = 0.0
    tts_total_s: float = 0.0
    cloud_first_s: float = 0.0
    cloud_total_s: float = 0.0
    early_commit: bool = False  # answered at the short pause (intent, cache)


@dataclass(frozen=True)
class EdgeModel:
    routes: dict[str, RouteCost]
    endpoint_s: float = 0.55
    early_commit_s: float = 0.2
    budget_s: float = 3.0
    service_cv: float = 0.6
    overhead_s: float = 0.0  # CPU per turn outside the stages (event loop, VAD, Opus)
    cloud_slots: int = 10_000  # the cloud's concurrent LLM streams seen by this edge
    # Engine instances per core, as the edge sizes its pools (shared/settings.py pool_size).
    asr_workers_per_core: int = 1
    llm_workers_per_core: int = 4
    tts_workers_per_core: int = 1
    tts_reserved: int = 1
    tail_max_wait_s: float = 4.0  # queues.*_max_wait_s: a reply tail waiting longer is cut short
    # How the node scales with cores, measured, not assumed: the share of its work that does not
    # spread over cores (Amdahl's serial fraction), fitted from the same load run pinned to 1 and to
    # 2 cores (bench/cores.py: s = 2 / ratio - 1). The costs above were measured on
    # ``measured_cores``; an edge of more cores gets proportionally less from each.
    serial_fraction: float = 0.0
    measured_cores: int = 2

    def speedup(self, cores: int) -> float:
        """Amdahl: how many times one core's throughput ``cores`` cores give."""
        s = self.serial_fraction
        return 1.0 / (s + (1.0 - s) / cores)

    def slowdown(self, cores: int) -> float:
        """Factor on every measured CPU cost on an edge of ``cores`` cores (1.0 at ``measured_cores``)."""
        per_core = self.speedup(cores) / cores
        return (self.speedup(self.measured_cores) / self.measured_cores) / per_core

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeModel:
        routes = {name: RouteCost(**cost) for name, cost in (data.get("routes") or {}).items()}
        if not routes or abs(sum(r.share for r in routes.values()) - 1.0) > 1e-6:
            raise ValueError("routes' shares must add up to 1")
        keys = (
            "endpoint_s",
            "early_commit_s",
            "budget_s",
            "service_cv",
            "overhead_s",
            "asr_workers_per_core",
            "llm_workers_per_core",
            "tts_workers_per_core",
            "tts_reserved",
            "tail_max_wait_s",
            "serial_fraction",
            "measured_cores",
        )
        known = {k: data[k] for k in keys if k in data}
        return cls(routes=routes, **known)

    def cpu_per_turn(self) -> float:
        return self.overhead_s + sum(r.share * (r.asr_s + r.llm_total_s + r.tts_total_s) for r in self.routes.values())


@dataclass
class SimResult:
    devices: int
    turns: int
    busy: int
    first_audio: list[float] = field(default_factory=list)
    asr_waits: list[float] = field(default_factory=list)  # time each ASR job queued for a core
    cut_short: int = 0  # reply tails dropped after waiting too long (the whole run)
    cpu_utilisation: float = 0.0

    @property
    def busy_share(self) -> float:
        return self.busy / self.turns if self.turns else 0.0

    def percentile(self, q: float) -> float:
        if not self.first_audio:
            return 0.0
        values = sorted(self.first_audio)
        return values[min(len(values) - 1, int(q * len(values)))]


def simulate_edge(
    model: EdgeModel,
    devices: int,
    turns_per_min: float,
    cores: int,
    minutes: float = 30.0,
    seed: int = 1,
    warmup_min: float = 2.0,
) -> SimResult:
    """Simulate ``minutes`` of traffic; statistics cover turns that start after the warm-up."""
    rng = random.Random(seed)
    env = simpy.Environment()
    cpu = simpy.PriorityResource(env, capacity=cores)
    # The engine pools (edge_node/engines/pool.py): a job holds one model instance while it runs.
    asr_pool = simpy.PriorityResource(env, capacity=model.asr_workers_per_core * cores)
    llm_pool = simpy.PriorityResource(env, capacity=model.llm_workers_per_core * cores)
    tts_pool = simpy.PriorityResource(env, capacity=model.tts_workers_per_core * cores + model.tts_reserved)
    cloud = simpy.Resource(env, capacity=max(1, model.cloud_slots))
    result = SimResult(devices, 0, 0)
    busy_time = [0.0]
    warmup = warmup_min * 60
    names = list(model.routes)
    weights = [model.routes[n].share for n in names]

    slowdown = model.slowdown(cores)

    def service(mean: float, edge: bool = True) -> float:
        if mean <= 0:
            return 0.0
        if edge:
            mean *= slowdown
        cv = model.service_cv
        if cv <= 0:
            return mean
        shape = 1.0 / (cv * cv)
        return rng.gammavariate(shape, mean / shape)

    def on_core(mean: float, priority: int):  # type: ignore[no-untyped-def]
        """CPU work: waits for a core (first-clause work before tails), then runs. A reply tail that
        waits longer than ``tail_max_wait_s`` is dropped: the edge cuts the reply short."""
        duration = service(mean)
        if duration <= 0:
            return
        with cpu.request(priority=priority) as req:
            if priority == TAIL:
                got = yield req | env.timeout(model.tail_max_wait_s)
                if req not in got:
                    result.cut_short += 1
                    return
            else:
                yield req
            yield env.timeout(duration)
            busy_time[0] += duration

    def on_worker(pool: simpy.PriorityResource, mean: float, priority: int):  # type: ignore[no-untyped-def]
        with pool.request(priority=priority) as req:
            yield req
            yield env.process(on_core(mean, priority))

    def llm_tail(worker: simpy.resources.resource.PriorityRequest, mean: float):  # type: ignore[no-untyped-def]
        """The rest of the reply keeps its LLM worker busy: the next turn waits for another one."""
        yield env.process(on_core(mean, TAIL))
        llm_pool.release(worker)

    def acquire(pool: simpy.PriorityResource, deadline: float):  # type: ignore[no-untyped-def]
        """A worker by the turn's deadline, else None (the turn is answered busy)."""
        req = pool.request(priority=FIRST)
        got = yield req | env.timeout(max(0.0, deadline - env.now))
        if req not in got:
            req.cancel()
            return None
        return req

    def turn(route: RouteCost, t0: float):  # type: ignore[no-untyped-def]
        counted = t0 >= warmup
        if counted:
            result.turns += 1
        yield env.timeout(model.early_commit_s)
        deadline = t0 + model.budget_s
        start = env.now
        worker = yield env.process(acquire(asr_pool, deadline))
        if worker is None:
            result.busy += counted
            return
        if counted:
            result.asr_waits.append(env.now - start)
        yield env.process(on_core(route.asr_s + model.overhead_s, FIRST))
        asr_pool.release(worker)
        if not route.early_commit:
            yield env.timeout(max(0.0, t0 + model.endpoint_s - env.now))
        if route.cloud_total_s > 0:
            first_token = env.event()
            env.process(stream(route, first_token))
            yield first_token
        elif route.llm_total_s > 0:
            worker = yield env.process(acquire(llm_pool, deadline))
            if worker is None:
                result.busy += counted
                return
            yield env.process(on_core(route.llm_first_s, FIRST))
            env.process(llm_tail(worker, route.llm_total_s - route.llm_first_s))
        yield env.process(on_worker(tts_pool, route.tts_first_s, FIRST))
        if counted:
            result.first_audio.append(env.now - t0)
        if route.tts_total_s > route.tts_first_s:
            env.process(on_worker(tts_pool, route.tts_total_s - route.tts_first_s, TAIL))

    def stream(route: RouteCost, first_token: simpy.Event):  # type: ignore[no-untyped-def]
        """One cloud LLM stream holds a GPU slot for its whole reply."""
        with cloud.request() as req:
            yield req
            first = service(route.cloud_first_s, edge=False)
            yield env.timeout(first)
            first_token.succeed()
            yield env.timeout(max(0.0, service(route.cloud_total_s, edge=False) - first))

    def arrivals():  # type: ignore[no-untyped-def]
        rate = devices * turns_per_min / 60.0
        while rate > 0:
            yield env.timeout(rng.expovariate(rate))
            route = model.routes[rng.choices(names, weights)[0]]
            env.process(turn(route, env.now))

    env.process(arrivals())
    env.run(until=minutes * 60)
    result.cpu_utilisation = busy_time[0] / (cores * minutes * 60)
    return result
