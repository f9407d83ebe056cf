"""Streaming a reply over NATS: the edge asks, a worker accepts, then streams numbered chunks.

A plain NATS request gets one reply, and an LLM answer is many. So:

1. the edge subscribes to a fresh inbox, then sends a request to the service subject (a queue
   group: one worker takes it) with headers naming the turn, its generation and the inbox;
2. the worker answers the request at once: accepted, or a service error (503 when it is full).
   No worker at all is the server's no-responders status: the edge knows within a round trip that
   the cloud is unreachable, instead of waiting out a timeout;
3. the worker publishes chunks to the inbox, each with a sequence number (1, 2, ...) and the
   turn's generation, and a last message with the end marker (and an error, if it failed);
4. a barge-in publishes to ``xz.cancel.<turn>``: the worker stops generating. Chunks that still
   arrive carry the old generation or belong to a closed inbox and are dropped.

A worker that dies mid-answer simply stops sending: the edge notices when the next chunk is later
than ``chunk_timeout_s`` and falls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from shared import metrics
from shared.nats import subjects as s

log = logging.getLogger("shared.nats.streaming")

__all__ = [
    "RemoteError",
    "RemoteFailed",
    "RemoteTimeout",
    "RemoteUnavailable",
    "StreamingWorker",
    "StreamReply",
    "request_stream",
]


class RemoteError(RuntimeError):
    """A remote route could not answer; ``stage`` says how far it got."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage  # accept | first_chunk | stream


class RemoteUnavailable(RemoteError):
    """Nobody serves the subject (no responders, link down, circuit open): fail over at once."""


class RemoteTimeout(RemoteError):
    """A responder exists but did not answer in time (a slow or silently dead link, a stuck worker)."""


class RemoteFailed(RemoteError):
    """The worker refused the request or reported an error, or the stream broke mid-answer."""


@dataclass(slots=True)
class StreamReply:
    """What came back besides the text: which worker, and its end-of-stream summary."""

    worker: str = ""
    chunks: int = 0
    summary: dict[str, Any] | None = None
    accepted_ms: float | None = None
    first_chunk_ms: float | None = None


async def request_stream(
    nc: Client,
    subject: str,
    body: bytes,
    *,
    turn_id: str,
    gen: int,
    edge_id: str = "",
    device_id: str = "",
    session_id: str = "",
    accept_timeout_s: float = 1.0,
    first_chunk_timeout_s: float = 5.0,
    chunk_timeout_s: float = 3.0,
    reply: StreamReply | None = None,
) -> AsyncIterator[bytes]:
    """Yield the chunks of one streamed reply, in order; raise a RemoteError subclass on failure.

    Closing the iterator early (barge-in, the consumer gave up) publishes the cancel message.
    """
    info = reply if reply is not None else StreamReply()
    started = time.perf_counter()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, pending_msgs_limit=4096)
    finished = False
    try:
        headers = {
            s.H_TURN: turn_id,
            s.H_GEN: str(gen),
            s.H_STREAM: inbox,
            s.H_EDGE: edge_id,
            s.H_DEVICE: device_id or "-",
            s.H_SESSION: session_id or "-",
        }
        try:
            ack = await nc.request(subject, body, timeout=accept_timeout_s, headers=headers)
        except nats.errors.NoRespondersError as exc:
            raise RemoteUnavailable(f"no responders on {subject}", "accept") from exc
        except nats.errors.TimeoutError as exc:
            raise RemoteTimeout(f"{subject}: no answer within {accept_timeout_s:.1f} s", "accept") from exc
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.OutboundBufferLimitError,
        ) as exc:
            raise RemoteUnavailable(f"{subject}: not connected ({type(exc).__name__})", "accept") from exc
        ack_headers = ack.headers or {}
        if "Nats-Service-Error-Code" in ack_headers:
            code = ack_headers.get("Nats-Service-Error-Code")
            raise RemoteFailed(f"{subject} refused: {code} {ack_headers.get('Nats-Service-Error', '')}", "accept")
        info.worker = ack_headers.get(s.H_WORKER, "")
        info.accepted_ms = (time.perf_counter() - started) * 1000
        expected = 1
        while True:
            timeout = first_chunk_timeout_s if expected == 1 else chunk_timeout_s
            try:
                msg = await sub.next_msg(timeout=timeout)
            except nats.errors.TimeoutError as exc:
                stage = "first_chunk" if expected == 1 else "stream"
                raise RemoteTimeout(f"{subject}: no chunk {expected} within {timeout:.1f} s", stage) from exc
            h = msg.headers or {}
            if h.get(s.H_GEN) != str(gen) or h.get(s.H_TURN) != turn_id:
                continue  # an older turn's chunk on a reused path: never reaches the device
            try:
                seq = int(h.get(s.H_SEQ, "0"))
            except ValueError:
                seq = 0
            if seq < expected:
                continue  # a duplicate
            if seq > expected:
                raise RemoteFailed(f"{subject}: chunk {expected} lost (got {seq})", "stream")
            expected += 1
            if h.get(s.H_END):
                finished = True
                summary = _json_or_none(msg.data)
                info.summary = summary
                if h.get(s.H_ERROR):
                    raise RemoteFailed(f"{subject}: worker {info.worker} failed: {h[s.H_ERROR]}", "stream")
                return
            info.chunks += 1
            if info.first_chunk_ms is None:
                info.first_chunk_ms = (time.perf_counter() - started) * 1000
            yield msg.data
    finally:
        if not finished:
            with contextlib.suppress(Exception):
                await nc.publish(s.cancel_subject(turn_id), b"")
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _json_or_none(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data) if data else None
    except (ValueError, RecursionError):  # RecursionError: found by fuzzing (deeply nested arrays)
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------------------- worker side
Generate = Callable[[bytes, dict[str, str], asyncio.Event], AsyncIterator[bytes]]


