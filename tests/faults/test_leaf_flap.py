"""Fault: the edge's NATS leaf link flaps while devices are talking.

Eight devices take turns continuously on one edge -- open questions escalated to the cloud, personal
ones for the local LLM, commands answered by an intent -- while the test stops and starts the edge's
own leaf nats-server several times (alternately SIGTERM and SIGKILL); in every outage one more
device asks an open question, so the fallback is exercised each time. Every turn must end with
``tts/stop``: answered by the cloud, by the local fallback, or with a spoken apology or cut-off. No
session may be stuck, no device may see a protocol violation, the edge counts no protocol error, and
once the flapping stops escalations reach the cloud again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import yaml

from edge_node.config import QueueConfig
from edge_node.routing.router import APOLOGY, CUT_OFF
from shared.client.device import DeviceClient, DeviceClientError, Turn
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
    write_profile,
)

pytestmark = pytest.mark.slow

EDGE = "edge-flap"
DEVICES = 8
FLAPS = 4
DOWN_S, UP_S = 2.5, 4.0
LOCAL_WORDS = 8
BUSY = QueueConfig().busy_message
CLOUD_WORDS = 10
# Per device: an escalated question, a personal one, a command; each question once per round.
QUESTIONS = [ESCALATED, LOCAL, "What time is it?"]
LOCAL_REPLY = words(" ".join(yaml.safe_load(SHIPPED_PROFILE.read_text())["llm"]["reply"].split()[:LOCAL_WORDS]))


def classify(turn: Turn) -> str:
    """Who answered, from what the device heard."""
    heard = words(" ".join(turn.sentences))
    if heard[-len(words(CUT_OFF)) :] == words(CUT_OFF):
        return "cut_off"
    if heard == words(APOLOGY):
        return "apology"
    if heard == words(BUSY):
        return "busy"  # the fallback found the local engines saturated (a loaded box): a spoken answer too
    if heard and heard == words(CLOUD_REPLY)[: len(heard)]:
        return "cloud"
    if heard == LOCAL_REPLY:
        return "local"
    if heard[:1] == ["it's"] or "pm" in heard or "am" in heard:
        return "intent"
    return "other: " + " ".join(heard)


@dataclass
class DeviceRun:
    device_id: str
    outcomes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


async def _talk(edge: EdgeProcess, run: DeviceRun, offset: int, stop: asyncio.Event) -> None:
    """One device on one connection, turn after turn, until ``stop`` (a turn under way is finished)."""
    client = DeviceClient(edge.url, device_id=run.device_id)
    await client.connect()
    await asyncio.sleep(0.4 * offset)  # staggered, so turns start all through the outages
    try:
        i = offset
        while not stop.is_set():
            question = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            await client.listen_start("auto")
            client.turn_reset()
            await client.listen_detect(question)
            try:
                turn = await client.wait_turn_end(30)
            except (TimeoutError, DeviceClientError) as exc:
                run.failures.append(f"{question!r}: {exc}")
                return
            if turn.order[-1] != "tts:stop" or turn.audio_packets == 0:
                run.failures.append(f"{question!r}: incomplete turn {turn.order}")
            run.outcomes.append(f"{'escalated' if question == ESCALATED else 'local'}:{classify(turn)}")
            # Below limits.turns_per_min (20) even for the quickest turns.
            await asyncio.sleep(2.0 + client.playback_remaining_s())
    finally:
        run.violations = list(client.violations)
        await client.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    c = start_timing_cloud(tmp_path_factory.mktemp("flap-cloud"), [EDGE], per_token_s=0.03)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def edge(cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    work = tmp_path_factory.mktemp("flap-edge")
    env = cloud_edge_env(
        cloud,
        EDGE,
        routing_file(work, CLOUD_WORDS),
        write_profile(work),
        XIAOZHI__LLM__MAX_TOKENS=str(LOCAL_WORDS),
        XIAOZHI__LLM__WORKERS="2",
    )
    node = start_edge("fault-leaf-flap-edge", env)
    yield node
    stop_edge(node)


async def test_leaf_link_flaps_under_load(cloud: Cloud, edge: EdgeProcess) -> None:
    assert await cloud_link_up(edge)
    leaf = cloud.leaves[EDGE]
    before = await metrics_text(edge)
    offset = edge.log_offset()
    stop = asyncio.Event()
    runs = [DeviceRun(f"aa:f2:00:00:00:{i:02x}") for i in range(DEVICES)]
    talkers = [asyncio.create_task(_talk(edge, run, i, stop)) for i, run in enumerate(runs)]
    probes: list[asyncio.Task[Turn]] = []
    started = time.monotonic()
    await asyncio.sleep(UP_S)
    for flap in range(FLAPS):
        assert leaf.server is not None
        await asyncio.to_thread(leaf.server.stop, flap % 2 == 1)  # SIGTERM, then SIGKILL, ...
        await asyncio.sleep(0.3)
        probes.append(asyncio.create_task(text_turn(edge.url, f"aa:f2:00:00:02:{flap:02x}", ESCALATED, 30)))
        await asyncio.sleep(DOWN_S - 0.3)
        await asyncio.to_thread(leaf.start)
        await asyncio.sleep(UP_S)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*talkers), 60)
    probed = Counter(classify(turn) for turn in await asyncio.gather(*probes))
    flapping_s = time.monotonic() - started
    # After the flapping: the link comes back and escalations reach the cloud again.
    await asyncio.to_thread(leaf.wait_linked, 20)
    assert await cloud_link_up(edge)
    recovered_at = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        again = edge.log_offset()
        turn = await text_turn(edge.url, f"aa:f2:00:00:01:{attempts:02x}", ESCALATED, 30)
        assert turn.order[-1] == "tts:stop"
        await asyncio.sleep(0.3)  # the edge logs who answered right after tts/stop
        if log_lines(edge, "answered by llm-test-1", again):
            break
        assert time.monotonic() - recovered_at < 30, "escalations did not reach the cloud after the flapping"
        await asyncio.sleep(1.0)
    after = await metrics_text(edge)
    async with httpx.AsyncClient() as http:
        stats = (await http.get(f"{edge.http}/stats", timeout=10)).json()
    outcomes = Counter(o for run in runs for o in run.outcomes)
    failures = [f"{run.device_id}: {f}" for run in runs for f in run.failures]
    violations = [f"{run.device_id}: {v}" for run in runs for v in run.violations]
    assert not failures, failures  # every turn ended with tts/stop, none stuck
    assert not violations, violations
    assert not [o for o in outcomes if ":other" in o], outcomes
    assert sum(outcomes.values()) >= DEVICES * 3, outcomes
    assert outcomes["escalated:cloud"] > 0, outcomes
    # Asked while the link was down: the local LLM answers (or, if it could not, a spoken apology or "busy").
    assert set(probed) <= {"local", "apology", "busy"} and probed["local"] > 0, probed
    assert metric_value(after, "xiaozhi_protocol_errors_total") == metric_value(before, "xiaozhi_protocol_errors_total")
    assert stats["edge"]["sessions"] == 0, stats["edge"]["sessions"]  # nobody left behind
    log = edge.log_text()[offset:]
    assert "session crashed" not in log and "Traceback" not in log, log[-3000:]
    disconnects = len(log_lines(edge, "disconnected from", offset))
    observed(
        f"leaf link flapped {FLAPS}x ({DOWN_S:g} s down each) under {DEVICES} talking devices for "
        f"{flapping_s:.0f} s: {sum(outcomes.values())} turns, all ended with tts/stop, none stuck, no protocol "
        f"errors; escalated turns: {outcomes['escalated:cloud']} answered by the cloud, "
        f"{outcomes['escalated:local']} by the local fallback, {outcomes['escalated:cut_off']} cut off with "
        f"{CUT_OFF!r}, {outcomes['escalated:apology']} apologised, {outcomes['escalated:busy']} told 'busy'; "
        f"local turns: "
        f"{outcomes['local:local'] + outcomes['local:intent']} answered normally; escalations asked during "
        f"an outage: {probed['local']}/{len(probes)} answered by the local fallback; the edge's NATS "
        f"client saw {disconnects} disconnects; after the flapping the cloud answered again "
        f"(attempt {attempts})"
    )
