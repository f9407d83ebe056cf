"""The cloud tier end to end, all real: a NATS hub, two edge leaf servers, a cloud LLM worker in front of
an OpenAI-compatible server (llama-cpp-python's, on the bundled model: the stand-in for vLLM), a cloud
ASR worker (multilingual Whisper base) and two edge nodes with the bundled models.

The tests run in order and share the processes: escalation, a worker killed mid-answer, the leaf
link cut and restored, a routing change through KV, a bad routing config refused, two edges sharing
the L2 cache, and the cloud's ASR.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
import pytest

from shared import models
from shared.client.device import DeviceClient, Turn
from shared.nats import subjects as s
from shared.nats.configs import save_credential
from shared.nats.server import free_port
from tests.cloud.nats_helpers import Hub, Leaf
from tests.conftest import ARTIFACTS, ROOT, EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import speech, words

pytestmark = pytest.mark.slow

# Escalates open questions and anything about a story; short timeouts so failures are quick.
ROUTING = """
llm:
  default: local_llm
  rules:
    - {name: open-question, when: {complexity_at_least: 0.6}, route: cloud}
    - {name: stories, when: {keywords: [story]}, route: cloud}
  overflow: null
routes:
  cloud: {accept_timeout_s: 1.0, first_token_timeout_s: 8.0, chunk_timeout_s: 2.0, retries: 1, max_tokens: 96,
          breaker: {failures: 3, open_s: 2}}
  local_llm: {first_token_timeout_s: 20.0}
