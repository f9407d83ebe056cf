"""``xiaozhi-provision serve``: the fleet's OTA and activation endpoints (docs/protocol.md §1.2-§1.5).

Every device POSTs here at boot. The answer is exact, because the firmware is strict:

- status 200 (anything else is a failed check, retried with back-off);
- ``server_time`` in epoch milliseconds with the offset in minutes;
- ``firmware``: the device's own version with an empty URL (no update), or a newer image's
  version and URL (``force`` 1 for a forced one);
- ``websocket``: the assigned edge's URL and a device token (``shared/tokens.py``) the edge
  checks; never an ``mqtt`` section (it would switch the firmware to MQTT);
- ``activation`` only for a device that is not bound yet: the 6-digit code, the message shown
  with it, and the MAC as challenge, so the device polls ``/activate`` (202 until an admin binds
  the code in the console, then 200).

A device whose token an admin revoked in the console still gets a 200, with ``websocket.token``
empty and no activation or firmware offer. Not a 403: any status but 200 is a failed check that
the firmware retries ten times and then abandons for MQTT, while its NVS keeps the old token; a 200
is parsed, and every ``websocket`` member is copied into NVS, so the empty token overwrites the
stored one (docs/protocol.md §1.4). The device then opens its socket without a token and the edge
answers 401 (and refuses it by its revocation list anyway, whatever token it shows).

When no edge is healthy the answer is 503: the device retries (10 s, doubling), which is better
than sending it to a dead edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from shared import tokens
from shared.fleet_registry import FleetRegistry
from shared.metrics import metrics_handler, set_build_info
from shared.nats import subjects as s
from shared.nats.connect import LinkState, connect_until_up
from shared.nats.heartbeats import HeartbeatError, parse_heartbeat
from shared.protocol.ota import OtaRequestError, parse_ota_request
from shared.tls import server_context

from .assign import EdgeDirectory, NoEdgeAvailable
from .config import ProvisionConfig
from .firmware import FirmwareStore

log = logging.getLogger("provisioning")

__all__ = ["ProvisionService"]

MAX_BODY = 64 * 1024

OTA = Counter(
    "xiaozhi_provision_ota_total", "OTA requests by result (served, pending, revoked, no_edge, bad_request)", ["result"]
)
ACTIVATIONS = Counter(
    "xiaozhi_provision_activations_total", "Activation polls by answer (bound, waiting, unknown)", ["result"]
)
ASSIGNMENTS = Counter(
    "xiaozhi_provision_assignments_total", "Edge assignments by reason (sticky, new, edge_down)", ["reason"]
)
FIRMWARE_OFFERS = Counter("xiaozhi_provision_firmware_offers_total", "OTA answers that offered a firmware image")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ProvisionService:
    def __init__(self, cfg: ProvisionConfig, ssl_context: ssl.SSLContext | None = None) -> None:
        self.cfg = cfg
        # HTTPS when tls_cert_file/tls_key_file are set: the OTA answer carries the device's token.
        self.ssl_context = ssl_context or server_context(cfg.tls_cert_file, cfg.tls_key_file)
        self.store = FleetRegistry(cfg.db)
        self.keys = tokens.KeyRing.load(Path(cfg.token_keys_dir))
        self._keys_mtime = self._keyset_mtime()
        self.firmware = FirmwareStore(cfg.firmware_dir)
        self.directory = EdgeDirectory(cfg.stale_after_s, cfg.sites)
        self.link = LinkState()
        self.nc: Any = None
        self.port = cfg.port
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.add_routes(
            [
                web.post("/xiaozhi/ota/", self.ota),
                web.post("/xiaozhi/ota", self.ota),
                web.get("/xiaozhi/ota/", self.ota_info),
                web.post("/xiaozhi/ota/activate", self.activate),
                web.post("/xiaozhi/ota//activate", self.activate),
                web.get("/xiaozhi/firmware/{name}", self.firmware_file),
                web.get("/health", self.health),
                web.get("/ready", self.ready),
                web.get("/metrics", metrics_handler),
            ]
        )
        set_build_info("provision")

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port, ssl_context=self.ssl_context)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else self.cfg.port
        scheme = "https" if self.ssl_context is not None else "http"
        log.info(
            "provisioning: OTA at %s://%s:%d/xiaozhi/ota/, devices told %s",
            scheme,
            self.cfg.host,
            self.port,
            self.cfg.public_url,
        )
        if self.ssl_context is not None and self.cfg.public_url.startswith("http://"):
            # What devices are told (firmware download URLs) is built from public_url: plain HTTP then.
            log.warning(
                "TLS is on but public_url %s says http://: devices would be sent to plain HTTP "
                "(set public_url to https://...)",
                self.cfg.public_url,
            )
        self.directory.set_assigned(await asyncio.to_thread(self.store.assigned_counts))
        self._tasks.append(asyncio.create_task(self._recount(), name="recount"))
        self._tasks.append(asyncio.create_task(self._reload_keys(), name="token-keys"))
        if self.cfg.nats.url:
            self._tasks.append(asyncio.create_task(self._listen(), name="heartbeats"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self.store.close()

    async def _recount(self, every_s: float = 30.0) -> None:
        """Re-read devices per edge: admins move devices in the console, behind this process's back."""
        while True:
            await asyncio.sleep(every_s)
            try:
                self.directory.set_assigned(await asyncio.to_thread(self.store.assigned_counts))
            except Exception as exc:  # noqa: BLE001 - keep the counts we have
                log.warning("could not recount devices per edge: %s", exc)

    def _keyset_mtime(self) -> float:
        try:
            return self.keys.keyset_path.stat().st_mtime
        except OSError:
            return 0.0

    async def _reload_keys(self, every_s: float = 10.0) -> None:
        """Pick up ``xiaozhi-provision rotate-key`` (run beside this process) without a restart."""
        while True:
            await asyncio.sleep(every_s)
            mtime = await asyncio.to_thread(self._keyset_mtime)
            if mtime == self._keys_mtime:
                continue
            try:
                self.keys = await asyncio.to_thread(tokens.KeyRing.load, self.keys.dir)
            except tokens.TokenError as exc:
                log.error("device-token keys not reloaded, still signing with the old set: %s", exc)
                continue
            self._keys_mtime = mtime
            log.info("device-token key set reloaded: %d key(s)", len(self.keys.keyset.keys))

    async def _listen(self) -> None:
        self.nc = await connect_until_up(
            self.cfg.nats.url, "xiaozhi-provision", self.link, self.cfg.nats.credential, self.cfg.nats.ca_file
        )
        await self.nc.subscribe(f"{s.HEARTBEAT_PREFIX}.>", cb=self._on_heartbeat)
        log.info("provisioning: listening for edge heartbeats on %s", self.cfg.nats.url)

    async def _on_heartbeat(self, msg: Any) -> None:
        try:
            edge, beat = parse_heartbeat(msg.subject, msg.data)
        except HeartbeatError as exc:
            log.warning("ignored: %s", exc)
            return
        self.directory.heartbeat(edge, beat)

    # -- OTA ------------------------------------------------------------------------------------
    async def ota(self, request: web.Request) -> web.Response:
        try:
            ota = parse_ota_request(request.headers, await request.read())
        except OtaRequestError as exc:
            OTA.labels(result="bad_request").inc()
            return _error(400, str(exc))
        device_id, running, board = ota.device_id, ota.firmware, ota.board
        extra = {"device_id": device_id}
        device, code = await asyncio.to_thread(
            self.store.device_for_ota, device_id, running, self.cfg.activation_required
        )
        if device.get("revoked_at") is not None:
            return self._revoked(device_id, running)
        try:
            where = self.directory.assign(device["edge_id"], request.remote or "")
        except NoEdgeAvailable as exc:
            OTA.labels(result="no_edge").inc()
            log.warning("OTA %s: %s: 503, the device retries", device_id, exc, extra=extra)
            return _error(503, f"{exc}; retry later")
        ASSIGNMENTS.labels(reason=where.reason).inc()
        if where.edge != device["edge_id"]:
            await asyncio.to_thread(self.store.assign, device_id, where.edge)
        answer: dict[str, Any] = {"server_time": self._server_time(), "firmware": self._firmware(board, running)}
        pending = code is not None
        ttl = self.cfg.pending_token_ttl_s if pending else self.cfg.token_ttl_s
        token = self.keys.issue(device_id, ttl, site=where.site) if ttl > 0 else ""
        answer["websocket"] = {"url": where.ws_url, "token": token}
        if pending:
            answer["activation"] = {
                "code": code,
                "message": f"{self.cfg.console_url}\n{code}",
                "challenge": device_id,
                "timeout_ms": 30000,
            }
        OTA.labels(result="pending" if pending else "served").inc()
        log.info(
            "OTA %s (%s %s): edge %s (%s)%s",
            device_id,
            board or "?",
            running or "?",
            where.edge,
            where.reason,
            f", activation code {code}" if pending else "",
            extra=extra,
        )
        return web.json_response(answer)

    def _revoked(self, device_id: str, running: str) -> web.Response:
        """No token for a revoked device; the empty one replaces the token it stored (see the module doc)."""
        OTA.labels(result="revoked").inc()
        log.warning(
            "OTA %s: token revoked in the console: answered without a token", device_id, extra={"device_id": device_id}
        )
        return web.json_response(
            {
                "server_time": self._server_time(),
                "firmware": {"version": running or "0.0.0", "url": "", "force": 0},
                "websocket": {"token": ""},
            }
        )

    def _server_time(self) -> dict[str, int]:
        tz = self.cfg.timezone_offset_min
        if tz is None:
            offset = datetime.now().astimezone().utcoffset()
            tz = int(offset.total_seconds() // 60) if offset else 0
        return {"timestamp": int(time.time() * 1000), "timezone_offset": tz}

    def _firmware(self, board: str, running: str) -> dict[str, Any]:
        image = self.firmware.offer(board, running) if running else None
        if image is None:
            return {"version": running or "0.0.0", "url": "", "force": 0}
        FIRMWARE_OFFERS.inc()
        url = f"{self.cfg.public_url.rstrip('/')}/xiaozhi/firmware/{image.file}"
        return {"version": image.version, "url": url, "force": 1 if image.force else 0}

    async def ota_info(self, request: web.Request) -> web.Response:
        return web.Response(text="xiaozhi provisioning: POST here with Device-Id (docs/protocol.md §1)\n")

    # -- activation -----------------------------------------------------------------------------
    async def activate(self, request: web.Request) -> web.Response:
        """202 while the device waits for an admin to bind its code, 200 once bound."""
        device_id = (request.headers.get("Device-Id") or "").strip().lower()
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, huge numbers, deep nesting
                return _error(400, f"request body is not valid JSON: {str(exc)[:200] or type(exc).__name__}")
            if not isinstance(body, dict):
                return _error(400, "request body must be a JSON object")
        if not device_id:
            return _error(400, "missing Device-Id header")
        device = await asyncio.to_thread(self.store.device, device_id)
        if device is None:
            ACTIVATIONS.labels(result="unknown").inc()
            return web.json_response({"status": "unknown device: POST the OTA endpoint first"}, status=202)
        if device["state"] == "pending":
            ACTIVATIONS.labels(result="waiting").inc()
            return web.json_response({"status": "waiting for the code to be bound in the console"}, status=202)
        ACTIVATIONS.labels(result="bound").inc()
        log.info("activation %s: bound", device_id, extra={"device_id": device_id})
        return web.json_response({"status": "activated"})

    async def firmware_file(self, request: web.Request) -> web.StreamResponse:
        path = self.firmware.path(request.match_info["name"])
        if path is None:
            return _error(404, "no such firmware image")
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "nats_connected": self.link.connected, "edges_known": len(self.directory.edges)}
        )

    async def ready(self, request: web.Request) -> web.Response:
        healthy = [e for e in self.directory.edges if self.directory.healthy(e)]
        body = {"ready": bool(healthy), "healthy_edges": sorted(healthy)}
        return web.json_response(body, status=200 if healthy else 503)
