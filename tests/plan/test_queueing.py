"""The planner's simulation against closed-form M/M/c results, where they apply."""

from __future__ import annotations

import statistics

import pytest

from bench.plan.queueing import erlang_c, mmc_mean_wait, mmc_servers_for
from bench.plan.sim import EdgeModel, RouteCost, simulate_edge


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # textbook: c=2, a=1
    assert erlang_c(10, 8.0) == pytest.approx(0.409, abs=0.001)
    assert erlang_c(3, 3.0) == 1.0 and erlang_c(3, 0.0) == 0.0
    assert mmc_mean_wait(1.0, 2.0, 2) == float("inf")
    assert mmc_servers_for(10.0, 2.0, 0.05) == 29  # 20 Erlangs: P(wait) 6.3 % with 28, 4.0 % with 29


@pytest.mark.parametrize(("cores", "utilisation"), [(1, 0.5), (2, 0.7), (4, 0.85)])
def test_an_edge_with_one_exponential_stage_is_an_mmc_queue(cores: int, utilisation: float) -> None:
    # One stage, exponential service of 1 s, no pauses, no budget: the simulation must reproduce
    # Erlang C's mean wait (long run, several seeds).
    model = EdgeModel(
        routes={"only": RouteCost(share=1.0, asr_s=1.0, early_commit=True)},
        early_commit_s=0.0,
        budget_s=1e9,
        service_cv=1.0,
    )
    devices = round(utilisation * cores * 60)  # one turn a minute each
    waits = []
    for seed in (1, 2, 3):
        result = simulate_edge(model, devices, 1.0, cores, minutes=300, warmup_min=10, seed=seed)
        waits += result.asr_waits
        assert result.cpu_utilisation == pytest.approx(utilisation, rel=0.05)
    expected = mmc_mean_wait(devices / 60, 1.0, cores)
    assert statistics.mean(waits) == pytest.approx(expected, rel=0.10)
