"""Which edge a device talks to: by site, health and live load, sticky.

The edges' heartbeats (``xz.fleet.heartbeat.<edge>``) say where each edge stands (``site``), how
loaded it is (sessions of ``max_sessions``, demand of measured capacity) and its WebSocket URL.
A device keeps its edge while that edge is healthy (a heartbeat within ``stale_after_s``): its
conversation context and caches are there. It moves when its edge is down, or when an admin
moved it in the console (the ``edge_id`` in the database changes). A new or moved-off device gets
the least loaded healthy edge of its site (by its address), else of any site.

Load is the largest of three shares: devices assigned to the edge (from the database, kept up to
date as devices are assigned) of its ``max_sessions``, sessions open now of ``max_sessions``, and
recent demand of its measured turn capacity. Counting assigned devices, not only connected ones,
matters: a device connects only when it is woken, and a burst of boots (a site's power returning)
would otherwise all land on the edge that looked emptiest in its last heartbeat.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("provisioning.assign")

__all__ = ["Assignment", "EdgeDirectory", "NoEdgeAvailable"]


class NoEdgeAvailable(RuntimeError):
    """No healthy edge can take the device now: the device should retry its OTA."""


@dataclass
class _Edge:
    seen: float
    beat: dict[str, Any]

    @property
    def site(self) -> str:
        return str(self.beat.get("site") or "")

    @property
    def ws_url(self) -> str:
        return str(self.beat.get("ws_url") or "")

    def load(self, assigned: int) -> float:
        limit = float(self.beat.get("max_sessions") or 0) or 150.0
        load = max(float(self.beat.get("sessions") or 0), float(assigned)) / limit
        capacity = float(self.beat.get("capacity_turns_per_s") or 0)
        if capacity > 0:
            load = max(load, float(self.beat.get("demand_turns_per_s") or 0) / capacity)
        return load


@dataclass(frozen=True)
class Assignment:
    edge: str
    ws_url: str
    # sticky: its edge (as assigned, or as an admin moved it) is healthy; new; edge_down: moved off
    reason: str
    site: str = ""  # the edge's site, from its heartbeat: the device's token is issued for it


@dataclass
class EdgeDirectory:
    stale_after_s: float
    sites: dict[str, list[str]] = field(default_factory=dict)
    edges: dict[str, _Edge] = field(default_factory=dict)
    assigned: Counter[str] = field(default_factory=Counter)  # devices per edge, as the database holds them

    def __post_init__(self) -> None:
        self._networks = [
            (site, ipaddress.ip_network(cidr, strict=False)) for site, cidrs in self.sites.items() for cidr in cidrs
        ]

    def heartbeat(self, edge: str, beat: dict[str, Any], now: float | None = None) -> None:
        self.edges[edge] = _Edge(time.time() if now is None else now, beat)

    def set_assigned(self, counts: dict[str, int]) -> None:
        """Devices per edge from the database (at start and periodically: the console moves devices)."""
        self.assigned = Counter(counts)

    def healthy(self, edge: str, now: float | None = None) -> bool:
        e = self.edges.get(edge)
        now = time.time() if now is None else now
        return e is not None and bool(e.ws_url) and now - e.seen <= self.stale_after_s

    def site_of(self, address: str) -> str:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return ""
        return next((site for site, net in self._networks if ip in net), "")

    def assign(self, current: str, address: str, now: float | None = None) -> Assignment:
        """``current``: the edge the database holds for the device ("" for a new device)."""
        now = time.time() if now is None else now
        site = self.site_of(address)
        if current and self.healthy(current, now):
            e = self.edges[current]
            return Assignment(current, e.ws_url, "sticky", e.site)
        healthy = {name: e for name, e in self.edges.items() if self.healthy(name, now)}
        if not healthy:
            raise NoEdgeAvailable("no edge has sent a heartbeat recently")
        local = {n: e for n, e in healthy.items() if site and e.site == site} or healthy
        name = min(local, key=lambda n: (local[n].load(self.assigned[n]), n))
        self.assigned[name] += 1
        if current:
            self.assigned[current] = max(0, self.assigned[current] - 1)
        return Assignment(name, local[name].ws_url, "edge_down" if current else "new", local[name].site)
