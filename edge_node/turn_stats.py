"""What this edge's recent turns looked like, for its heartbeat: the console shows first-audio p95
and the escalation ratio per edge without a Prometheus of its own.

A bounded window (the last ``window_s`` seconds, at most ``max_turns``) of (time, first-audio
latency, route). Cumulative counts go in the heartbeat as well, so the console can turn two
heartbeats into rates.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from edge_node.routing.router import REMOTE_ROUTES

__all__ = ["TurnStats"]


@dataclass(slots=True)
class _Turn:
    at: float
    latency_s: float | None
    route: str


class TurnStats:
    def __init__(self, window_s: float = 300.0, max_turns: int = 5000) -> None:
        self.window_s = window_s
        self._recent: deque[_Turn] = deque(maxlen=max_turns)
        self.turns = 0
        self.escalations = 0
        self.cache_hits = 0

    def record(self, route: str, latency_s: float | None, now: float | None = None) -> None:
        """One finished turn: the route that answered it and its end-of-speech to first-audio time."""
        self.turns += 1
        self.escalations += route in REMOTE_ROUTES
        self.cache_hits += route == "cache"
        self._recent.append(_Turn(time.monotonic() if now is None else now, latency_s, route))

    def summary(self, now: float | None = None) -> dict[str, float | int | None]:
        now = time.monotonic() if now is None else now
        while self._recent and self._recent[0].at < now - self.window_s:
            self._recent.popleft()
        latencies = sorted(t.latency_s for t in self._recent if t.latency_s is not None)
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None
        recent = len(self._recent)
        return {
            "turns_total": self.turns,
            "escalations_total": self.escalations,
            "cache_hits_total": self.cache_hits,
            "recent_turns": recent,
            "first_audio_p95_s": round(p95, 3) if p95 is not None else None,
            "escalation_ratio": round(sum(t.route in REMOTE_ROUTES for t in self._recent) / recent, 3)
            if recent
            else None,
        }
