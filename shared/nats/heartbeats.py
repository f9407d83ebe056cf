"""Reading the edges' heartbeats (``xz.fleet.heartbeat.<edge>``, sent by edge_node/cloud_link/heartbeat.py):
one parser for every listener (the console, provisioning), so they accept and refuse the same messages."""

from __future__ import annotations

import json
from typing import Any

from shared.nats import subjects as s

__all__ = ["HeartbeatError", "parse_heartbeat"]


class HeartbeatError(ValueError):
    """A message on a heartbeat subject that is not a heartbeat: the message says why."""


def parse_heartbeat(subject: str, data: bytes) -> tuple[str, dict[str, Any]]:
    """(edge id, the edge's snapshot) from one message."""
    edge = subject[len(s.HEARTBEAT_PREFIX) + 1 :] if subject.startswith(s.HEARTBEAT_PREFIX + ".") else ""
    if not edge or edge != s.safe_token(edge):
        raise HeartbeatError(f"{subject!r} does not name an edge")
    try:
        beat = json.loads(data)
    except ValueError as exc:
        raise HeartbeatError(f"heartbeat from {edge} is not JSON: {exc}") from exc
    except RecursionError:  # found by fuzzing: deeply nested arrays are not a ValueError
        raise HeartbeatError(f"heartbeat from {edge} is not JSON: nested too deeply") from None
    if not isinstance(beat, dict):
        raise HeartbeatError(f"heartbeat from {edge} is not a JSON object")
    return edge, beat