def log_ids(headers: dict[str, str]) -> dict[str, str]:
    """The device and session a request serves, as log record fields (``shared.logs``)."""
    return {"device_id": headers.get(s.H_DEVICE) or "-", "session_id": headers.get(s.H_SESSION) or "-"}


class StreamingWorker:
    """The worker side: accept or refuse at once, stream chunks, stop on cancel.

    ``generate(body, headers, cancelled)`` yields the chunks of one request; it should stop soon
    after ``cancelled`` is set. At most ``max_inflight`` requests run at once; beyond that the
    worker answers 503 so the edge falls back (or another worker of the queue group is tried).
    Registered as an endpoint of a ``nats.micro`` service, so PING/INFO/STATS discovery works.
    """

    def __init__(
        self, nc: Client, worker_id: str, generate: Generate, max_inflight: int = 8, role: str = "llm"
    ) -> None:
        self.nc = nc
        self.role = role
        metrics.WORKER_CAPACITY.labels(role=role).set(max_inflight)
        metrics.WORKER_INFLIGHT.labels(role=role).set(0)
        self.worker_id = worker_id
        self.generate = generate
        self.max_inflight = max_inflight
        self.inflight: dict[str, asyncio.Event] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.completed = 0
        self.cancelled = 0
        self.failed = 0
        self._cancel_sub: Any = None

    async def start(self) -> None:
        self._cancel_sub = await self.nc.subscribe(f"{s.CANCEL_PREFIX}.>", cb=self._on_cancel)

    async def stop(self, grace_s: float = 2.0) -> None:
        """Ask every stream to stop, give them ``grace_s``, then cancel what is still running."""
        for event in self.inflight.values():
            event.set()
        if self.tasks:
            _done, pending = await asyncio.wait(set(self.tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._cancel_sub is not None:
            with contextlib.suppress(Exception):
                await self._cancel_sub.unsubscribe()

    async def _on_cancel(self, msg: Msg) -> None:
        turn = msg.subject[len(s.CANCEL_PREFIX) + 1 :]
        event = self.inflight.get(turn)
        if event is not None and not event.is_set():
            event.set()
            self.cancelled += 1
            log.info("worker %s: turn %s cancelled by the edge", self.worker_id, turn)

    async def handle(self, request: Any) -> None:
        """A ``nats.micro`` endpoint handler (``request`` is a ``nats.micro.Request``)."""
        headers = dict(request.headers or {})
        inbox = headers.get(s.H_STREAM, "")
        turn = headers.get(s.H_TURN, "")
        gen = headers.get(s.H_GEN, "0")
        if not inbox or not turn or s.safe_token(turn) != turn:
            metrics.WORKER_REQUESTS.labels(role=self.role, result="bad_request").inc()
            await request.respond_error("400", f"need {s.H_STREAM} and a {s.H_TURN} of [A-Za-z0-9_-] characters")
            return
        if len(self.inflight) >= self.max_inflight:
            metrics.WORKER_REQUESTS.labels(role=self.role, result="refused_busy").inc()
            await request.respond_error("503", f"worker {self.worker_id} busy: {len(self.inflight)} in flight")
            return
        cancelled = asyncio.Event()
        self.inflight[turn] = cancelled
        metrics.WORKER_INFLIGHT.labels(role=self.role).set(len(self.inflight))
        await request.respond(b"", headers={s.H_WORKER: self.worker_id})
        log.info(
            "worker %s: turn %s (gen %s) from %s accepted",
            self.worker_id,
            turn,
            gen,
            headers.get(s.H_EDGE, "?"),
            extra=log_ids(headers),
        )
        task = asyncio.create_task(self._stream(request.data, headers, inbox, turn, gen, cancelled))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _stream(
        self, body: bytes, headers: dict[str, str], inbox: str, turn: str, gen: str, cancelled: asyncio.Event
    ) -> None:
        seq = 0
        error = ""
        summary: dict[str, Any] = {"worker": self.worker_id}
        started = time.perf_counter()

        async def send(data: bytes, extra: dict[str, str] | None = None) -> None:
            nonlocal seq
            seq += 1
            headers = {s.H_TURN: turn, s.H_GEN: gen, s.H_SEQ: str(seq), **(extra or {})}
            await self.nc.publish(inbox, data, headers=headers)

        try:
            async for chunk in self.generate(body, headers, cancelled):
                if cancelled.is_set():
                    break
                if seq == 0:
                    metrics.STAGE_SECONDS.labels(stage=f"cloud_{self.role}_first_token").observe(
                        time.perf_counter() - started
                    )
                await send(chunk)
        except Exception as exc:  # noqa: BLE001 - reported to the edge in the end marker
            error = f"{type(exc).__name__}: {exc}"[:300]
            self.failed += 1
            log.warning("worker %s: turn %s failed: %s", self.worker_id, turn, error, extra=log_ids(headers))
        finally:
            self.inflight.pop(turn, None)
            metrics.WORKER_INFLIGHT.labels(role=self.role).set(len(self.inflight))
        result = "cancelled" if cancelled.is_set() else "error" if error else "ok"
        metrics.WORKER_REQUESTS.labels(role=self.role, result=result).inc()
        metrics.STAGE_SECONDS.labels(stage=f"cloud_{self.role}_total").observe(time.perf_counter() - started)
        summary.update({"chunks": seq, "ms": round((time.perf_counter() - started) * 1000, 1)})
        if cancelled.is_set():
            return  # the edge has gone: nobody reads the end marker
        extra = {s.H_END: "1"}
        if error:
            extra[s.H_ERROR] = error
        else:
            self.completed += 1
        with contextlib.suppress(Exception):
            await send(json.dumps(summary).encode(), extra)
