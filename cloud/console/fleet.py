"""The console's view of the fleet over NATS: edges' heartbeats in, routing configs out.

- Heartbeats (``xz.fleet.heartbeat.<edge>``) update the edges and devices tables (off the loop)
  and an in-memory copy of each edge's last snapshot, from which a sampler builds the live
  series: turns/s, escalations/s and cache hits/s from the differences of the edges' cumulative
  counters (an edge that restarted counts from zero again), the worst edge's first-audio p95,
  and connected devices.
- Routing: the config the edges watch is the ``routing`` key of the ``xz_routing`` KV bucket. A
  publish is validated with the same parser the edges use, so a config an edge would refuse never
  reaches the bucket.
- Revoked devices: one key per device in the ``xz_revoked`` KV bucket (``shared.nats.revoked``),
  which every edge watches. The database is the source of truth: each change is put at once, and
  the bucket is reconciled with the database after connecting and every ``revocation_sync_s``, so a
  revocation made while NATS was down reaches the edges when it is back.

The console works without NATS (pages and history from the database); publishing then fails with
a clear message and the link state is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from shared.nats import revoked
from shared.nats import subjects as s
from shared.nats.connect import LinkState, connect_until_up
from shared.nats.heartbeats import HeartbeatError, parse_heartbeat

from .store import Store

log = logging.getLogger("cloud.console.fleet")

__all__ = ["Fleet", "FleetUnavailable", "LivePoint"]


class FleetUnavailable(RuntimeError):
    """The hub cannot be reached: nothing can be published now."""


@dataclass(frozen=True, slots=True)
class LivePoint:
    t: float
    turns_per_s: float
    escalations_per_s: float
    cache_hits_per_s: float
    first_audio_p95_s: float | None
    sessions: int
    edges_up: int


class Fleet:
    def __init__(
        self,
        store: Store,
        nats_url: str,
        credential: str,
        stale_after_s: float,
        live_interval_s: float = 2.0,
        live_points: int = 900,
        revocation_sync_s: float = 30.0,
        nats_ca: str = "",
    ) -> None:
        self.store = store
        self.nats_url = nats_url
        self.credential = credential
        self.nats_ca = nats_ca  # the hub's CA for TLS on its client port (nats.ca_file); empty: per the URL
        self.stale_after_s = stale_after_s
        self.live_interval_s = live_interval_s
        self.revocation_sync_s = revocation_sync_s
        self.link = LinkState()
        self._resync = asyncio.Event()  # set when the link comes (back) up: reconcile at once
        self.link.listeners.append(lambda up: self._resync.set() if up else None)
        self.nc: Any = None
        self.snapshots: dict[str, tuple[float, dict[str, Any]]] = {}  # edge -> (received at, heartbeat)
        self.live: deque[LivePoint] = deque(maxlen=live_points)
        self.bad_heartbeats = 0
        self._prev_totals: dict[str, tuple[float, float, float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._sub: Any = None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._sample_loop(), name="live-sampler"))
        if self.nats_url:
            self._tasks.append(asyncio.create_task(self._connect_loop(), name="console-nats"))
            self._tasks.append(asyncio.create_task(self._revocation_loop(), name="revocation-sync"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def _connect_loop(self) -> None:
        self.nc = await connect_until_up(self.nats_url, "xiaozhi-console", self.link, self.credential, self.nats_ca)
        self._sub = await self.nc.subscribe(f"{s.HEARTBEAT_PREFIX}.>", cb=self._on_heartbeat)
        log.info("console: connected to %s, listening for heartbeats", self.nats_url)

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    # -- heartbeats -----------------------------------------------------------------------------
    async def _on_heartbeat(self, msg: Any) -> None:
        try:
            edge, beat = parse_heartbeat(msg.subject, msg.data)
        except HeartbeatError as exc:
            self.bad_heartbeats += 1
            log.warning("ignored: %s", exc)
            return
        await self.accept(edge, beat)

    async def accept(self, edge: str, beat: dict[str, Any]) -> None:
        self.snapshots[edge] = (time.time(), beat)
        await asyncio.to_thread(self.store.record_heartbeat, edge, beat)

    def edge_status(self, last_seen: float, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return "up" if now - last_seen <= self.stale_after_s else "stale"

    # -- live series ----------------------------------------------------------------------------
    def sample(self, now: float | None = None) -> LivePoint:
        now = time.time() if now is None else now
        dt = self.live_interval_s
        turns = escalations = hits = 0.0
        p95s: list[float] = []
        sessions = edges_up = 0
        for edge, (seen, beat) in list(self.snapshots.items()):
            if now - seen > self.stale_after_s:
                continue
            edges_up += 1
            sessions += int(beat.get("sessions") or 0)
            if isinstance(beat.get("first_audio_p95_s"), int | float):
                p95s.append(float(beat["first_audio_p95_s"]))
            totals = tuple(float(beat.get(k) or 0) for k in ("turns_total", "escalations_total", "cache_hits_total"))
            prev = self._prev_totals.get(edge)
            self._prev_totals[edge] = totals  # type: ignore[assignment]
            if prev is None:
                continue
            # A counter that went down is an edge that restarted: its new value is all new turns.
            d = [cur - old if cur >= old else cur for cur, old in zip(totals, prev, strict=True)]
            turns, escalations, hits = turns + d[0], escalations + d[1], hits + d[2]
        point = LivePoint(
            round(now, 3),
            round(turns / dt, 3),
            round(escalations / dt, 3),
            round(hits / dt, 3),
            max(p95s) if p95s else None,
            sessions,
            edges_up,
        )
        self.live.append(point)
        return point

    async def _sample_loop(self) -> None:
        while True:
            await asyncio.sleep(self.live_interval_s)
            self.sample()

    # -- routing --------------------------------------------------------------------------------
    async def _kv(self, create: bool) -> Any:
        import nats.js.errors
        from nats.js.api import KeyValueConfig, StorageType

        if not self.connected:
            raise FleetUnavailable(f"not connected to NATS at {self.nats_url or '(no nats url configured)'}")
        js = self.nc.jetstream(domain=s.JS_DOMAIN, timeout=5.0)
        try:
            return await js.key_value(s.ROUTING_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            if not create:
                return None
            return await js.create_key_value(
                KeyValueConfig(bucket=s.ROUTING_BUCKET, history=10, storage=StorageType.FILE)
            )

    async def current_routing(self) -> tuple[str, int] | None:
        """(text, KV revision) of the published config; None when nothing is published."""
        import nats.js.errors

        kv = await self._kv(create=False)
        if kv is None:
            return None
        try:
            entry = await kv.get(s.ROUTING_KEY)
        except nats.js.errors.KeyNotFoundError:
            return None
        return (entry.value or b"").decode("utf-8"), int(entry.revision or 0)

    async def publish_routing(self, text: str) -> int:
        kv = await self._kv(create=True)
        return int(await kv.put(s.ROUTING_KEY, text.encode("utf-8")))

    # -- revoked devices ------------------------------------------------------------------------
    async def _revoked_kv(self) -> Any:
        if not self.connected:
            raise FleetUnavailable(f"not connected to NATS at {self.nats_url or '(no nats url configured)'}")
        return await revoked.open_bucket(self.nc.jetstream(domain=s.JS_DOMAIN, timeout=5.0), create=True)

    async def publish_revocation(self, device_id: str, record: dict[str, Any]) -> None:
        """Tell the edges: they refuse the device's handshakes and close its session."""
        kv = await self._revoked_kv()
        await kv.put(
            revoked.key_of(device_id),
            revoked.record(
                device_id, str(record.get("revoked_by", "")), str(record.get("reason", "")), record.get("revoked_at")
            ),
        )

    async def withdraw_revocation(self, device_id: str) -> None:
        kv = await self._revoked_kv()
        await kv.delete(revoked.key_of(device_id))

    async def sync_revocations(self) -> tuple[int, int]:
        """Make the bucket hold exactly the database's revocations; returns (keys put, keys deleted)."""
        import nats.js.errors

        wanted = await asyncio.to_thread(self.store.revocations)
        kv = await self._revoked_kv()
        try:
            present = set(await kv.keys())
        except nats.js.errors.NoKeysError:
            present = set()
        keys = {revoked.key_of(device): device for device in wanted}
        missing = [device for key, device in keys.items() if key not in present]
        extra = present - keys.keys()
        for device in missing:
            await self.publish_revocation(device, wanted[device])
        for key in extra:
            await kv.delete(key)
        if missing or extra:
            log.info(
                "revoked devices: %d put into and %d deleted from KV %s to match the database",
                len(missing),
                len(extra),
                s.REVOKED_BUCKET,
            )
        return len(missing), len(extra)

    async def _revocation_loop(self) -> None:
        while True:
            self._resync.clear()
            if not self.connected:
                await asyncio.sleep(0.5)  # reconcile as soon as the link is up
                continue
            try:
                await self.sync_revocations()
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                log.warning("could not reconcile revoked devices with KV %s: %r", s.REVOKED_BUCKET, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resync.wait(), self.revocation_sync_s)
