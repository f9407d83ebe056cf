"""The capacity planner: validated against the load generator's measured runs, and its arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from bench.plan import cli
from bench.plan.planner import Requirements, devices_held, plan_fleet
from bench.plan.queueing import mmc_servers_for
from bench.plan.sim import EdgeModel
from bench.plan.validate import measured_held

ROOT = Path(__file__).resolve().parents[2]
MEASURED = [ROOT / f"docs/perf/2026-11-25/devices-{n}.json" for n in (10, 20, 30, 45, 60)]
MIX = ROOT / "bench/plan/mix.2026-11-25.yaml"


def _model(path: Path = MIX) -> EdgeModel:
    return EdgeModel.from_dict(yaml.safe_load(path.read_text()))


def test_prediction_for_one_two_core_edge_matches_the_load_generator_within_20_percent() -> None:
    measured, points = measured_held(MEASURED, max_busy=0.02)
    assert 30 <= measured <= 45 and points[2] == (30, pytest.approx(2 / 176))
    predicted = devices_held(_model(), cores=2, rate_per_min=4.0, req=Requirements(max_busy=0.02))
    assert abs(predicted / measured - 1) <= 0.20, (predicted, measured)
    assert cli.main(["--validate", *map(str, MEASURED), "--edge-cores", "2"]) == 0


def test_more_cores_or_fewer_turns_hold_more_devices() -> None:
    quick = Requirements(max_busy=0.02, minutes=8, seeds=(1,))
    two, four = (devices_held(_model(), c, 4.0, quick) for c in (2, 4))
    assert four > 1.8 * two
    assert devices_held(_model(), 2, 2.0, quick) > 1.6 * two
    assert devices_held(_model(), 2, 4.0, Requirements(max_busy=0.02, target_p95_s=0.5, minutes=8)) == 0


def test_fleet_plan_arithmetic(tmp_path: Path) -> None:
    model = _model(ROOT / "bench/plan/mix.escalating.yaml")
    quick = Requirements(max_busy=0.02, minutes=8, seeds=(1,))
    prices = {"edge_per_month": {2: 20}, "gpu_worker_per_month": 700}
    [plan] = plan_fleet(model, 1000, 4.0, [2], quick, {"streams_per_gpu": 32}, prices)
    assert plan.edges == math.ceil(1000 / plan.devices_held)
    escalated = 1000 * 4 / 60 * 0.20
    assert plan.gpu_workers == math.ceil(mmc_servers_for(escalated, 3.0, 0.05) / 32)
    assert plan.cost_per_month == pytest.approx(plan.edges * 20 + plan.gpu_workers * 700)
    assert plan.cost_per_device_month == pytest.approx(plan.cost_per_month / 1000, abs=0.001)


def test_command_line_rates_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli._rate("4/min") == 4.0 and cli._rate("240/h") == 4.0 and cli._rate("0.1/s") == pytest.approx(6.0)
    bad = tmp_path / "mix.yaml"
    bad.write_text("routes: {intent: {share: 0.5}}\n")
    assert cli.main(["--mix", str(bad)]) == 2
    assert "shares must add up to 1" in capsys.readouterr().err


def test_measured_core_scaling_slows_every_cost_on_bigger_edges() -> None:
    """The planner scales with the serial fraction measured on 1 and 2 cores, not linearly."""
    from bench.perf_suite import serial_fraction
    from bench.plan.sim import RouteCost

    s = serial_fraction(1.9)  # a 2-core / 1-core throughput ratio of 1.9
    assert s == pytest.approx(2 / 1.9 - 1)
    model = EdgeModel(routes={"x": RouteCost(share=1.0)}, serial_fraction=s)
    assert model.speedup(2) == pytest.approx(1.9)
    assert model.slowdown(2) == pytest.approx(1.0)  # the costs were measured on 2 cores
    assert 1.0 < model.slowdown(8) < model.slowdown(16)
    assert EdgeModel(routes={"x": RouteCost(share=1.0)}).slowdown(16) == pytest.approx(1.0)
    quick = Requirements(max_busy=0.02, minutes=8, seeds=(1,))
    linear = _model()
    measured = EdgeModel(**{**linear.__dict__, "serial_fraction": 0.1})
    assert devices_held(measured, 8, 4.0, quick) < devices_held(linear, 8, 4.0, quick)
