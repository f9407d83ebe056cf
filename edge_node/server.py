"""The edge node's front: WebSocket for devices, HTTP for OTA, health and metrics.

One asyncio process holds every socket and never runs a model: a server that decodes audio or runs
its VAD on the event loop stalls every device whenever one of them is busy. No per-connection
threads, no WebSocket keepalive pings (some firmware never answers them, docs/protocol.md §2.1),
and idle sessions are closed by one sweeper task rather than a timer per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import time
from collections import OrderedDict
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from edge_node import __version__, cpu_roles, metrics
from edge_node.admission import CapacityModel
from edge_node.auth.handshake import DeviceAuth, device_info
from edge_node.auth.revocations import RevocationSource, revocations_path
from edge_node.cache.build import Caches
from edge_node.cache.speech import CachedSynthesis
from edge_node.cloud_link.heartbeat import Heartbeat
from edge_node.cloud_link.link import CloudLink
from edge_node.config import EdgeConfig
from edge_node.context import ServerContext
from edge_node.engines.canned import CannedSpeech
from edge_node.engines.llm_stream import LocalChat
from edge_node.engines.runtime import Engines
from edge_node.http_api import HttpApi
from edge_node.limits import DeviceLimits, LogThrottle
from edge_node.provider.link import ProviderLink
from edge_node.routing.router import Router
from edge_node.routing.source import RoutingSource
from edge_node.session.port import ReplyServices
from edge_node.session.session import Session
from edge_node.talk import TalkPage
from edge_node.tools.builtin import builtin_tools
from edge_node.tools.plugins import load_plugins
from edge_node.tools.toolbox import ToolBox
from edge_node.turn_stats import TurnStats
from shared.nats.server import NatsServerProcess, run_nats_server
from shared.tls import server_context

log = logging.getLogger(__name__)


class EdgeServer:
    """The node: its sockets, its sessions, its link to the fleet, and what the HTTP port reports."""

    def __init__(
        self,
        cfg: EdgeConfig,
        engines: Engines,
        ssl_context: ssl.SSLContext | None = None,
        caches: Caches | None = None,
        canned: CannedSpeech | None = None,
    ) -> None:
        """``caches`` and ``canned`` come from the start-up (``cli._serve``); without them the node
        caches nothing and says nothing when busy (tests that are about something else)."""
        self.cfg = cfg
        # TLS for both ports (server.tls_cert_file/tls_key_file); the CLI builds it before the models
        # load, so a bad certificate fails in a second rather than after the engines.
        self.ssl_context = ssl_context or server_context(cfg.server.tls_cert_file, cfg.server.tls_key_file)
        self.caches = caches or Caches()
        self.cloud = CloudLink(cfg.nats, cfg.node_id)
        self.routing = RoutingSource(cfg.routing.file, self.cloud, cfg.routing.watch_kv, cfg.routing.file_poll_s)
        self.provider = ProviderLink(cfg.provider)
        router = Router(
            cfg.llm,
            cfg.intent,
            cfg.mcp,
            LocalChat(engines.llm_pool),
            self.caches.answers,
            routing=self.routing,
            cloud=self.cloud,
            provider=self.provider,
            llm_queue_depth=engines.llm_queue_depth,
            languages=list(cfg.languages.serve),
            chats={lang: LocalChat(pool) for lang, pool in engines.llm_pools.items() if lang != "en"},
            system_prompts={lang: engines.system_prompt(lang) for lang in engines.llm_pools if lang != "en"},
            tools_cfg=cfg.tools,
            site=cfg.site,
        )
        if cfg.tools.enabled:
            router.tools = ToolBox(builtin_tools(cfg.tools.builtin, router.intents) + load_plugins(cfg.tools.plugins))
        capacity, turn_stats = CapacityModel(cfg.admission), TurnStats()
        replies = ReplyServices(
            router=router,
            transcribe=engines.transcribe,
            synthesize=CachedSynthesis(engines.synthesize, self.caches.tts, engines.voice_name),
            canned=canned or CannedSpeech(),
            capacity=capacity,
            turn_stats=turn_stats,
            audio=cfg.audio,
            tts=cfg.tts,
            queues=cfg.queues,
            node_id=cfg.node_id,
            in_burst=engines.in_burst,
        )
        self.ctx = ServerContext(cfg, engines, router, capacity, DeviceLimits(cfg.limits), replies, turn_stats)
        self.sessions: set[Session] = set()
        self.started_at = time.time()
        # Firmware versions devices reported to this node's OTA endpoint (newest 10 000), for the heartbeat.
        self.firmware: OrderedDict[str, str] = OrderedDict()
        self.auth = DeviceAuth(cfg.auth, cfg.site)
        # The fleet's revoked devices (KV xz_revoked): refused at the handshake, dropped when revoked.
        self.revocations = RevocationSource(self.cloud, cfg.auth.watch_revocations, path=revocations_path(cfg))
        self.revocations.on_revoked.append(self._close_revoked)
        self._revoked_log = LogThrottle(cfg.limits.log_every_s, cfg.limits.max_devices)
        if self.cloud.configured and cfg.cache.l2_enabled:
            self.caches.share(self.cloud, cfg.cache)
        self.heartbeat = Heartbeat(self.cloud, cfg.node_id, self.snapshot, cfg.nats.heartbeat_s)
        self.nats_server: NatsServerProcess | None = None
        talk = TalkPage(self.public_ws_url, lambda: cfg.auth.enabled or cfg.auth.device_tokens)
        self.http = HttpApi(self, cfg.server, cfg.intent.timezone_offset_min, self.ssl_context, talk)
        self._ws: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.ws_port = cfg.server.port
        self._advertised: str | None = None
        metrics.set_build_info("edge")
        metrics.SESSIONS_CAPACITY.set(cfg.server.max_sessions)
        metrics.SESSIONS.labels(transport="websocket").set(0)
        metrics.CLOUD_LINK_CONFIGURED.set(1 if cfg.nats.url else 0)
        metrics.init_series()
        cpu_roles.register()

    @property
    def http_port(self) -> int:
        return self.http.port

    # -- handshake ----------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        want = self.cfg.server.ws_path
        if path.rstrip("/") != want.rstrip("/"):
            metrics.CONNECTIONS.labels(result="bad_path").inc()
            return connection.respond(HTTPStatus.NOT_FOUND, f"no WebSocket endpoint at {path}; use {want}\n")
        if not self.auth.authorised(request):
            metrics.CONNECTIONS.labels(result="unauthorised").inc()
            log.warning("refused %s: bad or missing token", request.headers.get("Device-Id", "?"))
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid or missing device token\n")
        # A request without Device-Id is limited by its address (not its port: that changes every time).
        device_id = device_info(request, connection.remote_address[0] if connection.remote_address else "?").device_id
        if self.revocations.is_revoked(device_id):
            metrics.CONNECTIONS.labels(result="revoked").inc()
            metrics.REVOCATIONS_ENFORCED.labels(action="refused").inc()
            refused = self._revoked_log.due(device_id.lower())
            if refused is not None:
                log.warning(
                    "refused %s: device revoked (%d refused since the last such line)",
                    device_id,
                    refused,
                    extra={"device_id": device_id},
                )
            return connection.respond(HTTPStatus.UNAUTHORIZED, "device revoked\n")
        if not self.ctx.limits.allow_connect(device_id):
            metrics.CONNECTIONS.labels(result="rate_limited").inc()
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, "too many connection attempts; retry later\n")
        admitted, why = self.ctx.capacity.admit(len(self.sessions), self.cfg.server.max_sessions)
        metrics.ADMISSION.labels(result="admitted" if admitted else "refused").inc()
        if not admitted:
            metrics.CONNECTIONS.labels(result="refused_busy").inc()
            log.warning("refused %s: %s", request.headers.get("Device-Id", "?"), why)
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"{why}; retry later\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        remote = f"{ws.remote_address[0]}:{ws.remote_address[1]}" if ws.remote_address else "?"
        assert ws.request is not None
        session = Session(ws, self.ctx, device_info(ws.request, remote))
        self.sessions.add(session)
        metrics.SESSIONS.labels(transport="websocket").set(len(self.sessions))
        session.log.info("connected from %s (client %s)", remote, session.device.client_id or "-")
        if self.revocations.is_revoked(session.device.device_id):
            self._close_revoked(session.device.device_id.lower())  # revoked between the check and now
        result = "closed"
        try:
            await session.run()
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code not in (1000, 1001):
                result = "error"
            if exc.sent is not None and exc.sent.code == 1009:
                result = "oversize"
                metrics.PROTOCOL_ERRORS.labels(code="oversize").inc()
                session.log.warning(
                    "frame larger than %d bytes: connection closed (1009)", self.cfg.server.max_frame_bytes
                )
        except Exception:
            result = "error"
            session.log.exception("session crashed")
        finally:
            self.sessions.discard(session)
            metrics.SESSIONS.labels(transport="websocket").set(len(self.sessions))
            metrics.CONNECTIONS.labels(result=result).inc()
            session.log.info("disconnected (%s, code %s)", result, ws.close_code)

    def _close_revoked(self, device_id: str) -> None:
        """A device was revoked: close its live sessions now (1008), not at their next handshake."""
        for session in list(self.sessions):
            if session.device.device_id.lower() == device_id and not session.closing:
                session.log.warning("device revoked: closing its session")
                metrics.REVOCATIONS_ENFORCED.labels(action="closed").inc()
                self._tasks.append(asyncio.create_task(session.close(1008, "device revoked")))

    async def _measure_capacity(self) -> None:
        """Re-measure CPU per turn every few seconds (what admission compares demand against)."""
        while True:
            await asyncio.sleep(5)
            self.ctx.capacity.sample()
            self.ctx.capacity.demand()

    async def _sweep_idle(self) -> None:
        """Close sessions nobody spoke in for idle_timeout_s (a device that never speaks)."""
        limit = self.cfg.server.idle_timeout_s
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            for session in list(self.sessions):
                if session.hello_done and not session.closing and session.idle_for(now) > limit:
                    session.log.info("idle for %.0f s: closing", limit)
                    metrics.CONNECTIONS.labels(result="idle_closed").inc()
                    task = asyncio.create_task(session.close(1000, "idle timeout"))
                    self._tasks.append(task)
            self._tasks = [t for t in self._tasks if not t.done()]

    # -- lifecycle ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """This edge as the fleet sees it (heartbeats, /stats): load, capacity, link and routing."""
        ctx = self.ctx
        return {
            "edge": self.cfg.node_id,
            "site": self.cfg.site,
            "version": __version__,
            "time": time.time(),
            "uptime_s": self.uptime_s(),
            "ws_url": self.public_ws_url(None),
            "sessions": len(self.sessions),
            "max_sessions": self.cfg.server.max_sessions,
            "capacity_turns_per_s": round(ctx.capacity.capacity(), 3),
            "demand_turns_per_s": round(ctx.capacity.demand(), 3),
            "cpu_s_per_turn": round(ctx.capacity.cpu_s_per_turn, 3),
            "llm_queue": ctx.engines.llm_queue_depth(),
            "languages": list(self.cfg.languages.serve),
            "cloud_link": self.cloud.up,
            # "timing" when the models are timing stand-ins (fleet runs): never mistaken for real ones.
            "engines": "timing" if self.cfg.timing.profile else "models",
            **ctx.turn_stats.summary(),
            "devices": [
                {
                    "id": s.device.device_id,
                    "session": s.session_id,
                    "since": round(s.connected_at, 1),
                    "firmware": self.firmware.get(s.device.device_id, ""),
                }
                for s in list(self.sessions)
            ],
            "routing": {
                "origin": self.routing.origin,
                "revision": self.routing.revision,
                "error": self.routing.last_error,
            },
        }

    # -- what the HTTP port reports (``http_api.NodeView``) ---------------------------------
    @property
    def node_id(self) -> str:
        return self.cfg.node_id

    def listening(self) -> bool:
        return self._ws is not None

    def session_count(self) -> int:
        return len(self.sessions)

    def uptime_s(self) -> float:
        return round(time.time() - self.started_at, 1)

    def model_names(self) -> dict[str, str]:
        return self.ctx.engines.model_names()

    def cloud_link(self) -> bool | None:
        """Up or down; None when this node has no cloud link configured."""
        return self.cloud.up if self.cloud.configured else None

    def cache_stats(self) -> dict[str, Any]:
        return self.caches.stats()

    def record_firmware(self, device_id: str, version: str) -> None:
        """A device's OTA request told its firmware version (kept for the newest 10 000 devices)."""
        self.firmware[device_id] = version
        self.firmware.move_to_end(device_id)
        while len(self.firmware) > 10_000:
            self.firmware.popitem(last=False)

    async def _start_nats(self) -> None:
        """The edge's own leaf nats-server, when this node runs it (``nats.embedded_config``)."""
        n = self.cfg.nats
        if not n.embedded_config:
            return
        url = urlsplit(n.url or "nats://127.0.0.1:4222")
        config = Path(n.embedded_config)
        self.nats_server = await asyncio.to_thread(
            run_nats_server, config, config.with_suffix(".log"), url.hostname or "127.0.0.1", url.port or 4222
        )
        log.info("embedded nats-server running from %s", config)

    async def start(self) -> None:
        await self._start_nats()
        await self.cloud.start()
        await self.routing.start()
        await self.revocations.start()
        if self.caches.semantic_share is not None:
            await self.caches.semantic_share.start()
        await self.heartbeat.start()
        await self.ctx.engines.start()
        s = self.cfg.server
        self._ws = await serve(
            self._handle,
            s.host,
            s.port,
            process_request=self._process_request,
            ping_interval=None,  # docs/protocol.md §2.1: never depend on device pongs
            max_size=s.max_frame_bytes,
            compression=None,  # firmware offers no extensions
            max_queue=64,
            # What a device that stops reading can hold (with SO_SNDBUF, set per session) before sends wait.
            write_limit=s.send_buffer_bytes,
            open_timeout=10,
            server_header=f"xiaozhi-edge/{__version__}",
            ssl=self.ssl_context,
        )
        self.ws_port = self._ws.sockets[0].getsockname()[1] if s.port == 0 else s.port
        await self.http.start()
        self._handle_sighup(True)
        self._tasks = [
            asyncio.create_task(self._sweep_idle(), name="idle-sweeper"),
            asyncio.create_task(metrics.watch_loop_lag(), name="loop-lag"),
            asyncio.create_task(self._measure_capacity(), name="capacity"),
            asyncio.create_task(self.auth.follow_key_set(), name="token-keys"),
        ]
        tls = self.ssl_context is not None
        log.info(
            "edge node %s: WebSocket %s://%s:%d%s, HTTP %s://%s:%d (OTA /xiaozhi/ota/)",
            self.cfg.node_id,
            "wss" if tls else "ws",
            s.host,
            self.ws_port,
            s.ws_path,
            "https" if tls else "http",
            s.host,
            self.http_port,
        )
        if tls and s.public_ws_url.startswith("ws://"):
            # Devices would open plain WebSockets to a TLS port: every handshake would fail.
            log.warning(
                "server.public_ws_url %s is ws:// but this port speaks TLS: devices need wss://", s.public_ws_url
            )

    def _handle_sighup(self, on: bool) -> None:
        """SIGHUP re-reads the routing file at once (the usual daemon reload; it is also polled)."""
        loop = asyncio.get_running_loop()
        # Not in the main thread (an edge embedded in a test) or not on a POSIX loop: polling only.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            if on:
                loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            else:
                loop.remove_signal_handler(signal.SIGHUP)

    def _on_sighup(self) -> None:
        if self.routing.file:
            log.info("SIGHUP: re-reading the routing file %s", self.routing.file)
            self.routing.check_file_now()
        else:
            log.info("SIGHUP: no routing.file configured, nothing to re-read")

    async def stop(self) -> None:
        self._handle_sighup(False)
        for task in self._tasks:
            task.cancel()
        if self._ws is not None:
            self._ws.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.wait_closed(), 5)
        await self.http.stop()
        await self.heartbeat.stop()
        await self.routing.stop()
        await self.revocations.stop()
        if self.caches.semantic_share is not None:
            await self.caches.semantic_share.stop()
        await self.cloud.stop()
        await self.provider.close()
        await self.ctx.engines.stop()
        self.caches.close()
        if self.nats_server is not None:
            await asyncio.to_thread(self.nats_server.stop)

    def public_ws_url(self, host_header: str | None) -> str:
        """The URL the OTA answer gives devices: configured, else derived from how they reached us."""
        if self.cfg.server.public_ws_url:
            return self.cfg.server.public_ws_url
        host = (host_header or "").rsplit(":", 1)[0] or self._advertised_host()
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{host}:{self.ws_port}{self.cfg.server.ws_path}"

    def _advertised_host(self) -> str:
        """For heartbeats (no request to learn from): the listen address if it is a specific one,
        else the address this host uses towards its NATS server. Set ``server.public_ws_url`` when
        devices reach the edge by another address (NAT, DNS)."""
        if self._advertised is None:
            host = self.cfg.server.host
            if host in ("0.0.0.0", "::", ""):
                target = urlsplit(self.cfg.nats.url).hostname or "192.0.2.1"
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                        probe.connect((target, 9))  # UDP connect sends nothing: it only picks a route
                        host = probe.getsockname()[0]
                except OSError:
                    host = "127.0.0.1"
            self._advertised = host
        return self._advertised
