"""Run one cloud worker process: connect to the hub, register a NATS micro service, serve until stopped.

The micro service gives discovery and stats for free: ``$SRV.PING``, ``$SRV.INFO`` and
``$SRV.STATS`` (optionally ``.xiaozhi-llm``) list every worker, its endpoints, request and error
counts, which the admin console reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

from nats.micro import add_service

from cloud.config import CloudConfig
from shared.nats import subjects as s
from shared.nats.configs import load_credential
from shared.nats.connect import LinkState, connect
from shared.nats.streaming import StreamingWorker

log = logging.getLogger("cloud.worker")

__all__ = ["run_worker"]

VERSION = "0.1.0"


def worker_id(cfg: CloudConfig) -> str:
    return cfg.worker.id or s.safe_token(f"{cfg.worker.role}-{socket.gethostname()}-{os.getpid()}")


async def run_worker(cfg: CloudConfig, ready: asyncio.Event | None = None) -> None:
    wid = worker_id(cfg)
    user = password = None
    if cfg.nats.credential:
        cred = load_credential(Path(cfg.nats.credential))
        user, password = cred.user, cred.password
    link = LinkState()
    nc = await connect(cfg.nats.url, f"worker {wid}", link, user=user, password=password)
    role = cfg.worker.role
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
        streamer = StreamingWorker(nc, wid, llm.generate, cfg.llm.max_inflight)
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
    log.info("worker %s serving %s on %s", wid, role, cfg.nats.url)
    print(f"READY worker={wid} role={role}", flush=True)
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
        with contextlib.suppress(Exception):
            await service.stop()
        for close in closers:
            with contextlib.suppress(Exception):
                await close()
        with contextlib.suppress(Exception):
            await nc.drain()
