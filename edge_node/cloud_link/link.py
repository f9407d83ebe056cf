"""The edge's connection to the cloud tier: remote LLM streams and remote ASR over the local NATS server.

Edge code only ever talks to its own nats-server (a leaf of the hub); what the cloud serves reaches
it over the leaf link. The link is optional: the node starts and serves every turn locally while
NATS is unreachable, keeps dialling in the background, and routes to the cloud again as soon as
it is back. Each remote route has a circuit breaker (from the routing config), so while the cloud
is failing turns fall back at once instead of each paying a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
import numpy as np
from nats.aio.client import Client

from edge_node import metrics
from edge_node.cloud_link.breaker import CircuitBreaker
from edge_node.config import NatsConfig
from shared.nats import subjects as s
from shared.nats.connect import LinkState, connect
from shared.nats.streaming import (
    RemoteError,
    RemoteFailed,
    RemoteTimeout,
    RemoteUnavailable,
    StreamReply,
    request_stream,
)
from shared.routing_config import RouteLimits

log = logging.getLogger("edge_node.cloud_link")

__all__ = ["CloudLink"]


def _result_of(exc: BaseException) -> str:
    if isinstance(exc, RemoteUnavailable):
        return "no_responders"
    if isinstance(exc, RemoteTimeout):
        return "timeout"
    if isinstance(exc, RemoteFailed):
        return "refused" if exc.stage == "accept" else "failed"
    return "error"


class CloudLink:
    def __init__(self, cfg: NatsConfig, node_id: str) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.state = LinkState()
        self.nc: Client | None = None
        self.breakers = {"llm": CircuitBreaker(), "asr": CircuitBreaker()}
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.state.listeners.append(self._on_link)

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def configured(self) -> bool:
        return bool(self.cfg.url)

    @property
    def up(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def start(self) -> None:
        if self.configured:
            self._task = asyncio.create_task(self._connect_loop(), name="cloud-link")

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self.up

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def _connect_loop(self) -> None:
        """Dial the local NATS server until it answers; nats-py reconnects by itself afterwards."""
        delay = 0.5
        while self.nc is None:
            try:
                # Replies come back to _INBOX.<node id>: the only inboxes the hub lets this edge's leaf receive.
                self.nc = await connect(
                    self.cfg.url,
                    f"edge {self.node_id}",
                    self.state,
                    inbox_prefix=s.inbox_prefix(s.safe_token(self.node_id)),
                )
            except Exception as exc:  # noqa: BLE001 - the node serves locally meanwhile
                log.warning("nats %s unreachable (%s): cloud routes off, retrying in %.0f s", self.cfg.url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
        self._connected.set()
        log.info("cloud link: connected to %s", self.cfg.url)

    def _on_link(self, up: bool) -> None:
        metrics.CLOUD_LINK_UP.set(1 if up else 0)

    def configure_breakers(self, limits: RouteLimits) -> None:
        for breaker in self.breakers.values():
            breaker.configure(limits.breaker.failures, limits.breaker.open_s)

    def ready(self, kind: str = "llm") -> bool:
        """Worth trying now: connected and the route's circuit is not open (no side effects)."""
        return self.up and self.breakers[kind].state != "open"

    # -- remote LLM ---------------------------------------------------------------------------
    async def chat_stream(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        turn_id: str,
        gen: int,
        limits: RouteLimits,
        temperature: float = 0.3,
        device_id: str = "",
        session_id: str = "",
    ) -> AsyncIterator[str]:
        """Stream a reply from a cloud LLM worker. Raises a RemoteError before the first delta when
        the cloud cannot answer (the router falls back), or after it when the stream breaks."""
        nc = self.nc
        breaker = self.breakers["llm"]
        if nc is None or not nc.is_connected:
            metrics.NATS_REQUESTS.labels(subject_class="llm", result="not_connected").inc()
            raise RemoteUnavailable("cloud link down", "accept")
        if not breaker.allow():
            metrics.NATS_REQUESTS.labels(subject_class="llm", result="circuit_open").inc()
            raise RemoteUnavailable("cloud circuit open after repeated failures", "accept")
        body = json.dumps({"messages": messages, "max_tokens": max_tokens, "temperature": temperature}).encode()
        attempt = 0
        while True:
            reply = StreamReply()
            started = time.perf_counter()
            produced = False
            stream = request_stream(
                nc,
                s.CLOUD_LLM,
                body,
                turn_id=turn_id if attempt == 0 else f"{turn_id}-r{attempt}",
                gen=gen,
                edge_id=self.node_id,
                device_id=device_id,
                session_id=session_id,
                accept_timeout_s=limits.accept_timeout_s,
                first_chunk_timeout_s=limits.first_token_timeout_s,
                chunk_timeout_s=limits.chunk_timeout_s,
                reply=reply,
            )
            try:
                async for chunk in stream:
                    if not produced:
                        produced = True
                        metrics.STAGE_SECONDS.labels(stage="cloud_first_chunk").observe(time.perf_counter() - started)
                    yield chunk.decode("utf-8", errors="replace")
            except RemoteError as exc:
                # Only a refusal (a full worker) is worth another try: another member of the queue
                # group may take it. No responders or a silent link would just fail again, slower.
                refused = isinstance(exc, RemoteFailed) and exc.stage == "accept"
                retry = not produced and attempt < limits.retries and refused
                metrics.NATS_REQUESTS.labels(subject_class="llm", result=_result_of(exc)).inc()
                if retry:
                    attempt += 1
                    log.info("cloud llm: %s; retry %d of %d", exc, attempt, limits.retries)
                    continue
                breaker.failure()
                raise
            except (GeneratorExit, asyncio.CancelledError):
                metrics.NATS_REQUESTS.labels(subject_class="llm", result="cancelled").inc()
                raise
            finally:
                await stream.aclose()
            breaker.success()
            metrics.NATS_REQUESTS.labels(subject_class="llm", result="ok").inc()
            log.info(
                "cloud llm: turn %s answered by %s in %.0f ms (%d chunks)",
                turn_id,
                reply.worker or "?",
                (time.perf_counter() - started) * 1000,
                reply.chunks,
            )
            return

    # -- remote ASR ---------------------------------------------------------------------------
    async def transcribe(self, pcm: np.ndarray, timeout_s: float) -> dict[str, Any]:
        """The cloud's multilingual ASR on an utterance; raises RemoteError when it cannot answer."""
        nc = self.nc
        breaker = self.breakers["asr"]
        if nc is None or not nc.is_connected:
            raise RemoteUnavailable("cloud link down", "accept")
        if not breaker.allow():
            raise RemoteUnavailable("cloud ASR circuit open", "accept")
        body = np.asarray(pcm, dtype="<i2").tobytes()
        try:
            msg = await nc.request(s.CLOUD_ASR, body, timeout=timeout_s, headers={s.H_EDGE: self.node_id})
        except nats.errors.NoRespondersError as exc:
            breaker.failure()
            metrics.NATS_REQUESTS.labels(subject_class="asr", result="no_responders").inc()
            raise RemoteUnavailable("no cloud ASR worker", "accept") from exc
        except nats.errors.TimeoutError as exc:
            breaker.failure()
            metrics.NATS_REQUESTS.labels(subject_class="asr", result="timeout").inc()
            raise RemoteTimeout(f"cloud ASR: no answer in {timeout_s:.1f} s", "accept") from exc
        headers = msg.headers or {}
        if "Nats-Service-Error-Code" in headers:
            breaker.failure()
            metrics.NATS_REQUESTS.labels(subject_class="asr", result="refused").inc()
            raise RemoteFailed(f"cloud ASR refused: {headers.get('Nats-Service-Error', '')}", "accept")
        try:
            result = json.loads(msg.data)
            if not isinstance(result, dict) or not isinstance(result.get("text"), str):
                raise ValueError("no text")
        except (ValueError, RecursionError) as exc:  # not JSON, huge numbers, deep nesting, no text
            breaker.failure()
            metrics.NATS_REQUESTS.labels(subject_class="asr", result="failed").inc()
            raise RemoteFailed(f"cloud ASR sent a malformed answer: {exc}", "stream") from exc
        breaker.success()
        metrics.NATS_REQUESTS.labels(subject_class="asr", result="ok").inc()
        return result
