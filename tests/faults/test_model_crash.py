"""Fault: a model worker crashes in the middle of an answer.

(a) The cloud LLM worker PROCESS is SIGKILLed while two devices on one edge are in their turns, one
escalated to the cloud and one answered by the edge's own LLM. The escalated device hears the part
of the answer that arrived, a spoken cut-off apology and ``tts/stop``; the local device's turn is
untouched. The worker is then restarted (as systemd or Kubernetes would) and the next escalated turn
is answered by the cloud again.

(b) An edge model instance raises on its worker thread mid-reply (the timing LLM's fault injection,
``faults`` in its profile, on a one-instance LLM pool, and the instance stays broken like a model
whose state a crash corrupted). That device hears a spoken apology and ``tts/stop``, a device
speaking at the same time is untouched, and the pool replaces the broken instance, so the next turns
on that same single worker are answered normally (``xiaozhi_engine_restarts_total``).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge_node.routing.router import CUT_OFF
from shared.client.device import DeviceClient, Turn
from tests.cloud.deployment import Cloud
from tests.conftest import EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import metric_value, text_turn, words
from tests.faults.helpers import (
    CLOUD_REPLY,
    ESCALATED,
    LOCAL,
    SHIPPED_PROFILE,
    cloud_edge_env,
    cloud_link_up,
    log_lines,
    metrics_text,
    observed,
    routing_file,
    start_timing_cloud,
    timing_env,
    wait_until,
    write_profile,
)

pytestmark = pytest.mark.slow

LOCAL_WORDS = 16  # XIAOZHI__LLM__MAX_TOKENS: the timing LLM says this many words of its reply
LOCAL_REPLY = words(" ".join(yaml.safe_load(SHIPPED_PROFILE.read_text())["llm"]["reply"].split()[:LOCAL_WORDS]))
TRIGGER = "self-destruct"


async def _start_turn(edge: EdgeProcess, device_id: str, text: str) -> DeviceClient:
    client = DeviceClient(edge.url, device_id=device_id)
    await client.connect()
    await client.listen_start("auto")
    client.turn_reset()
    await client.listen_detect(text)
    return client


async def _finish(client: DeviceClient, limit_s: float = 40) -> Turn:
    try:
        return await client.wait_turn_end(limit_s)
    finally:
        await client.close()


def _heard(turn: Turn) -> str:
    return " ".join(turn.sentences)


def _assert_local_answer(turn: Turn) -> None:
    """The edge LLM's whole reply, spoken and ended: what a device no fault touched hears."""
    assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0, turn.order
    assert words(_heard(turn)) == LOCAL_REPLY, turn.sentences