asr: {cloud: never}
"""
ESCALATED = "Explain why the sky is blue and how sunsets get their colours"


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _spawn(name: str, args: list[str], ready: str, timeout_s: float = 90, env: dict[str, str] | None = None) -> Proc:
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"{name}-{os.getpid()}.log"
    log = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})  # fmt: skip
    p = Proc(proc, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready in p.log_text():
            return p
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    p.stop()
    raise RuntimeError(f"{name} did not start:\n{p.log_text()[-3000:]}")


@dataclass
class Cloud:
    hub: Hub
    leaves: dict[str, Leaf]
    openai: Proc
    cred_path: Path
    llm_worker: Proc | None = None
    asr_worker: Proc | None = None
    openai_url: str = ""

    def start_llm_worker(self) -> Proc:
        self.llm_worker = _spawn("cloud-llm-worker", [
            sys.executable, "-m", "cloud.cli", "worker", "--role", "llm", "--nats", self.hub.url,
            "--credential", str(self.cred_path), "--openai-url", self.openai_url, "--model", "smollm2",
            "--id", "llm-test-1", "--http-port", "0"], "READY worker=")  # fmt: skip
        return self.llm_worker


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    work = tmp_path_factory.mktemp("cloud")
    port = free_port()
    openai = _spawn("openai-smollm2", [
        sys.executable, "-m", "llama_cpp.server", "--model", str(models.smollm2_gguf()), "--host", "127.0.0.1",
        "--port", str(port), "--n_threads", "1", "--n_ctx", "2048", "--model_alias", "smollm2",
        "--interrupt_requests", "False"], "Uvicorn running")  # fmt: skip
    hub = Hub(work / "hub")
    for edge in ("edge-a", "edge-b"):
        hub.credential(edge)
    leaves = {e: Leaf(work / e, e, hub) for e in ("edge-a", "edge-b")}
    cred_path = work / "cloud.json"
    save_credential(hub.cloud, cred_path)
    c = Cloud(hub, leaves, openai, cred_path, openai_url=f"http://127.0.0.1:{port}/v1")
    try:
        hub.start()
        for leaf in leaves.values():
            leaf.start()
        for leaf in leaves.values():
            leaf.wait_linked()
        c.start_llm_worker()
        yield c
    finally:
        for proc in (c.llm_worker, c.asr_worker, openai):
            if proc is not None:
                proc.stop()
        for leaf in leaves.values():
            leaf.stop()
        hub.stop()


def _edge_env(cloud: Cloud, edge: str, routing_file: Path) -> dict[str, str]:
    return {
        "XIAOZHI__NODE_ID": edge,
        "XIAOZHI__NATS__URL": cloud.leaves[edge].url,
        "XIAOZHI__NATS__HEARTBEAT_S": "1",
        "XIAOZHI__ROUTING__FILE": str(routing_file),
        "XIAOZHI__LLM__WORKERS": "1",
        "XIAOZHI__TTS__WORKERS": "2",
        "XIAOZHI__ASR__WORKERS": "1",
    }


@pytest.fixture(scope="module")
def edges(cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, EdgeProcess]]:
    routing = tmp_path_factory.mktemp("routing") / "routing.yaml"
    routing.write_text(ROUTING)
    nodes: dict[str, EdgeProcess] = {}
    try:
        for edge in ("edge-a", "edge-b"):
            nodes[edge] = start_edge(f"cloud-{edge}", _edge_env(cloud, edge, routing))
        yield nodes
    finally:
        for node in nodes.values():
            stop_edge(node)


async def _text_turn(edge: EdgeProcess, device_id: str, text: str, limit_s: float = 60) -> Turn:
    client = DeviceClient(edge.url, device_id=device_id)
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect(text)
        return await client.wait_turn_end(limit_s)
    finally:
        await client.close()


def _turn_lines(edge: EdgeProcess, offset: int) -> list[str]:
    return [line for line in edge.log_text()[offset:].splitlines() if "-> route=" in line]


async def _stats(edge: EdgeProcess) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{edge.http}/stats")).json()


async def _push_routing(cloud: Cloud, text: str, tmp: Path) -> None:
    path = tmp / "push.yaml"
    path.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cloud.cli", "routing", "push", str(path), "--nats", cloud.hub.url,
        "--credential", str(cloud.cred_path), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


async def test_escalated_turn_is_answered_by_the_cloud_worker(cloud: Cloud, edges: dict[str, EdgeProcess]) -> None:
    edge = edges["edge-a"]
    assert await _wait_link(edge)
    offset = edge.log_offset()
    turn = await _text_turn(edge, "aa:cc:00:00:00:01", ESCALATED)
    assert "tts:start" in turn.order and turn.order[-1] == "tts:stop"
    assert turn.audio_packets > 0 and turn.sentences
    lines = _turn_lines(edge, offset)
    assert lines and "route=cloud" in lines[-1] and "open-question" in lines[-1]
    assert "answered by llm-test-1" in edge.log_text()[offset:]
    assert cloud.llm_worker is not None and "accepted" in cloud.llm_worker.log_text()
    # The edge's heartbeat reaches the cloud: sessions, capacity, link state.
    nc = await nats.connect(cloud.hub.url, user="cloud", password=cloud.hub.cloud.password)
    try:
        sub = await nc.subscribe(f"{s.HEARTBEAT_PREFIX}.edge-a")
        beat = json.loads((await sub.next_msg(timeout=5)).data)
    finally:
        await nc.close()
    assert beat["edge"] == "edge-a" and beat["cloud_link"] is True and "capacity_turns_per_s" in beat


async def _wait_link(edge: EdgeProcess, timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await _stats(edge))["edge"]["cloud_link"]:
            return True
        await asyncio.sleep(0.2)
    return False


async def test_worker_killed_mid_answer_still_ends_the_turn(cloud: Cloud, edges: dict[str, EdgeProcess]) -> None:
    edge = edges["edge-a"]
    worker = cloud.llm_worker
    assert worker is not None
    offset, worker_offset = edge.log_offset(), len(worker.log_text())
    client = DeviceClient(edge.url, device_id="aa:cc:00:00:00:02")
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect("Tell me a long story about a brave little robot who sails across the ocean")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the worker's log is a file: poll it
            if "accepted" in worker.log_text()[worker_offset:]:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # let it stream a little
        worker.stop(signal.SIGKILL)
        turn = await client.wait_turn_end(40)
    finally:
        await client.close()
    assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0
    log = edge.log_text()[offset:]
    assert "failed mid-answer" in log or "failed before its first word" in log, log[-2000:]
    cloud.start_llm_worker()


async def test_leaf_link_cut_falls_back_fast_and_recovers(cloud: Cloud, edges: dict[str, EdgeProcess]) -> None:
    edge = edges["edge-a"]
    cloud.hub.stop(kill=True)
    try:
        offset = edge.log_offset()
        started = time.monotonic()
        turn = await _text_turn(edge, "aa:cc:00:00:00:03", ESCALATED)
        assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0
        assert turn.first_audio_ms is not None and turn.first_audio_ms < 6000, turn.first_audio_ms
        log = edge.log_text()[offset:]
        assert "route cloud failed before its first word" in log or "route cloud skipped" in log, log[-2000:]
        assert "answered by local_llm after fallback" in log
        print(f"\nlink down: escalated turn answered locally, first audio {turn.first_audio_ms:.0f} ms, "
              f"whole turn {time.monotonic() - started:.1f} s")  # fmt: skip
    finally:
        cloud.hub.start()  # same ports, same credentials: the leaves and the worker reconnect
    cloud.leaves["edge-a"].wait_linked(20)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        offset = edge.log_offset()
        await _text_turn(edge, "aa:cc:00:00:00:04", ESCALATED)
        if "answered by llm-test-1" in edge.log_text()[offset:]:
            return
        await asyncio.sleep(1.0)
    raise AssertionError("the cloud did not answer again after the hub came back")


async def test_routing_change_in_kv_takes_effect_without_restart(
    cloud: Cloud, edges: dict[str, EdgeProcess], tmp_path: Path
) -> None:
    edge = edges["edge-b"]
    assert await _wait_link(edge)
    offset = edge.log_offset()
    await _text_turn(edge, "aa:cc:00:00:00:05", "What should I name my new puppy?")  # personal: never cached
    assert "route=local_llm" in _turn_lines(edge, offset)[-1]
    await _push_routing(cloud, "llm: {default: cloud, rules: []}\nroutes: {cloud: {breaker: {open_s: 2}}}\n", tmp_path)
    edge.wait_for_log("routing config applied from kv", timeout=15, after=offset)
    assert (await _stats(edge))["edge"]["routing"]["origin"].startswith("kv")
    offset = edge.log_offset()
    await _text_turn(edge, "aa:cc:00:00:00:06", "What should I name my new kitten?")
    assert "route=cloud" in _turn_lines(edge, offset)[-1]


async def test_bad_routing_config_is_refused_and_the_old_one_stays(cloud: Cloud, edges: dict[str, EdgeProcess]) -> None:
    edge = edges["edge-b"]
    offset = edge.log_offset()
    nc = await nats.connect(cloud.hub.url, user="cloud", password=cloud.hub.cloud.password)
    try:
        kv = await nc.jetstream(domain=s.JS_DOMAIN).key_value(s.ROUTING_BUCKET)
        await kv.put(s.ROUTING_KEY, b"llm: {default: moon}\n")  # what the CLI would refuse to publish
    finally:
        await nc.close()
    edge.wait_for_log("routing config refused", timeout=15, after=offset)
    stats = (await _stats(edge))["edge"]["routing"]
    assert "llm.default" in stats["error"] and stats["origin"].startswith("kv")
    offset = edge.log_offset()
    await _text_turn(edge, "aa:cc:00:00:00:07", "What should I name my new goldfish?")
    assert "route=cloud" in _turn_lines(edge, offset)[-1], "the last good config (default: cloud) must stay"


async def test_two_edges_share_the_l2_cache(cloud: Cloud, edges: dict[str, EdgeProcess]) -> None:
    from edge_node.cache.keys import answer_key
    from edge_node.cloud_link.kv_cache import KvCacheLevel

    a, b = edges["edge-a"], edges["edge-b"]
    question = "How many legs does a spider have?"
    first = await _text_turn(a, "aa:cc:00:00:00:08", question)
    assert first.sentences
    # A writes L2 in the background after the turn: wait until the hub holds the answer.
    nc = await nats.connect(cloud.hub.url, user="cloud", password=cloud.hub.cloud.password)
    try:
        kv = await nc.jetstream(domain=s.JS_DOMAIN).key_value(s.CACHE_BUCKETS["answer"])
        key = KvCacheLevel.kv_key(answer_key(question))
        deadline = time.monotonic() + 10
        while True:
            try:
                await kv.get(key)
                break
            except nats.js.errors.KeyNotFoundError:
                assert time.monotonic() < deadline, "edge A's answer never reached the L2 bucket"
                await asyncio.sleep(0.1)
    finally:
        await nc.close()
    before = (await _stats(b))["caches"]["answer"]["l2"]["hits"]
    offset = b.log_offset()
    second = await _text_turn(b, "aa:cc:00:00:00:09", question)
    assert "route=cache" in _turn_lines(b, offset)[-1]
    assert second.sentences == first.sentences
    assert (await _stats(b))["caches"]["answer"]["l2"]["hits"] == before + 1


async def test_cloud_asr_transcribes_for_the_edge(cloud: Cloud, edges: dict[str, EdgeProcess], tmp_path: Path) -> None:
    cloud.asr_worker = _spawn("cloud-asr-worker", [
        sys.executable, "-m", "cloud.cli", "worker", "--role", "asr", "--nats", cloud.hub.url,
        "--credential", str(cloud.cred_path), "--id", "asr-test-1", "--http-port", "0"],
        "READY worker=", timeout_s=120)  # fmt: skip
    edge = edges["edge-b"]
    offset = edge.log_offset()
    await _push_routing(cloud, "asr: {cloud: always}\n", tmp_path)
    edge.wait_for_log("routing config applied from kv", timeout=15, after=offset)
    client = DeviceClient(edge.url, device_id="aa:cc:00:00:00:0a")
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.send_speech(speech("What is the capital of France?"), trailing_silence_ms=1500)
        turn = await client.wait_turn_end(60)
    finally:
        await client.close()
    assert "france" in words(turn.stt_text)
    log = edge.log_text()[offset:]
    assert "cloud asr (asr-test-1)" in log, log[-2000:]
    assert "asr asr-test-1" in cloud.asr_worker.log_text()
