"""Admission control from a measured capacity.

Connections are cheap (an idle session is tens of KB and no CPU); turns are not (docs/models.md
§8: about two CPU-seconds each without caches). So the node admits a new connection unless the
turns it is already serving use up what its cores can do: capacity is measured, not assumed —
CPU-seconds the process really spent per completed turn, over a sliding window, against the
cores it may use — and demand is the rate of turns started recently. A refused device gets a
clear HTTP 503 at the handshake instead of joining a queue nobody can serve.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable

from edge_node import metrics
from edge_node.config import AdmissionConfig, QueueConfig
from shared.settings import usable_cores


def process_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class CapacityModel:
    def __init__(
        self,
        cfg: AdmissionConfig,
        cores: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] = process_cpu_seconds,
    ) -> None:
        self.cfg = cfg
        self.cores = cores or usable_cores()
        self._clock = clock
        self._cpu = cpu
        self.cpu_s_per_turn = cfg.cpu_s_per_turn_prior
        self._starts: deque[float] = deque()
        self._mark_cpu = cpu()
        self._mark_turns = 0
        self.turns_done = 0
        self.measured = False

    def turn_started(self) -> None:
        self._starts.append(self._clock())

    def turn_finished(self) -> None:
        self.turns_done += 1

    def sample(self) -> None:
        """Update CPU per turn from what the process really used since the last sample."""
        turns = self.turns_done - self._mark_turns
        if turns < self.cfg.min_turns_per_sample:
            return
        cpu = self._cpu()
        per_turn = (cpu - self._mark_cpu) / turns
        self._mark_cpu, self._mark_turns = cpu, self.turns_done
        alpha = 0.5 if self.measured else 1.0
        self.cpu_s_per_turn = max(0.01, (1 - alpha) * self.cpu_s_per_turn + alpha * per_turn)
        self.measured = True
        metrics.CAPACITY.set(self.capacity())

    def capacity(self) -> float:
        """Turns per second the cores can serve at the target utilisation."""
        return self.cores * self.cfg.target_utilization / self.cpu_s_per_turn

    def demand(self) -> float:
        now = self._clock()
        window = self.cfg.window_s
        while self._starts and self._starts[0] < now - window:
            self._starts.popleft()
        rate = len(self._starts) / window
        metrics.DEMAND.set(rate)
        return rate

    def overloaded(self) -> bool:
        """Turns have been arriving faster than the measured capacity serves them: a queue that only grows."""
        return self.cfg.enabled and self.measured and self.demand() >= self.capacity()

    def start_budget(self, queues: QueueConfig) -> float:
        """Seconds after the end of speech by which a turn's ASR and LLM must start: a burst is queued
        (``burst_wait_s``); an overloaded node answers "busy" sooner (``first_audio_budget_s``)."""
        if self.overloaded():
            return min(queues.first_audio_budget_s, queues.burst_wait_s)
        return queues.burst_wait_s

    def admit(self, sessions: int, max_sessions: int) -> tuple[bool, str]:
        if sessions >= max_sessions:
            return False, f"edge node full: {sessions} sessions (limit {max_sessions})"
        if not self.cfg.enabled:
            return True, "admission control off"
        demand, capacity = self.demand(), self.capacity()
        if demand >= capacity:
            return False, (
                f"edge node busy: {demand:.2f} turns/s against a measured capacity of {capacity:.2f} turns/s"
            )
        return True, "ok"
