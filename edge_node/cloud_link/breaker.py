"""A circuit breaker: after N failures in a row a route is skipped for a while, then tried once.

While the cloud is down every escalated turn would otherwise pay the full timeout before falling
back; with the circuit open it falls back at once. After ``open_s`` one trial turn goes through
(half-open): success closes the circuit, failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    def __init__(self, failures: int = 3, open_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.open_s = open_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.open_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a turn use the route now? In half-open state only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._trial = False

    def failure(self) -> None:
        self._consecutive += 1
        self._trial = False
        if self._opened_at is not None or self._consecutive >= self.failures:
            self._opened_at = self._clock()

    def configure(self, failures: int, open_s: float) -> None:
        self.failures, self.open_s = failures, open_s
