"""A discrete-event simulation of one edge node (SimPy): devices talking, cores doing the work.

The model follows what the edge really does (docs/architecture.md):

- a turn starts at the end of the user's speech; ASR starts after ``early_commit_s`` of silence
  (speculative ASR), and a reply may not start before ``endpoint_s`` of silence (the VAD's wait),
  except intent and cache turns, which commit early;
- every stage is a job on one of the edge's ``cores`` (a core serves one job at a time, as the
  engine pools do); first-clause work (ASR, the LLM's first clause, the first sentence's TTS) goes
  before reply tails (the rest of the LLM's reply and its TTS), which run at a lower priority;
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeModel:
        routes = {name: RouteCost(**cost) for name, cost in (data.get("routes") or {}).items()}
        if not routes or abs(sum(r.share for r in routes.values()) - 1.0) > 1e-6:
            raise ValueError("routes' shares must add up to 1")
        keys = ("endpoint_s", "early_commit_s", "budget_s", "service_cv", "overhead_s")
        known = {k: data[k] for k in keys if k in data}
        return cls(routes=routes, **known)

    def cpu_per_turn(self) -> float:
        return self.overhead_s + sum(
            r.share * (r.asr_s + r.llm_total_s + r.tts_total_s) for r in self.routes.values()
        )


@dataclass
class SimResult:
    devices: int
    turns: int
    busy: int
    first_audio: list[float] = field(default_factory=list)
    asr_waits: list[float] = field(default_factory=list)  # time each ASR job queued for a core
    cpu_utilisation: float = 0.0

    @property
    def busy_share(self) -> float:
        return self.busy / self.turns if self.turns else 0.0

    def percentile(self, q: float) -> float:
        if not self.first_audio:
            return 0.0
        values = sorted(self.first_audio)
        return values[min(len(values) - 1, int(q * len(values)))]


def simulate_edge(model: EdgeModel, devices: int, turns_per_min: float, cores: int, minutes: float = 30.0,
                  seed: int = 1, warmup_min: float = 2.0) -> SimResult:  # fmt: skip
    """Simulate ``minutes`` of traffic; statistics cover turns that start after the warm-up."""
    rng = random.Random(seed)
    env = simpy.Environment()
    cpu = simpy.PriorityResource(env, capacity=cores)
    cloud = simpy.Resource(env, capacity=max(1, model.cloud_slots))
    result = SimResult(devices, 0, 0)
    busy_time = [0.0]
    warmup = warmup_min * 60
    names = list(model.routes)
    weights = [model.routes[n].share for n in names]

    def service(mean: float) -> float:
        if mean <= 0:
            return 0.0
        cv = model.service_cv
        if cv <= 0:
            return mean
        shape = 1.0 / (cv * cv)
        return rng.gammavariate(shape, mean / shape)

    def job(mean: float, priority: int):  # type: ignore[no-untyped-def]
        duration = service(mean)
        if duration <= 0:
            return
        with cpu.request(priority=priority) as req:
            yield req
            yield env.timeout(duration)
            busy_time[0] += duration

    def turn(route: RouteCost, t0: float):  # type: ignore[no-untyped-def]
        counted = t0 >= warmup
        if counted:
            result.turns += 1
        yield env.timeout(model.early_commit_s)
        deadline = t0 + model.budget_s
        # ASR: refused as busy when it cannot start within the budget.
        start = env.now
        with cpu.request(priority=FIRST) as req:
            got = yield req | env.timeout(max(0.0, deadline - start))
            if req not in got:
                if counted:
                    result.busy += 1
                return
            if counted:
                result.asr_waits.append(env.now - start)
            duration = service(route.asr_s + model.overhead_s)
            yield env.timeout(duration)
            busy_time[0] += duration
        if not route.early_commit:
            yield env.timeout(max(0.0, t0 + model.endpoint_s - env.now))
        if route.cloud_total_s > 0:
            first_token = env.event()
            env.process(stream(route, first_token))
            yield first_token
        elif route.llm_total_s > 0:
            with cpu.request(priority=FIRST) as req:
                got = yield req | env.timeout(max(0.0, deadline - env.now))
                if req not in got:
                    if counted:
                        result.busy += 1
                    return
                duration = service(route.llm_first_s)
                yield env.timeout(duration)
                busy_time[0] += duration
            env.process(job(route.llm_total_s - route.llm_first_s, TAIL))
        yield env.process(job(route.tts_first_s, FIRST))
        if counted:
            result.first_audio.append(env.now - t0)
        if route.tts_total_s > route.tts_first_s:
            env.process(job(route.tts_total_s - route.tts_first_s, TAIL))

    def stream(route: RouteCost, first_token: simpy.Event):  # type: ignore[no-untyped-def]
        """One cloud LLM stream holds a GPU slot for its whole reply."""
        with cloud.request() as req:
            yield req
            first = service(route.cloud_first_s)
            yield env.timeout(first)
            first_token.succeed()
            yield env.timeout(max(0.0, service(route.cloud_total_s) - first))

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
