"""Per-edge NATS permissions against a real hub and two real leaf servers (edge-a, edge-b).

The hub config comes from ``shared.nats.configs.cloud_config``: each edge's leaf link may send only
cloud requests, cancels, its own heartbeat and a few KV operations, and receive only its own reply
inboxes (``_INBOX.<edge>.>``). Each "receives nothing" below is checked only after a control message,
sent later on the same path, has arrived: the path is shown to be live, so the absence is a refusal
and not a message still in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import numpy as np
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.micro import add_service

from edge_node.cloud_link.kv_cache import KvCacheLevel
from edge_node.cloud_link.link import CloudLink
from edge_node.config import NatsConfig
from shared.nats import subjects as s
from shared.nats.connect import connect
from shared.nats.local import Hub, Leaf
from shared.nats.streaming import RemoteUnavailable, StreamingWorker, StreamReply, request_stream
from shared.routing_config import RouteLimits

EDGES = ("edge-a", "edge-b")
API = f"$JS.{s.JS_DOMAIN}.API"


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, dict[str, Leaf]]]:
    work: Path = tmp_path_factory.mktemp("nats-perms")
    hub = Hub(work / "hub")
    for edge in EDGES:
        hub.credential(edge)
    leaves = {edge: Leaf(work / edge, edge, hub) for edge in EDGES}
    try:
        hub.start()
        for leaf in leaves.values():
            leaf.start()
        for leaf in leaves.values():
            leaf.wait_linked()
        yield hub, leaves
    finally:
        for leaf in leaves.values():
            leaf.stop()
        hub.stop()


async def _cloud(hub: Hub) -> Client:
    return await nats.connect(hub.url, user=hub.cloud.user, password=hub.cloud.password)


async def _edge(leaf: Leaf) -> Client:
    """An edge process's connection: its own leaf server, its own inbox prefix (as CloudLink does)."""
    return await connect(leaf.url, f"test {leaf.name}", inbox_prefix=s.inbox_prefix(leaf.name))


async def _serve_cloud(nc: Client) -> None:
    """A cloud LLM worker (the real streaming protocol, a fake generator) and an ASR responder."""

    async def generate(body: bytes, headers: dict[str, str], cancelled: asyncio.Event) -> AsyncIterator[bytes]:
        text = json.loads(body)["messages"][-1]["content"] if body.startswith(b"{") else body.decode()
        for word in ("echo:", text):
            yield word.encode()

    worker = StreamingWorker(nc, "w-perms", generate, max_inflight=4)
    await worker.start()
    service = await add_service(nc, name="xiaozhi-llm", version="0.1.0", queue_group=s.QUEUE_LLM)
    await service.add_endpoint(name="chat", subject=s.CLOUD_LLM, queue_group=s.QUEUE_LLM, handler=worker.handle)

    async def transcribe(msg: Msg) -> None:
        edge = (msg.headers or {}).get(s.H_EDGE, "?")
        await msg.respond(json.dumps({"text": f"heard {len(msg.data)} bytes from {edge}"}).encode())

    await nc.subscribe(s.CLOUD_ASR, queue=s.QUEUE_ASR, cb=transcribe)
    await nc.flush()


