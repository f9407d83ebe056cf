"""The edge node's HTTP port: OTA (docs/protocol.md §1), health, readiness, Prometheus metrics,
/stats and the /talk browser page (docs/talk.md).

The OTA answer is what points a device at this node, so it is exact: status 200, a
``websocket`` section and never an ``mqtt`` one (that would switch the firmware to MQTT),
``server_time`` in milliseconds with the offset in minutes, and the device's own firmware
version echoed back with an empty URL, which means "no update".
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from edge_node.config import ServerConfig
from edge_node.cpu_roles import cpu_seconds_by_role
from edge_node.talk import TalkPage
from shared.metrics import metrics_handler
from shared.protocol.ota import OtaRequest, OtaRequestError, parse_ota_request

log = logging.getLogger("edge_node.http")
MAX_OTA_BODY = 64 * 1024


class NodeView(Protocol):
    """What the HTTP port reports of the node (the server implements it; a test may fake it)."""

    @property
    def node_id(self) -> str: ...

    def listening(self) -> bool:
        """The WebSocket port is open (the models are loaded before it opens)."""
        ...

    def public_ws_url(self, host_header: str | None) -> str: ...

    def session_count(self) -> int: ...

    def uptime_s(self) -> float: ...

    def model_names(self) -> dict[str, str]: ...

    def cloud_link(self) -> bool | None: ...

    def cache_stats(self) -> dict[str, Any]: ...

    def snapshot(self) -> dict[str, Any]: ...

    def record_firmware(self, device_id: str, version: str) -> None: ...


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class HttpApi:
    def __init__(
        self,
        node: NodeView,
        cfg: ServerConfig,
        timezone_offset_min: int | None,
        ssl_context: ssl.SSLContext | None = None,
        talk: TalkPage | None = None,
    ) -> None:
        self.node = node
        self.cfg = cfg
        self.timezone_offset_min = timezone_offset_min
        self.ssl_context = ssl_context
        self.port = cfg.http_port  # the real one once started (0 picks a free port)
        self.app = web.Application(client_max_size=MAX_OTA_BODY)
        self.app.add_routes(
            [
                web.post("/xiaozhi/ota/", self.ota),
                web.post("/xiaozhi/ota", self.ota),
                web.get("/xiaozhi/ota/", self.ota_info),
                web.post("/xiaozhi/ota/activate", self.activate),
                web.get("/health", self.health),
                web.get("/ready", self.ready),
                web.get("/metrics", metrics_handler),
                web.get("/stats", self.stats),
            ]
        )
        if talk is not None:
            self.app.add_routes(talk.routes())  # /talk: the browser page (edge_node/talk/)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        cfg = self.cfg
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        # Same certificate as the WebSocket port: OTA answers carry device tokens (https when TLS is on).
        site = web.TCPSite(self._runner, cfg.host, cfg.http_port, ssl_context=self.ssl_context)
        await site.start()
        if cfg.http_port == 0:
            sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _ota_body(self, request: web.Request, ota: OtaRequest) -> dict[str, Any]:
        offset = datetime.now().astimezone().utcoffset()
        tz_min = self.timezone_offset_min
        if tz_min is None:
            tz_min = int(offset.total_seconds() // 60) if offset else 0
        return {
            "server_time": {"timestamp": int(time.time() * 1000), "timezone_offset": tz_min},
            "firmware": {"version": ota.firmware or "0.0.0", "url": "", "force": 0},
            "websocket": {"url": self.node.public_ws_url(request.host), "token": ""},
        }

    async def ota(self, request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            log.warning("OTA from %s refused: body over %d bytes", request.remote, MAX_OTA_BODY)
            return _error(413, f"request body over {MAX_OTA_BODY} bytes")
        try:
            ota = parse_ota_request(request.headers, raw)
        except OtaRequestError as exc:
            log.warning("OTA from %s refused: %s", request.remote, exc)
            return _error(400, str(exc))
        answer = self._ota_body(request, ota)
        self.node.record_firmware(ota.device_id, answer["firmware"]["version"])
        log.info(
            "OTA: device %s (%s) -> %s",
            ota.device_id,
            request.headers.get("User-Agent", "?"),
            answer["websocket"]["url"],
            extra={"device_id": ota.device_id},
        )
        return web.json_response(answer)

    async def ota_info(self, request: web.Request) -> web.Response:
        url = self.node.public_ws_url(request.host)
        return web.Response(text=f"OTA endpoint is up; devices are sent to {url}\n")

    async def activate(self, request: web.Request) -> web.Response:
        # An edge node serves devices that are already bound; activation lives in provisioning.
        return web.json_response({"status": "activated"})

    async def health(self, request: web.Request) -> web.Response:
        node = self.node
        return web.json_response(
            {"status": "ok", "node_id": node.node_id, "sessions": node.session_count(), "uptime_s": node.uptime_s()}
        )

    async def ready(self, request: web.Request) -> web.Response:
        """Ready once the models are loaded and the WebSocket port listens (the engines load
        before it opens). The cloud link is reported, not required: a node without it still
        answers from its local models."""
        node = self.node
        if not node.listening():
            return _error(503, "WebSocket server not listening yet")
        return web.json_response(
            {"ready": True, "node_id": node.node_id, "models": node.model_names(), "cloud_link": node.cloud_link()}
        )

    async def stats(self, request: web.Request) -> web.Response:
        """JSON for the load generator: sessions, cache hits per cache and level, CPU by thread role."""
        node = self.node
        cpu = await asyncio.to_thread(cpu_seconds_by_role)  # reads /proc: off the loop
        return web.json_response(
            {
                "sessions": node.session_count(),
                "caches": node.cache_stats(),
                "cpu_s_by_role": cpu,
                "edge": node.snapshot(),
            }
        )
