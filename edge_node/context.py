"""What every session of an edge shares: its configuration, the engines, the router, and the books
that admission and rate limits keep. Its own module so that sessions, replies and the server each
depend on it, and it depends on none of them."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_node.admission import CapacityModel
from edge_node.config import EdgeConfig
from edge_node.engines.runtime import Engines
from edge_node.limits import DeviceLimits
from edge_node.routing.router import Router
from edge_node.session.port import ReplyServices
from edge_node.turn_stats import TurnStats

__all__ = ["ServerContext"]


@dataclass
class ServerContext:
    cfg: EdgeConfig
    engines: Engines
    router: Router
    capacity: CapacityModel
    # Per-device rate limits (config limits): handshakes in the server, turns and frames in the sessions.
    limits: DeviceLimits
    # What every reply is lent (``session/port.py``): the router, ASR, cached TTS, canned phrases, books.
    replies: ReplyServices
    turn_stats: TurnStats = field(default_factory=TurnStats)
