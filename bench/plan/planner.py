"""How much hardware a fleet needs: edges from the simulation, cloud GPUs from Erlang C, cost.

An edge "holds" N devices when, at the fleet's turn rate, at most ``max_busy`` of their turns are
answered "busy" and (if a target is given) the p95 end-of-speech to first audio stays under it.
The number is found by bisection over simulated device counts (``sim.simulate_edge``), averaged
over a few random seeds. Edges needed = devices / held, rounded up. The escalated share of turns
goes to the cloud: GPU workers are sized so that a cloud request waits for a stream slot with at
most 5 % probability (M/M/c, ``queueing.mmc_servers_for``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .queueing import mmc_servers_for
from .sim import EdgeModel, simulate_edge

__all__ = ["EdgePlan", "Requirements", "devices_held", "plan_fleet"]


@dataclass(frozen=True)
class Requirements:
    max_busy: float = 0.02
    target_p95_s: float | None = None
    minutes: float = 20.0
    seeds: tuple[int, ...] = (1, 2)


@dataclass
class EdgePlan:
    cores: int
    devices_held: int
    edges: int
    devices_per_edge: float
    p95_first_audio_s: float
    busy_share: float
    cpu_utilisation: float
    gpu_workers: int
    cost_per_month: float | None
    cost_per_device_month: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _measure(model: EdgeModel, devices: int, rate: float, cores: int, req: Requirements) -> tuple[float, float, float]:
    """(busy share, p95 first audio, CPU utilisation), averaged over the seeds."""
    runs = [simulate_edge(model, devices, rate, cores, req.minutes, seed=s) for s in req.seeds]
    n = len(runs)
    return (
        sum(r.busy_share for r in runs) / n,
        sum(r.percentile(0.95) for r in runs) / n,
        sum(r.cpu_utilisation for r in runs) / n,
    )


def _ok(model: EdgeModel, devices: int, rate: float, cores: int, req: Requirements) -> bool:
    busy, p95, _util = _measure(model, devices, rate, cores, req)
    return busy <= req.max_busy and (req.target_p95_s is None or p95 <= req.target_p95_s)


def devices_held(model: EdgeModel, cores: int, rate_per_min: float, req: Requirements) -> int:
    """The most devices one edge of ``cores`` serves within the requirements (0: not even one)."""
    if not _ok(model, 1, rate_per_min, cores, req):
        return 0
    # Upper bound: the devices that would keep every core busy.
    high = max(2, math.ceil(cores / (model.cpu_per_turn() * rate_per_min / 60.0)) * 2)
    low = 1
    while high - low > 1:
        mid = (low + high) // 2
        if _ok(model, mid, rate_per_min, cores, req):
            low = mid
        else:
            high = mid
    return low


def plan_fleet(
    model: EdgeModel,
    devices: int,
    rate_per_min: float,
    edge_cores: list[int],
    req: Requirements,
    cloud: dict[str, Any],
    prices: dict[str, Any] | None,
) -> list[EdgePlan]:
    cloud_share = sum(r.share for r in model.routes.values() if r.cloud_total_s > 0)
    cloud_s = sum(r.share * r.cloud_total_s for r in model.routes.values()) / cloud_share if cloud_share else 0.0
    escalated_per_s = devices * rate_per_min / 60.0 * cloud_share
    streams = int(cloud.get("streams_per_gpu", 32))
    slots = mmc_servers_for(escalated_per_s, cloud_s, 0.05) if escalated_per_s > 0 else 0
    gpus = math.ceil(slots / streams) if slots else 0
    plans = []
    for cores in edge_cores:
        held = devices_held(model, cores, rate_per_min, req)
        edges = math.ceil(devices / held) if held else 0
        per_edge = devices / edges if edges else 0.0
        busy, p95, util = (1.0, 0.0, 0.0)
        if edges:
            busy, p95, util = _measure(model, max(1, round(per_edge)), rate_per_min, cores, req)
        cost = None
        if prices is not None and edges:
            table = prices.get("edge_per_month") or {}
            edge_price = table.get(cores, table.get(str(cores)))
            if edge_price is not None:
                cost = edges * float(edge_price) + gpus * float(prices.get("gpu_worker_per_month", 0.0))
        plans.append(
            EdgePlan(
                cores,
                held,
                edges,
                round(per_edge, 1),
                round(p95, 2),
                round(busy, 4),
                round(util, 2),
                gpus,
                round(cost, 2) if cost is not None else None,
                round(cost / devices, 3) if cost is not None else None,
            )
        )
    return plans
