"""The console's own tables on top of the fleet registry: admins and their login sessions, routing
versions, the audit log.

The registry (edges, devices, revocations: ``shared/fleet_registry.py``) is shared with the
provisioning service, which creates pending devices with their activation code; the console binds,
moves and revokes them. Both live in one database, so :class:`Store` is a registry that also creates
and serves the console's tables; a database written before the split keeps working (same tables).

Calls are synchronous and short; the web layer runs them in a thread (``asyncio.to_thread``) so the
event loop never waits on the database.

SQLite and PostgreSQL are both tested (``tests/console``: every API test runs on each). The schema is
SQLAlchemy's ``create_all``: missing tables are created, existing ones are left as they are (no column
is ever altered, so a schema change needs a new table or a hand-written migration). Several processes
may start on an empty database at once (two console pods in a rollout, ``console-admin`` beside the
console): the first creates every table in one transaction, the others wait for it (a PostgreSQL
advisory lock) or find the tables made and try again (SQLite).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, create_engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.fleet_registry import Base as RegistryBase
from shared.fleet_registry import FleetRegistry, RegistryError, create_tables

__all__ = ["Store", "StoreError"]

# One error type for the whole store: the console answers a refused registry change (bind, move,
# revoke) the way it answers a refused console one.
StoreError = RegistryError

# The largest id an Integer column holds on every backend (PostgreSQL's is 32-bit): a larger one asked
# for is simply not there, rather than an "integer out of range" error from the database.
MAX_ID = 2**31 - 1


class Base(DeclarativeBase):
    """The console's tables only: the registry creates its own, so provisioning never needs these."""


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[float] = mapped_column(Float)


class LoginSession(Base):
    __tablename__ = "login_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class RoutingVersion(Base):
    __tablename__ = "routing_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    comment: Mapped[str] = mapped_column(String(500), default="")
    kv_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rollback_of: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    user: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")
    ok: Mapped[bool] = mapped_column(Boolean, default=True)


def _text(value: str, length: int) -> str:
    """What a String column can hold on every backend: its length, no NUL (PostgreSQL refuses both)."""
    return value.replace("\x00", "\ufffd")[:length]


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    csrf: str


def create_schema(url: str) -> None:
    """Every table, the registry's and the console's, in one transaction (``create_tables``); safe when
    several processes start on the same empty database at once."""
    engine = create_engine(url)
    try:
        create_tables(engine, RegistryBase.metadata, Base.metadata)
    finally:
        engine.dispose()


class Store(FleetRegistry):
    def __init__(self, url: str) -> None:
        create_schema(url)
        super().__init__(url)  # the registry's own create_all finds every table: it creates nothing

    # -- users and login sessions ---------------------------------------------------------------
    def add_user(self, username: str, password_hash: str) -> int:
        if not username or len(username) > 64 or "\x00" in username:
            raise StoreError("a user name is 1 to 64 characters, without NUL")
        try:
            with self.tx() as s:
                if s.scalar(select(User).where(User.username == username)) is not None:
                    raise StoreError(f"user {username!r} already exists")
                user = User(username=username, password_hash=password_hash, created_at=time.time())
                s.add(user)
                s.flush()
                return user.id
        except IntegrityError as exc:  # added by another process between the check and the insert
            raise StoreError(f"user {username!r} already exists") from exc

    def set_password(self, username: str, password_hash: str) -> None:
        with self.tx() as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise StoreError(f"no user {username!r}")
            user.password_hash = password_hash
            s.execute(delete(LoginSession).where(LoginSession.user_id == user.id))  # sign out everywhere

    def user_hash(self, username: str) -> tuple[int, str] | None:
        with self.tx() as s:
            user = s.scalar(select(User).where(User.username == username))
            return (user.id, user.password_hash) if user else None

    def user_count(self) -> int:
        with self.tx() as s:
            return int(s.scalar(select(func.count()).select_from(User)) or 0)

    def open_session(self, user_id: int, token_hash: str, ttl_s: float) -> str:
        """Store a login session (by the hash of its cookie token); returns its CSRF token."""
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        with self.tx() as s:
            s.execute(delete(LoginSession).where(LoginSession.expires_at < now))
            s.add(
                LoginSession(token_hash=token_hash, user_id=user_id, csrf=csrf, created_at=now, expires_at=now + ttl_s)
            )
        return csrf

    def session_principal(self, token_hash: str) -> Principal | None:
        with self.tx() as s:
            row = s.execute(
                select(LoginSession, User)
                .join(User, User.id == LoginSession.user_id)
                .where(LoginSession.token_hash == token_hash)
            ).first()
            if row is None:
                return None
            login, user = row
            if login.expires_at < time.time():
                s.delete(login)
                return None
            return Principal(user.id, user.username, login.csrf)

    def close_session(self, token_hash: str) -> None:
        with self.tx() as s:
            s.execute(delete(LoginSession).where(LoginSession.token_hash == token_hash))

    # -- routing versions -----------------------------------------------------------------------
    @staticmethod
    def _version(v: RoutingVersion) -> dict[str, Any]:
        return {
            "id": v.id,
            "author": v.author,
            "created_at": v.created_at,
            "comment": v.comment,
            "kv_revision": v.kv_revision,
            "rollback_of": v.rollback_of,
            "text": v.text,
        }

    def add_routing_version(
        self, text: str, author: str, comment: str, kv_revision: int | None, rollback_of: int | None = None
    ) -> dict[str, Any]:
        with self.tx() as s:
            v = RoutingVersion(
                text=text,
                author=author,
                created_at=time.time(),
                comment=_text(comment, 500),
                kv_revision=kv_revision,
                rollback_of=rollback_of,
            )
            s.add(v)
            s.flush()
            return self._version(v)

    def routing_versions(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.tx() as s:
            rows = s.scalars(select(RoutingVersion).order_by(RoutingVersion.id.desc()).limit(limit)).all()
            return [self._version(v) for v in rows]

    def routing_version(self, version_id: int) -> dict[str, Any] | None:
        if not 1 <= version_id <= MAX_ID:
            return None
        with self.tx() as s:
            v = s.get(RoutingVersion, version_id)
            return self._version(v) if v else None

    # -- audit ----------------------------------------------------------------------------------
    def audit(
        self, user: str, action: str, target: str = "", detail: dict[str, Any] | None = None, ok: bool = True
    ) -> None:
        with self.tx() as s:
            s.add(
                Audit(
                    at=time.time(),
                    user=_text(user, 64),
                    action=_text(action, 64),
                    target=_text(target, 200),
                    detail=json.dumps(detail or {}),
                    ok=ok,
                )
            )

    def audit_log(self, limit: int = 200, before_id: int | None = None) -> list[dict[str, Any]]:
        if before_id is not None and before_id <= 1:
            return []
        if before_id is not None and before_id > MAX_ID:
            before_id = None  # every id is below it
        with self.tx() as s:
            q = select(Audit).order_by(Audit.id.desc()).limit(limit)
            if before_id is not None:
                q = q.where(Audit.id < before_id)
            return [
                {
                    "id": a.id,
                    "at": a.at,
                    "user": a.user,
                    "action": a.action,
                    "target": a.target,
                    "detail": json.loads(a.detail or "{}"),
                    "ok": a.ok,
                }
                for a in s.scalars(q).all()
            ]
