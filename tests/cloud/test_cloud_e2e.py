"""The cloud tier end to end, all real: a NATS hub, two edge leaf servers, a cloud LLM worker in front of
an OpenAI-compatible server (llama-cpp-python's, on the bundled model: the stand-in for vLLM), a cloud
ASR worker (multilingual Whisper base) and two edge nodes with the bundled models.

The tests run in order and share the processes: escalation, a worker killed mid-answer, the leaf
link cut and restored, a routing change through KV, a bad routing config refused, two edges sharing
the L2 cache and the semantic index, and the cloud's ASR.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
import pytest

from shared.client.device import DeviceClient, Turn
from shared.nats import subjects as s
from tests.cloud.deployment import Cloud, start_cloud
from tests.conftest import ROOT, EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import metric_value, speech, text_turn, words
from tests.processes import spawn

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


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    c = start_cloud(tmp_path_factory.mktemp("cloud"), ["edge-a", "edge-b"])
    try:
        yield c
    finally:
        c.stop()


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
    return await text_turn(edge.url, device_id, text, limit_s)


def _turn_lines(edge: EdgeProcess, offset: int) -> list[str]:
    return [line for line in edge.log_text()[offset:].splitlines() if "-> route=" in line]


async def _stats(edge: EdgeProcess) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{edge.http}/stats")).json()


async def _push_routing(cloud: Cloud, text: str, tmp: Path) -> None:
    path = tmp / "push.yaml"
    path.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud.cli",
        "routing",
        "push",
        str(path),
        "--nats",
        cloud.hub.url,
        "--credential",
        str(cloud.cred_path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()


async def test_escalated_turn_is_answered_by_the_cloud_worker(cloud: Cloud, edges: dict[str, EdgeProcess]) -> None:
    edge = edges["edge-a"]
    assert await _wait_link(edge)
    offset = edge.log_offset()
    async with httpx.AsyncClient() as http:
        edge_before = (await http.get(f"{edge.http}/metrics")).text
        worker_before = (await http.get(f"{cloud.llm_worker_http}/metrics")).text
    turn = await _text_turn(edge, "aa:cc:00:00:00:01", ESCALATED)
    assert "tts:start" in turn.order and turn.order[-1] == "tts:stop"
    assert turn.audio_packets > 0 and turn.sentences
    lines = _turn_lines(edge, offset)
    assert lines and "route=cloud" in lines[-1] and "open-question" in lines[-1]
    edge.wait_for_log("answered by llm-test-1", timeout=10, after=offset)
    assert cloud.llm_worker is not None and "accepted" in cloud.llm_worker.log_text()
    # The worker's log line names the device; both sides' metrics counted the escalation.
    assert "device=aa:cc:00:00:00:01" in cloud.llm_worker.log_text()
    async with httpx.AsyncClient() as http:
        edge_after = (await http.get(f"{edge.http}/metrics")).text
        worker_after = (await http.get(f"{cloud.llm_worker_http}/metrics")).text
        worker_ready = await http.get(f"{cloud.llm_worker_http}/ready")
    assert worker_ready.status_code == 200 and worker_ready.json()["ready"] is True

    def moved(before: str, after: str, name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert moved(edge_before, edge_after, "xiaozhi_escalations_total", kind="llm", reason="rule:open-question") == 1
    assert moved(edge_before, edge_after, "xiaozhi_nats_requests_total", subject_class="llm", result="ok") == 1
    assert moved(edge_before, edge_after, "xiaozhi_turns_total", route="cloud", outcome="ok") == 1
    assert moved(edge_before, edge_after, "xiaozhi_stage_duration_seconds_count", stage="cloud_first_chunk") == 1
    assert metric_value(edge_after, "xiaozhi_cloud_link_up") == 1
    assert moved(worker_before, worker_after, "xiaozhi_worker_requests_total", role="llm", result="ok") == 1
    first_token = "cloud_llm_first_token"
    assert moved(worker_before, worker_after, "xiaozhi_stage_duration_seconds_count", stage=first_token) == 1
    assert moved(worker_before, worker_after, "xiaozhi_llm_tokens_total", direction="completion", model="smollm2") > 0
    assert metric_value(worker_after, "xiaozhi_worker_capacity", role="llm") >= 1
    assert metric_value(worker_after, "xiaozhi_cloud_link_up") == 1
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
        # The edge logs the fallback once the reply has been spoken, which can be just after tts:stop arrives.
        edge.wait_for_log("answered by local_llm after fallback", timeout=10, after=offset)
        print(
            f"\nlink down: escalated turn answered locally, first audio {turn.first_audio_ms:.0f} ms, "
            f"whole turn {time.monotonic() - started:.1f} s"
        )
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


async def test_a_paraphrase_on_another_edge_is_answered_from_the_shared_semantic_index(
    cloud: Cloud, edges: dict[str, EdgeProcess]
) -> None:
    """A stores an answer and its question's vector in the hub; B, which never heard that question,
    answers a rewording of it from the shared answer (L2) without running its LLM."""
    a, b = edges["edge-a"], edges["edge-b"]

    async def entries(edge: EdgeProcess) -> int:
        return int((await _stats(edge))["caches"]["answer"]["semantic"]["entries"])

    before = await entries(b)
    first = await _text_turn(a, "aa:cc:00:00:00:0a", "What do pandas eat?")
    assert first.sentences
    deadline = time.monotonic() + 20
    while await entries(b) <= before:  # A's entry reaches B through the hub's sem.> watch
        assert time.monotonic() < deadline, "edge A's semantic entry never reached edge B"
        await asyncio.sleep(0.2)
    offset = b.log_offset()
    second = await _text_turn(b, "aa:cc:00:00:00:0b", "What food do pandas eat?")
    assert "semantic cache hit" in b.log_text()[offset:]
    assert "route=cache" in _turn_lines(b, offset)[-1]
    assert second.sentences == first.sentences


async def test_cloud_asr_transcribes_for_the_edge(cloud: Cloud, edges: dict[str, EdgeProcess], tmp_path: Path) -> None:
    cloud.asr_worker = spawn(
        "cloud-asr-worker",
        [
            sys.executable,
            "-m",
            "cloud.cli",
            "worker",
            "--role",
            "asr",
            "--nats",
            cloud.hub.url,
            "--credential",
            str(cloud.cred_path),
            "--id",
            "asr-test-1",
            "--http-port",
            "0",
        ],
        "READY worker=",
        timeout_s=120,
    )
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
