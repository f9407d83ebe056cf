"""Saturation: a clear spoken "busy" instead of a silent stall, and a clear refusal at accept time.

A node with a one-job engine queue and an (artificially) tiny measured capacity, so both limits
trip with a handful of devices.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from edge_node.config import QueueConfig
from shared.client.device import DeviceClient, DeviceClientError
from tests.conftest import EdgeProcess, start_edge, stop_edge

pytestmark = pytest.mark.slow
BUSY = QueueConfig().busy_message


@pytest.fixture(scope="module")
def tight_edge() -> Iterator[EdgeProcess]:
    node = start_edge(
        "edge-tight",
        {
            "XIAOZHI__QUEUES__MAX_QUEUE": "1",
            # 2 cores x 0.85 / 60 CPU-s per turn = 0.028 turns/s: one turn in the 30 s window saturates it.
            "XIAOZHI__ADMISSION__CPU_S_PER_TURN_PRIOR": "60",
            "XIAOZHI__ADMISSION__MIN_TURNS_PER_SAMPLE": "1000",
        },
    )
    yield node
    stop_edge(node)


async def test_saturated_stage_answers_busy_and_ends_every_turn(tight_edge: EdgeProcess) -> None:
    clients = [DeviceClient(tight_edge.url, device_id=f"dd:00:00:00:00:{i:02x}") for i in range(5)]
    for client in clients:
        await client.connect()
    try:
        for client in clients:
            await client.listen_start("auto")
        questions = [
            "Why is the sky blue?",
            "How do plants grow?",
            "What is a black hole?",
            "Why do cats purr?",
            "How do airplanes fly?",
        ]
        await asyncio.gather(*(c.listen_detect(q) for c, q in zip(clients, questions, strict=True)))
        turns = await asyncio.gather(*(c.wait_turn_end(120) for c in clients))
        assert all(t.order[-1] == "tts:stop" for t in turns)
        busy = [t for t in turns if t.sentences == [BUSY]]
        answered = [t for t in turns if t.sentences != [BUSY]]
        assert busy, "no turn was told the node is busy"
        assert answered, "no turn was answered"
        assert all(t.audio_packets > 0 for t in busy), "the busy answer must be spoken"
        log = tight_edge.log_text()
        assert "turn refused, node busy: llm busy" in log
    finally:
        for client in clients:
            await client.close()


async def test_connection_refused_when_demand_reaches_capacity(tight_edge: EdgeProcess) -> None:
    # The previous test's turns are within the 30 s window: demand > measured capacity.
    client = DeviceClient(tight_edge.url, device_id="dd:00:00:00:00:ff")
    with pytest.raises(DeviceClientError, match="503"):
        await client.connect()
    assert "edge node busy" in tight_edge.log_text()
