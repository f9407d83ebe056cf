"""The planner against the load generator: devices one edge held, measured and predicted.

``measured_held`` reads ``xiaozhi-loadgen`` reports (report.json) of the same edge at several
device counts and the same turn rate, and interpolates where the busy share crosses the limit.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["measured_held"]


def measured_held(reports: list[Path], max_busy: float) -> tuple[float, list[tuple[int, float]]]:
    """(devices held, the (devices, busy share) points it was read from)."""
    points = []
    for path in reports:
        data = json.loads(path.read_text(encoding="utf-8"))
        turns = int(data.get("turns") or 0)
        points.append((int(data["devices"]), (int(data.get("busy_turns") or 0) / turns) if turns else 0.0))
    points.sort()
    if not points or points[0][1] > max_busy:
        return 0.0, points
    for (n0, b0), (n1, b1) in zip(points, points[1:], strict=False):
        if b0 <= max_busy < b1:
            return n0 + (max_busy - b0) / (b1 - b0) * (n1 - n0), points
    return float(points[-1][0]), points  # never crossed: at least the largest run
