"""The console's HTTP side: a JSON API (``/api/...``, OpenAPI at ``/api/openapi.json``) and the
pages that use it (``/fleet``, ``/devices``, ``/routing``, ``/live``, ``/audit``).

Every page is static HTML plus ``console.js``, which does what a script would do through the
API, so anything an admin clicks can be scripted. Every change is written to the audit log with
who and when, including refused ones (a bad routing config, an unknown activation code).
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloud.config import ConsoleConfig
from shared.routing_config import RoutingConfigError, parse_routing

from .auth import LoginLimiter, new_token, token_hash, verify_password
from .fleet import Fleet, FleetUnavailable
from .store import Principal, Store, StoreError

log = logging.getLogger("cloud.console")

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
COOKIE = "xz_console"
PAGES = ("fleet", "devices", "routing", "live", "audit")
CODE = re.compile(r"^\d{6}$")
MAX_ROUTING_TEXT = 64 * 1024

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# Sent only over HTTPS (browsers ignore it on plain HTTP): a year; not includeSubDomains, since the
# console's name may share a parent domain with hosts that are not ours to pin to HTTPS.
HSTS = "max-age=31536000"


NUL = "\x00"  # PostgreSQL's text columns cannot hold it: refused in every request, on every backend


def _has_nul(request: Request) -> bool:
    return NUL in request.url.path or any(NUL in k or NUL in v for k, v in request.query_params.multi_items())


# -- request and response bodies --------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:  # per field, so the error echoes that field only (not a password)
        if isinstance(value, str) and NUL in value:
            raise ValueError("holds a NUL character")
        return value


class LoginBody(_Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    user: str
    csrf: str


class BindBody(_Body):
    code: str = Field(description="the 6-digit code the device speaks")
    edge: str = Field("", max_length=128, description="assign it to this edge at once (optional)")


class MoveBody(_Body):
    edge: str = Field(min_length=1, max_length=128)


class RevokeBody(_Body):
    reason: str = Field("", max_length=200, description="why (kept with the revocation and in the audit log)")


class RoutingBody(_Body):
    text: str = Field(max_length=MAX_ROUTING_TEXT, description="the routing.yaml to check or publish")
    comment: str = Field("", max_length=500)


class RollbackBody(_Body):
    version_id: int = Field(ge=1)


class EdgeOut(BaseModel):
    id: str
    status: str = Field(description="up, or stale when no heartbeat came for console.stale_after_s")
    last_seen: float
    age_s: float
    version: str
    sessions: int | None
    max_sessions: int | None
    capacity_turns_per_s: float | None
    demand_turns_per_s: float | None
    cloud_link: bool | None
    first_audio_p95_s: float | None
    escalation_ratio: float | None
    ws_url: str | None
    routing: dict[str, Any] | None


class DeviceOut(BaseModel):
    id: str
    edge_id: str
    connected_edge: str
    last_seen: float | None
    firmware: str
    state: str
    bound_by: str
    bound_at: float | None
    activation_pending: bool
    revoked_at: float | None = Field(None, description="when an admin revoked its token (None: not revoked)")
    revoked_by: str = ""
    revoked_reason: str = ""


class RevocationOut(BaseModel):
    device: DeviceOut
    changed: bool = Field(description="False when the device already was in the requested state")
    published: bool = Field(
        description="the edges were told through NATS now; if False, the console tells "
        "them once it reaches NATS (provisioning refuses tokens at once either way)"
    )
    error: str | None = Field(None, description="why it could not be published now")


class RoutingVersionOut(BaseModel):
    id: int
    author: str
    created_at: float
    comment: str
    kv_revision: int | None
    rollback_of: int | None
    text: str


class RoutingStateOut(BaseModel):
    nats_connected: bool
    current: str | None = Field(description="the config in the KV bucket now (None: nothing published)")
    kv_revision: int | None
    error: str | None = Field(description="why the current config could not be read")
    versions: list[RoutingVersionOut]


class CheckOut(BaseModel):
    valid: bool
    error: str | None
    diff: str = Field(description="unified diff from the published config")


class PublishOut(BaseModel):
    version: RoutingVersionOut
    diff: str


class LivePointOut(BaseModel):
    t: float
    turns_per_s: float
    escalations_per_s: float
    cache_hits_per_s: float
    first_audio_p95_s: float | None
    sessions: int
    edges_up: int


class AuditOut(BaseModel):
    id: int
    at: float
    user: str
    action: str
    target: str
    detail: dict[str, Any]
    ok: bool


# -- authentication: module level, so FastAPI can resolve the annotations -----------------------
async def principal(request: Request) -> Principal | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    store: Store = request.app.state.store
    return await asyncio.to_thread(store.session_principal, token_hash(token))


async def reader(request: Request) -> Principal:
    who = await principal(request)
    if who is None:
        raise HTTPException(401, "log in first: POST /api/login")
    return who


async def writer(request: Request) -> Principal:
    """A logged-in admin whose request carries the session's CSRF token."""
    who = await reader(request)
    sent = request.headers.get("X-CSRF-Token", "")
    if not hmac.compare_digest(sent.encode(), who.csrf.encode()):
        raise HTTPException(403, "missing or wrong X-CSRF-Token header (GET /api/session gives it)")
    return who


Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]


