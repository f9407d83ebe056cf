"""The fleet registry: edges (from their heartbeats), devices with their activation codes and assigned
edges, and revoked devices.

Two services write it in one database: the provisioning service creates devices at their first OTA
and assigns them to edges; the console binds, moves and revokes them and records heartbeats. It lives
here, not in ``cloud/console/``, so provisioning does not depend on the console (its logins, routing
versions, audit log: ``cloud/console/store.py``, which builds on this class).

SQLAlchemy 2 on any URL (SQLite by default, PostgreSQL in production). Calls are synchronous and
short; callers on an event loop run them in a thread (``asyncio.to_thread``). Table and column names
are the ones the console's single store had, so an existing database keeps working.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Float, MetaData, String, Text, create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

__all__ = ["FleetRegistry", "RegistryError", "create_tables"]


# pg_advisory_xact_lock's key while the schema is created (a constant no other user of the database
# takes: "xzconsol"); the console and provisioning take the same one.
SCHEMA_LOCK = 0x787A636F6E736F6C
SCHEMA_ATTEMPTS = 5


def create_tables(engine: Engine, *metadatas: MetaData) -> None:
    """The tables of ``metadatas`` in one transaction, safe when several processes (the console,
    provisioning) start on the same empty database at once: without the lock all but one failed on
    PostgreSQL ("duplicate key value violates unique constraint pg_type_typname_nsp_index"), and on
    SQLite with "table ... already exists"; a process that made them meanwhile is waited out by retrying."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # the others wait here until this commits
                    conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK)))
                for metadata in metadatas:
                    metadata.create_all(conn)
            return
        except (IntegrityError, OperationalError, ProgrammingError):
            if attempt == SCHEMA_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)


class RegistryError(ValueError):
    """A request the data does not allow (unknown id, duplicate name, wrong state)."""


class Base(DeclarativeBase):
    pass


class Edge(Base):
    __tablename__ = "edges"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_seen: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    version: Mapped[str] = mapped_column(String(64), default="")
    snapshot: Mapped[str] = mapped_column(Text, default="{}")  # the last heartbeat, as sent


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the MAC, lower case
    edge_id: Mapped[str] = mapped_column(String(128), default="")  # assigned (provisioning honours it)
    connected_edge: Mapped[str] = mapped_column(String(128), default="")  # where it was last seen
    last_seen: Mapped[float | None] = mapped_column(Float, nullable=True)
    firmware: Mapped[str] = mapped_column(String(64), default="")
    # pending: has an activation code, waits for an admin; active: bound; seen: connected to an edge
    # without going through provisioning (an edge's own OTA).
    state: Mapped[str] = mapped_column(String(16), default="seen")
    activation_code: Mapped[str | None] = mapped_column(String(6), nullable=True, unique=True)
    bound_by: Mapped[str] = mapped_column(String(64), default="")
    bound_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DeviceRevocation(Base):
    """A device whose token an admin revoked: provisioning issues it none, edges refuse and drop it.

    A table of its own rather than a column of ``devices``: ``create_all`` adds missing tables to a
    database that already exists but never alters one, and the console has no migration tool.
    """

    __tablename__ = "device_revocations"
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # devices.id, lower case
    revoked_at: Mapped[float] = mapped_column(Float)
    revoked_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(200), default="")


