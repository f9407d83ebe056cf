"""Admission control from measured CPU per turn, with a virtual clock and CPU counter."""

from __future__ import annotations

from edge_node.admission import CapacityModel
from edge_node.config import AdmissionConfig


class Virtual:
    def __init__(self) -> None:
        self.t = 0.0
        self.cpu_s = 0.0

    def clock(self) -> float:
        return self.t

    def cpu(self) -> float:
        return self.cpu_s


def _model(v: Virtual, **cfg: float) -> CapacityModel:
    return CapacityModel(AdmissionConfig(**cfg), cores=2, clock=v.clock, cpu=v.cpu)  # type: ignore[arg-type]


def test_capacity_follows_measured_cpu_per_turn() -> None:
    v = Virtual()
    m = _model(v, cpu_s_per_turn_prior=1.0, target_utilization=0.5, min_turns_per_sample=5)
    assert m.capacity() == 1.0  # 2 cores x 0.5 / 1.0 s
    for _ in range(10):
        m.turn_finished()
    v.cpu_s += 5.0  # 0.5 CPU-s per turn really spent
    m.sample()
    assert m.measured and abs(m.cpu_s_per_turn - 0.5) < 1e-9
    assert abs(m.capacity() - 2.0) < 1e-9


def test_too_few_turns_do_not_move_the_estimate() -> None:
    v = Virtual()
    m = _model(v, min_turns_per_sample=5)
    m.turn_finished()
    v.cpu_s += 100
    m.sample()
    assert not m.measured and m.cpu_s_per_turn == 1.0


def test_admit_until_demand_reaches_capacity() -> None:
    v = Virtual()
    m = _model(v, cpu_s_per_turn_prior=2.0, target_utilization=1.0, window_s=10)
    # capacity = 2 cores / 2 s = 1 turn/s -> 10 turns in a 10 s window saturate it
    for _ in range(9):
        m.turn_started()
    ok, _ = m.admit(sessions=5, max_sessions=100)
    assert ok
    m.turn_started()
    ok, why = m.admit(sessions=5, max_sessions=100)
    assert not ok and "busy" in why and "measured capacity" in why
    v.t += 11  # the window slides past those turns
    ok, _ = m.admit(sessions=5, max_sessions=100)
    assert ok


def test_session_limit_and_switch() -> None:
    v = Virtual()
    m = _model(v, enabled=False)
    ok, why = m.admit(sessions=10, max_sessions=10)
    assert not ok and "full" in why
    for _ in range(1000):
        m.turn_started()
    assert m.admit(sessions=1, max_sessions=10)[0]


def test_a_burst_is_queued_until_the_node_is_measured_overloaded() -> None:
    """A burst on a node that keeps up waits up to burst_wait_s; once the measured demand reaches the
    measured capacity (a queue that only grows), turns get the shorter first_audio_budget_s."""
    from edge_node.config import QueueConfig

    queues = QueueConfig(burst_wait_s=4.5, first_audio_budget_s=3.0)
    v = Virtual()
    m = _model(v, cpu_s_per_turn_prior=2.0, target_utilization=1.0, window_s=10, min_turns_per_sample=5)
    for _ in range(20):
        m.turn_started()
    assert m.start_budget(queues) == 4.5, "a prior is not a measurement: no refusals on a guess"
    for _ in range(5):
        m.turn_finished()
    v.cpu_s += 10.0  # 2 CPU-s per turn, measured: capacity 1 turn/s against 2 turns/s arriving
    m.sample()
    assert m.overloaded() and m.start_budget(queues) == 3.0
    v.t += 11  # the burst is over
    assert not m.overloaded() and m.start_budget(queues) == 4.5