async def _ask(nc: Client, edge: str, text: str) -> tuple[str, StreamReply]:
    """A streamed LLM request; retried while the leaf has not yet learnt the worker's interest."""
    deadline = time.monotonic() + 10
    while True:
        reply = StreamReply()
        try:
            chunks = [
                c
                async for c in request_stream(
                    nc, s.CLOUD_LLM, text.encode(), turn_id=uuid.uuid4().hex, gen=1, edge_id=edge, reply=reply
                )
            ]
            return b"".join(chunks).decode(), reply
        except RemoteUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _until_received(sub: Any, send: Any, timeout_s: float = 10.0) -> Msg:
    """Call ``send()`` until ``sub`` gets a message (interest crosses the leaf link asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        await send()
        try:
            return await sub.next_msg(timeout=0.2)
        except nats.errors.TimeoutError:
            assert time.monotonic() < deadline, f"nothing arrived on {sub.subject} within {timeout_s:.0f} s"


async def _until_data(sub: Any, data: bytes, timeout_s: float = 5.0) -> list[bytes]:
    """Read ``sub`` until a message carrying ``data`` arrives; the payloads that came before it."""
    before: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while True:
        msg = await sub.next_msg(timeout=max(0.01, deadline - time.monotonic()))
        if msg.data == data:
            return before
        before.append(msg.data)


async def _drain(sub: Any) -> list[Msg]:
    out = []
    while True:
        try:
            out.append(await sub.next_msg(timeout=0.05))
        except nats.errors.TimeoutError:
            return out


async def test_an_edge_receives_nothing_of_another_edges_traffic(topo: tuple[Hub, dict[str, Leaf]]) -> None:
    hub, leaves = topo
    cloud, a, b = await _cloud(hub), await _edge(leaves["edge-a"]), await _edge(leaves["edge-b"])
    try:
        await _serve_cloud(cloud)
        beats = await cloud.subscribe(f"{s.HEARTBEAT_PREFIX}.>")
        cancels = await cloud.subscribe(f"{s.CANCEL_PREFIX}.>")
        await cloud.flush()
        spied = [
            s.heartbeat_subject("edge-b"),
            f"{s.HEARTBEAT_PREFIX}.>",
            f"{s.inbox_prefix('edge-b')}.>",
            "_INBOX.>",
            s.CLOUD_LLM,
            s.CLOUD_ASR,
            "xz.cloud.>",
            f"{s.CANCEL_PREFIX}.>",
            ">",
        ]
        spies = {subject: await a.subscribe(subject) for subject in spied}
        # An edge posing as a worker: in the workers' queue group it would take B's requests.
        spies["queue llm"] = await a.subscribe(s.CLOUD_LLM, queue=s.QUEUE_LLM)
        spies["queue asr"] = await a.subscribe(s.CLOUD_ASR, queue=s.QUEUE_ASR)
        control = await a.subscribe(f"{s.inbox_prefix('edge-a')}.control")
        # A's subscriptions (sent before the control one, on the same link) have reached the hub.
        await _until_received(control, lambda: cloud.publish(f"{s.inbox_prefix('edge-a')}.control", b"before"))

        # B's traffic works: its heartbeat reaches the cloud, its requests are answered by the cloud.
        beat = await _until_received(beats, lambda: b.publish(s.heartbeat_subject("edge-b"), b'{"sessions": 1}'))
        assert beat.subject == s.heartbeat_subject("edge-b")
        text, reply = await _ask(b, "edge-b", "a secret question from b")
        assert text == "echo:a secret question from b" and reply.worker == "w-perms"
        asr = await b.request(s.CLOUD_ASR, b"\x00" * 320, timeout=5, headers={s.H_EDGE: "edge-b"})
        assert json.loads(asr.data) == {"text": "heard 320 bytes from edge-b"}
        await b.publish(s.cancel_subject("turn-of-b"), b"")
        assert (await cancels.next_msg(timeout=5)).subject == s.cancel_subject("turn-of-b")

        # Everything above has passed through the hub; a control message sent now reaches A after
        # whatever the hub would have forwarded to A from it.
        await cloud.publish(f"{s.inbox_prefix('edge-a')}.control", b"after")
        assert set(await _until_data(control, b"after")) <= {b"before"}  # extra tries of the first control
        await asyncio.sleep(0.3)
        got = {name: [m.subject for m in await _drain(sub)] for name, sub in spies.items()}
        foreign = {
            name: subjects
            for name, subjects in got.items()
            if [x for x in subjects if not x.startswith(f"{s.inbox_prefix('edge-a')}.")]
        }
        assert foreign == {}, f"edge-a received another edge's or the cloud's traffic: {foreign}"
        assert set(got[">"]) == {f"{s.inbox_prefix('edge-a')}.control"}  # the wildcard spy was live all along
    finally:
        for nc in (a, b, cloud):
            await nc.close()


async def test_an_edge_cannot_spoof_another_edges_heartbeat_or_replies(topo: tuple[Hub, dict[str, Leaf]]) -> None:
    hub, leaves = topo
    cloud, a, b = await _cloud(hub), await _edge(leaves["edge-a"]), await _edge(leaves["edge-b"])
    try:
        beats = await cloud.subscribe(f"{s.HEARTBEAT_PREFIX}.>")
        victim = await b.subscribe(f"{s.inbox_prefix('edge-b')}.victim")
        await _until_received(victim, lambda: cloud.publish(f"{s.inbox_prefix('edge-b')}.victim", b"control"))

        async def spoof_then_own() -> None:
            # On A's one leaf link, in this order: were the spoofs forwarded, they would arrive first.
            await a.publish(s.heartbeat_subject("edge-b"), b'{"sessions": 999}')
            await a.publish(f"{s.inbox_prefix('edge-b')}.victim", b"forged chunk")
            await a.publish(s.heartbeat_subject("edge-a"), b'{"sessions": 0}')

        first = await _until_received(beats, spoof_then_own)
        assert first.subject == s.heartbeat_subject("edge-a"), "edge-a's forged edge-b heartbeat reached the cloud"
        await cloud.publish(f"{s.inbox_prefix('edge-b')}.victim", b"control after")
        assert set(await _until_data(victim, b"control after")) <= {b"control"}, "edge-a injected into edge-b's inbox"
        await asyncio.sleep(0.3)
        later = {m.subject for m in await _drain(beats)}  # A's own beats of the retries, if any
        assert later <= {s.heartbeat_subject("edge-a")}, later
        assert [m.data for m in await _drain(victim)] == []
    finally:
        for nc in (a, b, cloud):
            await nc.close()


async def test_an_edges_own_heartbeat_and_requests_work(topo: tuple[Hub, dict[str, Leaf]]) -> None:
    hub, leaves = topo
    cloud = await _cloud(hub)
    link = CloudLink(NatsConfig(url=leaves["edge-a"].url), "edge-a")
    plain = await nats.connect(leaves["edge-a"].url)  # no per-edge inbox prefix
    try:
        await _serve_cloud(cloud)
        beats = await cloud.subscribe(s.heartbeat_subject("edge-a"))
        await link.start()
        assert await link.wait_connected(10)
        assert link.nc is not None and link.nc.new_inbox().startswith(f"{s.inbox_prefix('edge-a')}.")
        await _until_received(beats, lambda: link.nc.publish(s.heartbeat_subject("edge-a"), b"{}"))  # type: ignore[union-attr]
        await _ask(link.nc, "edge-a", "warm up")  # the leaf has learnt the worker's interest
        limits = RouteLimits(accept_timeout_s=3.0, first_token_timeout_s=5.0)
        chat = link.chat_stream([{"role": "user", "content": "hi from a"}], 32, "turn-a", 1, limits)
        deltas = [d async for d in chat]
        assert "".join(deltas) == "echo:hi from a"
        heard = await link.transcribe(np.zeros(160, dtype=np.int16), timeout_s=5)
        assert heard == {"text": "heard 320 bytes from edge-a"}
        # Replies to the default _INBOX are not delivered to an edge: the prefix is what makes them work.
        with pytest.raises(nats.errors.TimeoutError):
            await plain.request(s.CLOUD_ASR, b"\x00\x00", timeout=1.5)
        # The edge's credential opens a leaf link and nothing else: not a client session on the hub.
        with pytest.raises(Exception):  # noqa: B017 - nats-py raises a few different errors here
            await nats.connect(
                hub.url,
                user="edge-a",
                password=hub.credential("edge-a").password,
                allow_reconnect=False,
                connect_timeout=2,
            )
    finally:
        await link.stop()
        await plain.close()
        await cloud.close()


async def test_an_edge_reads_the_routing_bucket_and_the_caches_but_changes_no_stream(
    topo: tuple[Hub, dict[str, Leaf]],
) -> None:
    hub, leaves = topo
    cloud, a, b = await _cloud(hub), await _edge(leaves["edge-a"]), await _edge(leaves["edge-b"])
    try:
        cjs = cloud.jetstream(domain=s.JS_DOMAIN)
        routing = await cjs.create_key_value(
            KeyValueConfig(bucket=s.ROUTING_BUCKET, history=10, storage=StorageType.FILE)
        )
        await routing.put(s.ROUTING_KEY, b"llm: {default: local_llm}\n")
        ajs = a.jetstream(domain=s.JS_DOMAIN, timeout=2.0)
        kv = await ajs.key_value(s.ROUTING_BUCKET)
        assert (await kv.get(s.ROUTING_KEY)).value == b"llm: {default: local_llm}\n"
        watcher = await kv.watch(s.ROUTING_KEY)  # as edge_node.routing.source does
        try:
            assert (await watcher.updates(timeout=5)).value == b"llm: {default: local_llm}\n"
            await routing.put(s.ROUTING_KEY, b"llm: {default: cloud}\n")
            entry = await watcher.updates(timeout=5)
            entry = entry if entry is not None else await watcher.updates(timeout=5)  # after the initial-values marker
            assert entry.value == b"llm: {default: cloud}\n"
        finally:
            await watcher.stop()

        # The shared caches: A writes (as KvCacheLevel does), B reads.
        key = KvCacheLevel.kv_key("how many legs does a spider have")
        await ajs.publish(f"{API}.$KV.{s.CACHE_BUCKETS['answer']}.{key}", b"eight")
        bkv = await b.jetstream(domain=s.JS_DOMAIN, timeout=2.0).key_value(s.CACHE_BUCKETS["answer"])
        assert (await bkv.get(key)).value == b"eight"

        # Nothing else of the JetStream API crosses the link: no deleting or writing the routing, and
        # no stream of its own that would capture other edges' subjects.
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await ajs.delete_key_value(s.ROUTING_BUCKET)
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await ajs.publish(f"{API}.$KV.{s.ROUTING_BUCKET}.{s.ROUTING_KEY}", b"llm: {default: evil}\n")
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await ajs.add_stream(StreamConfig(name="KV_xz_capture", subjects=[f"{s.HEARTBEAT_PREFIX}.>", "xz.cloud.>"]))
        assert (await routing.get(s.ROUTING_KEY)).value == b"llm: {default: cloud}\n"
        with pytest.raises(nats.js.errors.NotFoundError):
            await cjs.stream_info("KV_xz_capture")
    finally:
        for nc in (a, b, cloud):
            await nc.close()