# ------------------------------------------------------------------------- (a) cloud worker killed
@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    # 0.12 s a word: the cloud's answer streams for ~5 s, so the kill lands in the middle of it.
    c = start_timing_cloud(tmp_path_factory.mktemp("crash-cloud"), ["edge-crash"], per_token_s=0.12)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def cloud_edge(cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    work = tmp_path_factory.mktemp("crash-edge")
    env = cloud_edge_env(
        cloud, "edge-crash", routing_file(work), write_profile(work), XIAOZHI__LLM__MAX_TOKENS=str(LOCAL_WORDS)
    )
    node = start_edge("fault-crash-cloud-edge", env)
    yield node
    stop_edge(node)


async def test_cloud_worker_killed_mid_answer(cloud: Cloud, cloud_edge: EdgeProcess) -> None:
    edge = cloud_edge
    assert await cloud_link_up(edge)
    worker = cloud.llm_worker
    assert worker is not None
    offset, worker_offset = edge.log_offset(), len(worker.log_text())
    escalated = await _start_turn(edge, "aa:f1:00:00:00:02", ESCALATED)
    assert await wait_until(lambda: "accepted" in worker.log_text()[worker_offset:], 20)
    local = await _start_turn(edge, "aa:f1:00:00:00:01", LOCAL)
    # Kill once both devices hear their answers (the local one plays for ~5 s more).
    await escalated.wait_for(lambda e: e.kind == "audio", 20)
    await local.wait_for(lambda e: e.kind == "audio", 20)
    killed_at = time.monotonic()
    worker.stop(signal.SIGKILL)
    cut, kept = await asyncio.gather(_finish(escalated), _finish(local))
    stop_after = max(e.at for e in cut.events if e.is_json("tts", "stop")) - killed_at
    # The escalated device: what arrived of the cloud's answer, then the spoken cut-off, then tts/stop.
    assert cut.order[-1] == "tts:stop" and cut.audio_packets > 0, cut.order
    assert words(CUT_OFF)[-5:] == words(_heard(cut))[-5:], cut.sentences
    heard_cloud = words(_heard(cut))[: -len(words(CUT_OFF))]
    assert heard_cloud and heard_cloud == words(CLOUD_REPLY)[: len(heard_cloud)], cut.sentences
    assert log_lines(edge, "route cloud failed mid-answer", offset), edge.log_text()[offset:][-2000:]
    _assert_local_answer(kept)  # the other device: untouched
    # The worker comes back (systemd/Kubernetes would restart it): escalations reach the cloud again.
    restarted_at = time.monotonic()
    cloud.start_llm_worker()
    attempts = 0
    while True:
        attempts += 1
        again_offset = edge.log_offset()
        turn = await text_turn(edge.url, "aa:f1:00:00:00:03", ESCALATED, 40)
        assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0
        await asyncio.sleep(0.3)  # the edge logs who answered right after tts/stop
        if log_lines(edge, "answered by llm-test-1", again_offset):
            break
        assert time.monotonic() - restarted_at < 30, "the cloud did not answer again after the worker restart"
    assert words(_heard(turn)) == words(CLOUD_REPLY)[: len(words(_heard(turn)))]
    assert turn.first_audio_ms is not None
    observed(
        f"cloud worker SIGKILLed mid-answer: the escalated device heard {len(heard_cloud)} words of the "
        f"cloud's answer, then {CUT_OFF!r} and tts/stop {stop_after:.1f} s after the kill; the local device "
        f"heard its whole answer ({len(kept.sentences)} sentences, {kept.audio_packets} packets) untouched; "
        f"worker restarted: the cloud answered the next escalated turn (attempt {attempts}), first audio "
        f"{turn.first_audio_ms:.0f} ms"
    )


# --------------------------------------------------------------------- (b) edge model instance fails
@pytest.fixture(scope="module")
def faulty_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    profile = write_profile(
        tmp_path_factory.mktemp("crash-local"),
        faults={"llm_raise_on": TRIGGER, "llm_raise_after_words": 5, "llm_stays_broken": True},
    )
    env = timing_env(
        profile, XIAOZHI__LLM__WORKERS="1", XIAOZHI__LLM__MAX_TOKENS=str(LOCAL_WORDS), XIAOZHI__CACHE__ENABLED="false"
    )
    node = start_edge("fault-crash-local-edge", env)
    yield node
    stop_edge(node)


async def test_edge_model_fails_mid_reply_and_its_worker_restarts(faulty_edge: EdgeProcess, tmp_path: Path) -> None:
    edge = faulty_edge
    before = await metrics_text(edge)
    offset = edge.log_offset()
    # One device is mid-answer (its LLM work done, its audio playing) when the other's turn breaks
    # the single LLM instance.
    bystander = await _start_turn(edge, "aa:f1:00:00:01:01", LOCAL)
    await bystander.wait_for(lambda e: e.kind == "audio", 20)
    victim = await _start_turn(edge, "aa:f1:00:00:01:02", f"Please {TRIGGER} while you answer me")
    failed, kept = await asyncio.gather(_finish(victim), _finish(bystander))
    assert failed.order[-1] == "tts:stop" and failed.audio_packets > 0, failed.order
    assert words(_heard(failed))[-len(words(CUT_OFF)) :] == words(CUT_OFF), failed.sentences
    _assert_local_answer(kept)
    # The same (only) worker serves the next turns: it runs a fresh instance, not the broken one.
    after_turns = [await text_turn(edge.url, f"aa:f1:00:00:01:{i:02x}", LOCAL, 30) for i in range(3, 6)]
    for turn in after_turns:
        _assert_local_answer(turn)
    after = await metrics_text(edge)

    def moved(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert moved("xiaozhi_engine_failures_total", stage="llm") == 1
    assert moved("xiaozhi_engine_restarts_total", stage="llm", result="ok") == 1
    # All five turns ended normally, the victim's too: its cut-off apology is a spoken end of the turn.
    assert moved("xiaozhi_turns_total", route="local_llm", outcome="ok") == 5
    assert moved("xiaozhi_fallbacks_total", from_route="local_llm", to_route="cut_off") == 1
    replaced = log_lines(edge, "llm worker 0: engine raised", offset)
    assert len(replaced) == 1 and "instance replaced" in replaced[0], replaced
    assert "session crashed" not in edge.log_text()[offset:]
    observed(
        f"edge LLM instance raised mid-reply: that device heard {_heard(failed)!r} then tts/stop; the device "
        f"speaking meanwhile heard its whole answer untouched; the pool replaced the broken instance "
        f"(xiaozhi_engine_restarts_total{{stage=llm}} +1) and the next {len(after_turns)} turns on the same "
        f"single LLM worker were answered normally"
    )