def _diff(old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), "published", "proposed")
    )


def create_app(cfg: ConsoleConfig, store: Store, fleet: Fleet) -> FastAPI:
    limiter = LoginLimiter(cfg.login_attempts, cfg.login_window_s)

    async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Every database call runs in a thread: the loop keeps serving heartbeats and pages."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await fleet.start()
        try:
            yield
        finally:
            await fleet.stop()

    app = FastAPI(
        title="xiaozhi fleet console",
        version="1",
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
        description="The admin console's API: every page does what these endpoints do. Log in with "
        "POST /api/login (a session cookie); state-changing requests need the X-CSRF-Token header "
        "from the login answer or GET /api/session.",
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if _has_nul(request):  # a device id or query with %00: a 422 here, not a database error (a 500)
            response: Response = JSONResponse({"detail": "the path or query holds a NUL character"}, status_code=422)
        else:
            response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if request.url.scheme == "https":  # served over TLS (here or by a proxy that says so): stay on HTTPS
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response

    app.state.store = store

    @app.post(
        "/api/login",
        response_model=SessionOut,
        tags=["session"],
        responses={401: {"description": "wrong user name or password"}, 429: {"description": "too many failed logins"}},
    )
    async def login(body: LoginBody, request: Request, response: Response) -> SessionOut:
        address = request.client.host if request.client else "?"
        wait = limiter.retry_after(address, body.username)
        if wait > 0:
            await db(
                store.audit, body.username, "login", detail={"address": address, "result": "rate_limited"}, ok=False
            )
            raise HTTPException(
                429, f"too many failed logins: try again in {wait:.0f} s", headers={"Retry-After": str(int(wait) + 1)}
            )
        found = await db(store.user_hash, body.username)
        ok, rehash = await db(verify_password, found[1] if found else None, body.password)
        if not ok or found is None:
            limiter.failed(address, body.username)
            await db(store.audit, body.username, "login", detail={"address": address, "result": "failed"}, ok=False)
            raise HTTPException(401, "wrong user name or password")
        limiter.succeeded(body.username)
        if rehash:
            await db(store.set_password, body.username, rehash)
        token = new_token()
        csrf = await db(store.open_session, found[0], token_hash(token), cfg.session_ttl_h * 3600)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(cfg.session_ttl_h * 3600),
            httponly=True,
            secure=cfg.cookie_secure,
            samesite="strict",
            path="/",
        )
        await db(store.audit, body.username, "login", detail={"address": address, "result": "ok"})
        return SessionOut(user=body.username, csrf=csrf)

    @app.get("/api/session", response_model=SessionOut, tags=["session"])
    async def session(who: Reader) -> SessionOut:
        return SessionOut(user=who.username, csrf=who.csrf)

    @app.post("/api/logout", status_code=204, tags=["session"])
    async def logout(who: Writer, request: Request, response: Response) -> Response:
        await db(store.close_session, token_hash(request.cookies.get(COOKIE, "")))
        await db(store.audit, who.username, "logout")
        out = Response(status_code=204)
        out.delete_cookie(COOKIE, path="/")
        return out

    # -- fleet ----------------------------------------------------------------------------------
    def _edge(row: dict[str, Any], now: float) -> EdgeOut:
        snap = row["snapshot"]

        def num(key: str) -> Any:
            value = snap.get(key)
            return value if isinstance(value, int | float) and not isinstance(value, bool) else None

        link = snap.get("cloud_link")
        return EdgeOut(
            id=row["id"],
            status=fleet.edge_status(row["last_seen"], now),
            last_seen=row["last_seen"],
            age_s=round(now - row["last_seen"], 1),
            version=row["version"],
            sessions=num("sessions"),
            max_sessions=num("max_sessions"),
            capacity_turns_per_s=num("capacity_turns_per_s"),
            demand_turns_per_s=num("demand_turns_per_s"),
            cloud_link=link if isinstance(link, bool) else None,
            first_audio_p95_s=num("first_audio_p95_s"),
            escalation_ratio=num("escalation_ratio"),
            ws_url=snap.get("ws_url") if isinstance(snap.get("ws_url"), str) else None,
            routing=snap.get("routing") if isinstance(snap.get("routing"), dict) else None,
        )

    @app.get("/api/edges", response_model=list[EdgeOut], tags=["fleet"])
    async def edges(who: Reader) -> list[EdgeOut]:
        now = time.time()
        return [_edge(row, now) for row in await db(store.edges)]

    @app.get("/api/edges/{edge_id}", response_model=EdgeOut, tags=["fleet"])
    async def edge(edge_id: str, who: Reader) -> EdgeOut:
        now = time.time()
        for row in await db(store.edges):
            if row["id"] == edge_id:
                return _edge(row, now)
        raise HTTPException(404, f"no edge {edge_id!r} has sent a heartbeat")

    # -- devices --------------------------------------------------------------------------------
    @app.get("/api/devices", response_model=list[DeviceOut], tags=["devices"])
    async def devices(who: Reader, state: str | None = None, edge: str | None = None) -> list[dict[str, Any]]:
        if state is not None and state not in ("pending", "active", "seen"):
            raise HTTPException(422, "state must be pending, active or seen")
        return await db(store.devices, state, edge)

    @app.get("/api/devices/{device_id}", response_model=DeviceOut, tags=["devices"])
    async def device(device_id: str, who: Reader) -> dict[str, Any]:
        found = await db(store.device, device_id.lower())
        if found is None:
            raise HTTPException(404, f"no device {device_id!r}")
        return found

    async def _known_edge(edge_id: str) -> None:
        if edge_id and edge_id not in await db(store.edge_ids):
            raise HTTPException(422, f"no edge {edge_id!r} has sent a heartbeat: cannot assign devices to it")

    @app.post(
        "/api/devices/bind",
        response_model=DeviceOut,
        tags=["devices"],
        responses={404: {"description": "no device waits with that code"}},
    )
    async def bind(body: BindBody, who: Writer) -> dict[str, Any]:
        code = body.code.strip()
        if not CODE.match(code):
            raise HTTPException(422, "an activation code is 6 digits")
        await _known_edge(body.edge)
        try:
            bound = await db(store.bind, code, body.edge, who.username)
        except StoreError as exc:
            await db(store.audit, who.username, "device.bind", code, {"error": str(exc)}, ok=False)
            raise HTTPException(404, str(exc)) from exc
        await db(store.audit, who.username, "device.bind", bound["id"], {"code": code, "edge": body.edge})
        return bound

    @app.post("/api/devices/{device_id}/move", response_model=DeviceOut, tags=["devices"])
    async def move(device_id: str, body: MoveBody, who: Writer) -> dict[str, Any]:
        await _known_edge(body.edge)
        try:
            before, moved = await db(store.move, device_id.lower(), body.edge)
        except StoreError as exc:
            raise HTTPException(404, str(exc)) from exc
        await db(store.audit, who.username, "device.move", moved["id"], {"from": before, "to": body.edge})
        return moved

    async def _tell_edges(action: Callable[[], Awaitable[None]]) -> str | None:
        """Publish a revocation change; the database already holds it, so a failure is not fatal."""
        try:
            await action()
        except FleetUnavailable as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - shown to the admin; the periodic sync retries
            return f"{type(exc).__name__}: {exc}"
        return None

    @app.post(
        "/api/devices/{device_id}/revoke",
        response_model=RevocationOut,
        tags=["devices"],
        responses={404: {"description": "no such device"}},
    )
    async def revoke(device_id: str, body: RevokeBody, who: Writer) -> RevocationOut:
        """Revoke the device's token: provisioning issues it none, edges refuse it and drop its session."""
        try:
            changed, found = await db(store.revoke, device_id.strip().lower(), who.username, body.reason)
        except StoreError as exc:
            await db(store.audit, who.username, "device.revoke", device_id, {"error": str(exc)}, ok=False)
            raise HTTPException(404, str(exc)) from exc
        record = {
            "revoked_at": found["revoked_at"],
            "revoked_by": found["revoked_by"],
            "reason": found["revoked_reason"],
        }
        error = await _tell_edges(lambda: fleet.publish_revocation(found["id"], record))
        await db(
            store.audit,
            who.username,
            "device.revoke",
            found["id"],
            {"reason": body.reason, "changed": changed, "published": error is None, "error": error},
        )
        later = "" if error is None else f"; not published yet: {error}"
        why = (body.reason or "no reason given") if changed else "already revoked"
        log.warning(
            "device %s revoked by %s (%s)%s", found["id"], who.username, why, later, extra={"device_id": found["id"]}
        )
        return RevocationOut(device=DeviceOut(**found), changed=changed, published=error is None, error=error)

    @app.post(
        "/api/devices/{device_id}/unrevoke",
        response_model=RevocationOut,
        tags=["devices"],
        responses={404: {"description": "no such device"}},
    )
    async def unrevoke(device_id: str, who: Writer) -> RevocationOut:
        """Lift a revocation: the device gets a token at its next OTA and the edges let it in again."""
        try:
            changed, found = await db(store.unrevoke, device_id.strip().lower())
        except StoreError as exc:
            await db(store.audit, who.username, "device.unrevoke", device_id, {"error": str(exc)}, ok=False)
            raise HTTPException(404, str(exc)) from exc
        error = await _tell_edges(lambda: fleet.withdraw_revocation(found["id"]))
        await db(
            store.audit,
            who.username,
            "device.unrevoke",
            found["id"],
            {"changed": changed, "published": error is None, "error": error},
        )
        later = "" if error is None else f"; not published yet: {error}"
        log.warning(
            "device %s un-revoked by %s%s%s",
            found["id"],
            who.username,
            "" if changed else " (was not revoked)",
            later,
            extra={"device_id": found["id"]},
        )
        return RevocationOut(device=DeviceOut(**found), changed=changed, published=error is None, error=error)

    # -- routing --------------------------------------------------------------------------------
    async def _current() -> tuple[str | None, int | None, str | None]:
        try:
            current = await fleet.current_routing()
        except FleetUnavailable as exc:
            return None, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - shown to the admin, not a 500
            return None, None, f"{type(exc).__name__}: {exc}"
        return (current[0], current[1], None) if current else (None, None, None)

    @app.get("/api/routing", response_model=RoutingStateOut, tags=["routing"])
    async def routing(who: Reader) -> RoutingStateOut:
        text, revision, error = await _current()
        versions = await db(store.routing_versions)
        return RoutingStateOut(
            nats_connected=fleet.connected,
            current=text,
            kv_revision=revision,
            error=error,
            versions=[RoutingVersionOut(**v) for v in versions],
        )

    @app.get("/api/routing/versions/{version_id}", response_model=RoutingVersionOut, tags=["routing"])
    async def routing_version(version_id: int, who: Reader) -> dict[str, Any]:
        found = await db(store.routing_version, version_id)
        if found is None:
            raise HTTPException(404, f"no routing version {version_id}")
        return found

    @app.post("/api/routing/check", response_model=CheckOut, tags=["routing"])
    async def check(body: RoutingBody, who: Reader) -> CheckOut:
        """Validate with the edges' own parser and diff against what is published; changes nothing."""
        text, _revision, _error = await _current()
        try:
            parse_routing(body.text, "proposed")
        except RoutingConfigError as exc:
            return CheckOut(valid=False, error=str(exc), diff=_diff(text or "", body.text))
        return CheckOut(valid=True, error=None, diff=_diff(text or "", body.text))

    async def _publish(who: Principal, text: str, comment: str, rollback_of: int | None) -> PublishOut:
        action = "routing.rollback" if rollback_of else "routing.publish"
        try:
            parse_routing(text, "proposed")
        except RoutingConfigError as exc:
            await db(store.audit, who.username, action, detail={"error": str(exc)}, ok=False)
            raise HTTPException(422, str(exc)) from exc
        current, _revision, _error = await _current()
        diff = _diff(current or "", text)
        try:
            revision = await fleet.publish_routing(text)
        except FleetUnavailable as exc:
            await db(store.audit, who.username, action, detail={"error": str(exc)}, ok=False)
            raise HTTPException(503, str(exc)) from exc
        version = await db(store.add_routing_version, text, who.username, comment, revision, rollback_of)
        await db(
            store.audit,
            who.username,
            action,
            f"routing v{version['id']}",
            {"kv_revision": revision, "comment": comment, "rollback_of": rollback_of, "diff": diff},
        )
        log.info("routing v%d published by %s as KV revision %d", version["id"], who.username, revision)
        return PublishOut(version=RoutingVersionOut(**version), diff=diff)

    @app.post(
        "/api/routing/publish",
        response_model=PublishOut,
        tags=["routing"],
        responses={
            422: {"description": "the config is invalid: nothing was published"},
            503: {"description": "NATS is unreachable: nothing was published"},
        },
    )
    async def publish(body: RoutingBody, who: Writer) -> PublishOut:
        return await _publish(who, body.text, body.comment, None)

    @app.post("/api/routing/rollback", response_model=PublishOut, tags=["routing"])
    async def rollback(body: RollbackBody, who: Writer) -> PublishOut:
        old = await db(store.routing_version, body.version_id)
        if old is None:
            raise HTTPException(404, f"no routing version {body.version_id}")
        return await _publish(who, old["text"], f"rollback to v{old['id']}", old["id"])

    # -- live and audit -------------------------------------------------------------------------
    @app.get("/api/live", response_model=list[LivePointOut], tags=["live"])
    async def live(who: Reader, since: float = 0.0) -> list[dict[str, Any]]:
        return [asdict(p) for p in fleet.live if p.t > since]

    @app.get("/api/audit", response_model=list[AuditOut], tags=["audit"])
    async def audit(who: Reader, limit: int = 200, before: int | None = None) -> list[dict[str, Any]]:
        if not 1 <= limit <= 1000:
            raise HTTPException(422, "limit must be between 1 and 1000")
        return await db(store.audit_log, limit, before)

    @app.get("/api/health", tags=["health"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "nats_connected": fleet.connected, "edges_known": len(fleet.snapshots)}

    # -- pages ----------------------------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/fleet", status_code=303)

    @app.get("/login", include_in_schema=False)
    async def login_page() -> FileResponse:
        return FileResponse(STATIC / "login.html")

    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            if await principal(request) is None:
                return RedirectResponse(f"/login?next=/{name}", status_code=303)
            return FileResponse(STATIC / f"{name}.html")

        return serve

    for name in PAGES:
        app.add_api_route(f"/{name}", page(name), methods=["GET"], include_in_schema=False)

    @app.exception_handler(StoreError)
    async def store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    return app
