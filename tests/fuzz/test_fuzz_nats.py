"""Fuzzing what arrives over NATS: heartbeats, cloud worker requests, streamed replies, KV cache entries.

Properties and strategies live in tests/fuzz/targets.py: each parser returns what the message says
or raises its own error type (HeartbeatError, LlmRequestError, AsrRequestError, a RemoteError
subclass, ValueError for packed packets); the fleet KV's answer cache reads any value as a fresh
answer or a miss without raising. The regression cases at the bottom are what fuzzing found.
"""

from __future__ import annotations

import pytest

from cloud.workers.llm import LlmRequestError, parse_chat_request
from shared.nats.heartbeats import HeartbeatError, parse_heartbeat
from shared.nats.streaming import _json_or_none

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