def _new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(conn: Any, _record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the heartbeat writer
        cur.close()


def _text(value: str, limit: int) -> str:
    """What a column of ``limit`` characters can hold on every database: PostgreSQL refuses NUL in text
    and text longer than its column (SQLite takes both), and a heartbeat must not be lost for either."""
    return value.replace("\x00", "")[:limit]


class FleetRegistry:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
        create_tables(self.engine, Base.metadata)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with self._session.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # -- edges (from heartbeats) ----------------------------------------------------------------
    def record_heartbeat(self, edge_id: str, beat: dict[str, Any], now: float | None = None) -> None:
        """Upsert the edge and the devices it says are connected (last seen, firmware, where)."""
        now = time.time() if now is None else now
        edge_id = _text(edge_id, 128)
        with self.tx() as s:
            edge = s.get(Edge, edge_id)
            if edge is None:
                edge = Edge(id=edge_id, first_seen=now, last_seen=now)
                s.add(edge)
            edge.last_seen = now
            edge.version = _text(str(beat.get("version") or ""), 64)
            edge.snapshot = json.dumps(beat)  # JSON escapes NUL as \u0000
            for dev in beat.get("devices") or []:
                if not isinstance(dev, dict) or not isinstance(dev.get("id"), str) or not dev["id"]:
                    continue
                device_id = _text(dev["id"], 64)
                device = s.get(Device, device_id)
                if device is None:
                    device = Device(id=device_id, state="seen", edge_id=edge_id)
                    s.add(device)
                device.connected_edge = edge_id
                device.last_seen = now
                if isinstance(dev.get("firmware"), str) and dev["firmware"]:
                    device.firmware = _text(dev["firmware"], 64)

    def edges(self) -> list[dict[str, Any]]:
        with self.tx() as s:
            rows = s.scalars(select(Edge).order_by(Edge.id)).all()
            return [
                {
                    "id": e.id,
                    "first_seen": e.first_seen,
                    "last_seen": e.last_seen,
                    "version": e.version,
                    "snapshot": json.loads(e.snapshot or "{}"),
                }
                for e in rows
            ]

    def edge_ids(self) -> set[str]:
        with self.tx() as s:
            return set(s.scalars(select(Edge.id)).all())

    # -- devices --------------------------------------------------------------------------------
    @staticmethod
    def _device(d: Device, revoked: DeviceRevocation | None = None) -> dict[str, Any]:
        return {
            "id": d.id,
            "edge_id": d.edge_id,
            "connected_edge": d.connected_edge,
            "last_seen": d.last_seen,
            "firmware": d.firmware,
            "state": d.state,
            "bound_by": d.bound_by,
            "bound_at": d.bound_at,
            "activation_pending": d.activation_code is not None,
            "revoked_at": revoked.revoked_at if revoked else None,
            "revoked_by": revoked.revoked_by if revoked else "",
            "revoked_reason": revoked.reason if revoked else "",
        }

    def _out(self, s: Session, d: Device) -> dict[str, Any]:
        return self._device(d, s.get(DeviceRevocation, d.id))

    def devices(self, state: str | None = None, edge: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        with self.tx() as s:
            q = (
                select(Device, DeviceRevocation)
                .outerjoin(DeviceRevocation, DeviceRevocation.device_id == Device.id)
                .order_by(Device.id)
                .limit(limit)
            )
            if state:
                q = q.where(Device.state == state)
            if edge:
                q = q.where((Device.edge_id == edge) | (Device.connected_edge == edge))
            return [self._device(d, r) for d, r in s.execute(q).all()]

    def device(self, device_id: str) -> dict[str, Any] | None:
        with self.tx() as s:
            d = s.get(Device, device_id)
            return self._out(s, d) if d else None

    def device_for_ota(
        self, device_id: str, firmware: str, activation_required: bool
    ) -> tuple[dict[str, Any], str | None]:
        """The provisioning service's view of a device at its OTA: (device, activation code or None).

        An unknown device is created: ``pending`` with a fresh unique 6-digit code when activation is
        required, else ``active``. A pending device keeps its code across OTAs until it is bound.
        """
        for _attempt in range(20):
            try:
                with self.tx() as s:
                    d = s.get(Device, device_id)
                    if d is None:
                        d = Device(id=device_id, state="active", bound_by="auto", bound_at=time.time())
                        if activation_required:
                            d.state, d.activation_code, d.bound_by, d.bound_at = "pending", _new_code(), "", None
                        s.add(d)
                    elif d.state == "seen":  # known from an edge's heartbeat only: now it asks provisioning
                        if activation_required:
                            d.state, d.activation_code = "pending", _new_code()
                        else:
                            d.state, d.bound_by, d.bound_at = "active", "auto", time.time()
                    if firmware:
                        d.firmware = firmware[:64]
                    d.last_seen = time.time()
                    s.flush()
                    return self._out(s, d), d.activation_code
            except IntegrityError:  # two devices drew the same code at once: draw again
                continue
        raise RegistryError("could not draw a unique activation code")

    def assigned_counts(self) -> dict[str, int]:
        """Devices per assigned edge (what provisioning balances)."""
        with self.tx() as s:
            rows = s.execute(select(Device.edge_id, func.count()).where(Device.edge_id != "").group_by(Device.edge_id))
            return {edge: int(n) for edge, n in rows.all()}

    def assign(self, device_id: str, edge_id: str) -> None:
        with self.tx() as s:
            d = s.get(Device, device_id)
            if d is not None:
                d.edge_id = edge_id

    def add_pending_device(self, device_id: str, code: str, firmware: str = "") -> None:
        """What provisioning does for an unknown device: it waits with a 6-digit code."""
        with self.tx() as s:
            d = s.get(Device, device_id)
            if d is None:
                d = Device(id=device_id)
                s.add(d)
            d.state, d.activation_code, d.firmware = "pending", code, firmware or d.firmware

    def bind(self, code: str, edge_id: str, user: str) -> dict[str, Any]:
        with self.tx() as s:
            d = s.scalar(select(Device).where(Device.activation_code == code))
            if d is None:
                raise RegistryError(f"no device is waiting with activation code {code}")
            d.state, d.activation_code, d.bound_by, d.bound_at = "active", None, user, time.time()
            if edge_id:
                d.edge_id = edge_id
            return self._out(s, d)

    def move(self, device_id: str, edge_id: str) -> tuple[str, dict[str, Any]]:
        """Assign a device to an edge; returns (the previous edge, the device)."""
        with self.tx() as s:
            d = s.get(Device, device_id)
            if d is None:
                raise RegistryError(f"no device {device_id!r}")
            before, d.edge_id = d.edge_id, edge_id
            return before, self._out(s, d)

    # -- token revocation -------------------------------------------------------------------------
    def revoke(self, device_id: str, user: str, reason: str = "") -> tuple[bool, dict[str, Any]]:
        """Revoke a device's token; returns (newly revoked, the device). Revoking twice keeps the first
        record (who and when), so the audit trail and the edges' view do not change under the admin."""
        with self.tx() as s:
            d = s.get(Device, device_id)
            if d is None:
                raise RegistryError(f"no device {device_id!r}")
            if s.get(DeviceRevocation, device_id) is not None:
                return False, self._out(s, d)
            s.add(DeviceRevocation(device_id=device_id, revoked_at=time.time(), revoked_by=user, reason=reason[:200]))
            s.flush()
            return True, self._out(s, d)

    def unrevoke(self, device_id: str) -> tuple[bool, dict[str, Any]]:
        """Lift a revocation; returns (it was revoked, the device)."""
        with self.tx() as s:
            d = s.get(Device, device_id)
            if d is None:
                raise RegistryError(f"no device {device_id!r}")
            found = s.get(DeviceRevocation, device_id)
            if found is not None:
                s.delete(found)
                s.flush()
            return found is not None, self._device(d)

    def revocations(self) -> dict[str, dict[str, Any]]:
        """Every revoked device: id -> {revoked_at, revoked_by, reason} (what the KV bucket must hold)."""
        with self.tx() as s:
            return {
                r.device_id: {"revoked_at": r.revoked_at, "revoked_by": r.revoked_by, "reason": r.reason}
                for r in s.scalars(select(DeviceRevocation)).all()
            }

    def is_revoked(self, device_id: str) -> bool:
        with self.tx() as s:
            return s.get(DeviceRevocation, device_id) is not None
