"""Run one cloud worker process: connect to the hub, register a NATS micro service, serve until stopped.

The micro service gives discovery and stats for free: ``$SRV.PING``, ``$SRV.INFO`` and
``$SRV.STATS`` (optionally ``.xiaozhi-llm``) list every worker, its endpoints, request and error
counts, which the admin console and ``xiaozhi-validate`` read. Each worker also serves HTTP:
``/metrics`` for Prometheus (inflight / capacity drives the Kubernetes autoscaler), ``/health``
(the process runs: liveness) and ``/ready`` (connected to NATS with its endpoint registered:
readiness; a worker cut off from the hub is taken out of rotation, not restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

from aiohttp import web
from nats.micro import add_service

from cloud.config import CloudConfig
from shared import metrics
from shared.nats import subjects as s
from shared.nats.configs import load_credential
from shared.nats.connect import LinkState, connect
from shared.nats.streaming import StreamingWorker

log = logging.getLogger("cloud.worker")

__all__ = ["run_worker"]

VERSION = "0.1.0"


def worker_id(cfg: CloudConfig) -> str:
    return cfg.worker.id or s.safe_token(f"{cfg.worker.role}-{socket.gethostname()}-{os.getpid()}")


class WorkerHttp:
    """The worker's HTTP port: metrics and the two probes."""

    def __init__(self, wid: str, role: str, link: LinkState) -> None:
        self.wid, self.role, self.link = wid, role, link
        self.serving = False  # set once the NATS endpoint is registered
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/metrics", metrics.metrics_handler),
                web.get("/health", self.health),
                web.get("/ready", self.ready),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "worker": self.wid, "role": self.role})

    async def ready(self, request: web.Request) -> web.Response:
        body = {
            "ready": self.serving and self.link.connected,
            "worker": self.wid,
            "role": self.role,
            "nats_connected": self.link.connected,
            "serving": self.serving,
        }
        return web.json_response(body, status=200 if body["ready"] else 503)


async def run_worker(cfg: CloudConfig, ready: asyncio.Event | None = None) -> None:
    wid = worker_id(cfg)
    role = cfg.worker.role
    metrics.set_build_info(f"cloud-{role}")
    user = password = None
    if cfg.nats.credential:
        cred = load_credential(Path(cfg.nats.credential))
        user, password = cred.user, cred.password
    link = LinkState()
    link.listeners.append(lambda up: metrics.CLOUD_LINK_UP.set(1 if up else 0))
    metrics.CLOUD_LINK_CONFIGURED.set(1)
    for result in ("ok", "error", "cancelled", "refused_busy", "bad_request"):
        metrics.WORKER_REQUESTS.labels(role=role, result=result)  # at 0: alerts take increase()
    http = WorkerHttp(wid, role, link)
    await http.start(cfg.worker.http_host, cfg.worker.http_port)  # up first: liveness while models load
    lag = asyncio.create_task(metrics.watch_loop_lag(), name="loop-lag")
    tls = cfg.nats.tls()  # the hub's CA (nats.ca_file): TLS, its certificate and host name checked
    nc = await connect(cfg.nats.url, f"worker {wid}", link, user=user, password=password, tls=tls)
    service = await add_service(
        nc,
        name=f"xiaozhi-{role}",
        version=VERSION,
        description=f"xiaozhi cloud {role} worker",
        metadata={"worker": wid, "role": role},
        queue_group=s.QUEUE_LLM if role == "llm" else s.QUEUE_ASR,
    )
    closers = []
    if role == "llm":
        from cloud.workers.llm import LlmWorker

        llm = LlmWorker(cfg.llm)
        streamer = StreamingWorker(nc, wid, llm.generate, cfg.llm.max_inflight, role="llm")
        await streamer.start()
        await service.add_endpoint(
            name="chat",
            subject=s.CLOUD_LLM,
            queue_group=s.QUEUE_LLM,
            handler=streamer.handle,
            metadata={"model": cfg.llm.model, "endpoint": cfg.llm.base_url},
        )
        closers += [streamer.stop, llm.close]
    else:
        from cloud.workers.asr import AsrWorker

        asr = await asyncio.to_thread(AsrWorker, cfg.asr, wid)  # model loading is file I/O and CPU
        await service.add_endpoint(
            name="transcribe",
            subject=s.CLOUD_ASR,
            queue_group=s.QUEUE_ASR,
            handler=asr.handle,
            metadata={"model": asr.engines[0].name},
        )
        closers.append(asr.close)
    await nc.flush()
    http.serving = True
    log.info("worker %s serving %s on %s; metrics on :%d", wid, role, cfg.nats.url, http.port)
    print(f"READY worker={wid} role={role} http={http.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("worker %s stopping", wid)
        http.serving = False
        with contextlib.suppress(Exception):
            await service.stop()
        for close in closers:
            with contextlib.suppress(Exception):
                await close()
        with contextlib.suppress(Exception):
            await nc.drain()
        lag.cancel()
        await http.stop()
