"""Fuzzing what arrives over NATS: heartbeats, cloud worker requests, streamed replies, KV cache entries.

Properties and strategies live in bench/fuzz_targets.py: each parser returns what the message says
or raises its own error type (HeartbeatError, LlmRequestError, AsrRequestError, a RemoteError
subclass, ValueError for packed packets); the fleet KV's answer cache reads any value as a fresh
answer or a miss without raising. The regression cases at the bottom are what fuzzing found.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from bench.fuzz_targets import LARGE_INPUT_LIMIT_S, LARGE_INPUTS, TARGETS, LargeInput, run_large_input
from cloud.workers.llm import LlmRequestError, parse_chat_request
from shared.nats.heartbeats import HeartbeatError, parse_heartbeat
from shared.nats.streaming import _json_or_none
from tests.fuzz.conftest import fuzz_settings

PREFIXES = ("nats.", "cache.")


@pytest.mark.parametrize("name", [n for n in TARGETS if n.startswith(PREFIXES)])
def test_property(name: str) -> None:
    """Only the documented result or the documented error, for structured and random inputs."""
    target = TARGETS[name]

    @fuzz_settings(target.weight)
    @given(target.strategy)
    def check(example: object) -> None:
        target.check(example)

    check()


@pytest.mark.parametrize("item", [i for i in LARGE_INPUTS if i.name.startswith(PREFIXES)], ids=lambda i: i.name)
def test_multi_megabyte_input_is_handled_fast(item: LargeInput) -> None:
    """Bounded work on huge input (NATS carries up to 1 MB; the inputs here are larger)."""
    outcome, elapsed = run_large_input(item)
    assert elapsed < LARGE_INPUT_LIMIT_S, f"{item.name} took {elapsed:.1f} s ({outcome})"


DEEP = b"[" * 50_000


def test_found_by_fuzzing_deep_json_heartbeat() -> None:
    """RecursionError is not a ValueError: it escaped parse_heartbeat into the console's handler."""
    with pytest.raises(HeartbeatError, match="nested too deeply"):
        parse_heartbeat("xz.fleet.heartbeat.edge-1", DEEP)


def test_found_by_fuzzing_deep_json_stream_summary() -> None:
    assert _json_or_none(DEEP) is None


@pytest.mark.parametrize(
    "body",
    [
        DEEP,
        b'{"messages":[{"role":"user","content":"hi"}],"temperature":NaN}',
        b'{"messages":[{"role":"user","content":"hi"}],"temperature":Infinity}',
        b'{"messages":[{"role":"user","content":"hi"}],"temperature":' + b"9" * 400 + b"}",
    ],
    ids=["deep-nesting", "nan", "infinity", "400-digit-int"],
)
def test_found_by_fuzzing_chat_requests(body: bytes) -> None:
    """NaN/Infinity passed ``temperature >= 0`` (to the OpenAI endpoint); a 400-digit integer
    raised OverflowError in float(); deep nesting raised RecursionError."""
    with pytest.raises(LlmRequestError):
        parse_chat_request(body, 128)
