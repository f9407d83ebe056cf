"""The streaming protocol over a real nats-server: order, cancel, no responders, a dying worker, refusals.

The generators here are fakes (the protocol is what is tested); the LLM worker with a real model
is exercised end to end in test_cloud_e2e.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.micro import add_service

from shared.nats import subjects as s
from shared.nats.server import NatsServerProcess, free_port, start_nats_server
from shared.nats.streaming import (
    RemoteFailed,
    RemoteTimeout,
    RemoteUnavailable,
    StreamingWorker,
    StreamReply,
    request_stream,
)

SUBJECT = "xz.test.stream"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServerProcess]:
    port = free_port()
    proc = start_nats_server(f"listen: 127.0.0.1:{port}\n", tmp_path_factory.mktemp("nats"), "plain", "127.0.0.1", port)
    yield proc
    proc.stop()


class FakeGenerator:
    """Fake LLM: yields numbered words with a pause; records whether it was told to stop."""

    def __init__(self, words: int = 5, pause_s: float = 0.02, hang_after: int | None = None) -> None:
        self.words = words
        self.pause_s = pause_s
        self.hang_after = hang_after
        self.stopped_by_cancel = False
        self.started = asyncio.Event()

    async def __call__(self, body: bytes, headers: dict[str, str], cancelled: asyncio.Event) -> AsyncIterator[bytes]:
        self.started.set()
        for i in range(self.words):
            if cancelled.is_set():
                self.stopped_by_cancel = True
                return
            if self.hang_after is not None and i >= self.hang_after:
                await asyncio.sleep(3600)
            yield f"w{i} ".encode()
            await asyncio.sleep(self.pause_s)


async def _worker(url: str, gen: FakeGenerator, max_inflight: int = 4) -> tuple[nats.NATS, StreamingWorker]:
    nc = await nats.connect(url)
    worker = StreamingWorker(nc, "w-test", gen, max_inflight)
    await worker.start()
    service = await add_service(nc, name="xiaozhi-test", version="0.1.0", queue_group="q")
    await service.add_endpoint(name="chat", subject=SUBJECT, handler=worker.handle)
    await nc.flush()
    return nc, worker


async def _collect(stream: AsyncIterator[bytes]) -> list[str]:
    return [chunk.decode() async for chunk in stream]


async def test_chunks_arrive_in_order_with_an_end_marker(server: NatsServerProcess) -> None:
    gen = FakeGenerator(words=6)
    wnc, worker = await _worker(server.url, gen)
    enc = await nats.connect(server.url)
    try:
        reply = StreamReply()
        words = await _collect(request_stream(enc, SUBJECT, b"{}", turn_id="t1", gen=3, reply=reply))
        assert words == [f"w{i} " for i in range(6)]
        assert reply.worker == "w-test" and reply.chunks == 6 and reply.summary is not None
        assert reply.summary["chunks"] == 6  # chunks sent before the end marker
        assert worker.completed == 1 and not worker.inflight
    finally:
        await enc.close()
        await worker.stop()
        await wnc.close()


async def test_no_responders_fails_fast(server: NatsServerProcess) -> None:
    enc = await nats.connect(server.url)
    try:
        started = time.perf_counter()
        with pytest.raises(RemoteUnavailable) as exc:
            await _collect(request_stream(enc, "xz.nobody.home", b"{}", turn_id="t2", gen=1, accept_timeout_s=2.0))
        assert exc.value.stage == "accept"
        # Well under the 2 s accept timeout (the margin is for a busy machine, not for a wait).
        assert time.perf_counter() - started < 1.5, "no responders must not wait for the timeout"
    finally:
        await enc.close()


async def test_closing_the_stream_cancels_the_worker(server: NatsServerProcess) -> None:
    gen = FakeGenerator(words=200, pause_s=0.02)
    wnc, worker = await _worker(server.url, gen)
    enc = await nats.connect(server.url)
    try:
        stream = request_stream(enc, SUBJECT, b"{}", turn_id="t3", gen=1)
        got = [await anext(stream), await anext(stream)]
        await stream.aclose()  # barge-in
        for _ in range(100):
            if gen.stopped_by_cancel:
                break
            await asyncio.sleep(0.02)
        assert got == [b"w0 ", b"w1 "]
        assert gen.stopped_by_cancel and worker.cancelled == 1 and not worker.inflight
    finally:
        await enc.close()
        await worker.stop()
        await wnc.close()


async def test_a_worker_that_dies_mid_answer_is_a_stream_timeout(server: NatsServerProcess) -> None:
    gen = FakeGenerator(words=10, hang_after=2)
    wnc, worker = await _worker(server.url, gen)
    enc = await nats.connect(server.url)
    got: list[str] = []
    try:
        with pytest.raises(RemoteTimeout) as exc:
            async for chunk in request_stream(enc, SUBJECT, b"{}", turn_id="t4", gen=1, chunk_timeout_s=0.5):
                got.append(chunk.decode())
                if len(got) == 2:
                    await wnc.close()  # the worker process is gone: no more chunks, no end marker
        assert exc.value.stage == "stream" and got == ["w0 ", "w1 "]
    finally:
        await enc.close()
        await worker.stop()


async def test_a_full_worker_refuses_with_503(server: NatsServerProcess) -> None:
    gen = FakeGenerator(words=100, pause_s=0.05)
    wnc, worker = await _worker(server.url, gen, max_inflight=1)
    enc = await nats.connect(server.url)
    try:
        first = request_stream(enc, SUBJECT, b"{}", turn_id="t5", gen=1)
        await anext(first)
        with pytest.raises(RemoteFailed, match="503") as exc:
            await _collect(request_stream(enc, SUBJECT, b"{}", turn_id="t6", gen=1))
        assert exc.value.stage == "accept"
        await first.aclose()
    finally:
        await enc.close()
        await worker.stop()
        await wnc.close()


async def test_chunks_of_another_generation_never_come_out(server: NatsServerProcess) -> None:
    """A hand-written responder sends a stale chunk (old generation) before the real ones."""
    wnc = await nats.connect(server.url)

    async def respond(msg: nats.aio.msg.Msg) -> None:
        h = msg.headers or {}
        inbox, turn = h[s.H_STREAM], h[s.H_TURN]
        await msg.respond(b"")
        await wnc.publish(inbox, b"stale", headers={s.H_TURN: turn, s.H_GEN: "1", s.H_SEQ: "1"})
        await wnc.publish(inbox, b"fresh", headers={s.H_TURN: turn, s.H_GEN: "2", s.H_SEQ: "1"})
        await wnc.publish(inbox, b"{}", headers={s.H_TURN: turn, s.H_GEN: "2", s.H_SEQ: "2", s.H_END: "1"})

    await wnc.subscribe("xz.test.stale", cb=respond)
    await wnc.flush()
    enc = await nats.connect(server.url)
    try:
        assert await _collect(request_stream(enc, "xz.test.stale", b"", turn_id="t7", gen=2)) == ["fresh"]
    finally:
        await enc.close()
        await wnc.close()


def test_turn_ids_must_be_subject_safe(tmp_path: Path) -> None:
    assert s.safe_token("edge-1.session 2*>") == "edge-1_session_2__"
