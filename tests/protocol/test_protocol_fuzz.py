"""Property-style loops: whatever a device sends, only ProtocolError (or a valid result) comes out.

Seeded ``random`` rather than hypothesis so the suite has no extra dependency and is reproducible.
"""

from __future__ import annotations

import json
import random
import struct
from typing import Any

import pytest

from shared.protocol import (
    AudioFrame,
    ClientMessage,
    Hello,
    ProtocolError,
    pack_audio,
    parse_client_message,
    unpack_audio,
)
from shared.protocol.errors import CODES
from shared.protocol.mcp import (
    McpError,
    McpNotification,
    McpResponse,
    ToolNameMap,
    call_result_text,
    llm_tool_name,
    parse_iot_descriptors,
    parse_payload,
    parse_tools_list,
)

SEEDS = range(8)
ROUNDS = 400
VALID_MESSAGES: list[dict[str, Any]] = [
    {
        "type": "hello",
        "version": 1,
        "transport": "websocket",
        "features": {"mcp": True},
        "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60},
    },
    {"session_id": "s", "type": "listen", "state": "start", "mode": "auto"},
    {"session_id": "s", "type": "listen", "state": "detect", "text": "你好小智"},
    {"session_id": "s", "type": "abort", "reason": "wake_word_detected"},
    {"session_id": "s", "type": "mcp", "payload": {"jsonrpc": "2.0", "id": 1, "result": {}}},
    {"session_id": "s", "type": "iot", "update": True, "states": [{"name": "Speaker", "state": {"volume": 60}}]},
    {"session_id": "s", "type": "goodbye"},
    {"type": "ping"},
]

JUNK_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**40,
    "",
    "x",
    "start",
    "opus",
    [],
    [1, "a"],
    {},
    {"a": None},
    {"jsonrpc": "2.0"},
    "😶" * 3,
    "\x00",
    16000,
    60,
    3,
]


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.choice(JUNK_VALUES)
    if kind == 1:
        return rng.randint(-(2**33), 2**33)
    if kind == 2:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(8)))
    if kind == 3:
        return rng.random() * 1e6
    if kind == 4:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [
        "type",
        "state",
        "mode",
        "text",
        "session_id",
        "payload",
        "version",
        "features",
        "audio_params",
        "reason",
        "update",
        "descriptors",
        "states",
        "jsonrpc",
        "id",
        "result",
        "error",
        "method",
    ]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def _mutate(rng: random.Random, msg: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(msg))
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(3)
        keys = list(out)
        if op == 0 and keys:
            out[rng.choice(keys)] = _random_json(rng)
        elif op == 1 and keys:
            del out[rng.choice(keys)]
        else:
            out[rng.choice(["x", "state", "mode", "version", "payload", "audio_params"])] = _random_json(rng)
    return out


def _parse_or_error(data: str | bytes) -> ClientMessage | ProtocolError:
    try:
        return parse_client_message(data)
    except ProtocolError as exc:
        assert exc.code in CODES
        assert exc.message
        assert len(str(exc)) < 300, "error text must stay bounded"
        return exc


@pytest.mark.parametrize("seed", SEEDS)
def test_mutated_valid_messages(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        msg = _mutate(rng, rng.choice(VALID_MESSAGES))
        result = _parse_or_error(json.dumps(msg, ensure_ascii=rng.random() < 0.5))
        if not isinstance(result, ProtocolError):
            assert result.TYPE == msg["type"]
            assert isinstance(result.session_id, str) if not isinstance(result, Hello) else True


@pytest.mark.parametrize("seed", SEEDS)
def test_random_json_values(seed: int) -> None:
    rng = random.Random(100 + seed)
    for _ in range(ROUNDS):
        _parse_or_error(json.dumps(_random_json(rng)))


@pytest.mark.parametrize("seed", SEEDS)
def test_random_bytes(seed: int) -> None:
    rng = random.Random(200 + seed)
    for _ in range(ROUNDS):
        data = rng.randbytes(rng.randrange(64))
        result = _parse_or_error(data)
        assert isinstance(result, ProtocolError)


@pytest.mark.parametrize("seed", SEEDS)
def test_truncated_and_corrupted_text(seed: int) -> None:
    rng = random.Random(300 + seed)
    for _ in range(ROUNDS):
        text = json.dumps(rng.choice(VALID_MESSAGES), ensure_ascii=False)
        if rng.random() < 0.5:
            text = text[: rng.randrange(len(text))]
        else:
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice('{}[]",:\\x0 ') + text[i + 1 :]
        _parse_or_error(text)
        _parse_or_error(text.encode())


@pytest.mark.parametrize("seed", SEEDS)
def test_valid_messages_survive_key_shuffle_and_extras(seed: int) -> None:
    rng = random.Random(400 + seed)
    for _ in range(ROUNDS // 4):
        msg = dict(rng.choice(VALID_MESSAGES))
        items = list(msg.items()) + [(f"extra{i}", _random_json(rng)) for i in range(rng.randrange(3))]
        rng.shuffle(items)
        result = parse_client_message(json.dumps(dict(items)))
        assert result.TYPE == msg["type"]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_audio_frames(seed: int) -> None:
    rng = random.Random(500 + seed)
    for _ in range(ROUNDS):
        data = rng.randbytes(rng.randrange(40))
        for version in (1, 2, 3):
            try:
                frame = unpack_audio(data, version)
            except ProtocolError as exc:
                assert exc.code == "bad_frame"
            else:
                assert isinstance(frame, AudioFrame) and frame.payload


@pytest.mark.parametrize("seed", SEEDS)
def test_random_frame_round_trips_and_corruption(seed: int) -> None:
    rng = random.Random(600 + seed)
    for _ in range(ROUNDS):
        payload = rng.randbytes(rng.randint(1, 400))
        version = rng.choice((1, 2, 3))
        ts = rng.randrange(2**32)
        frame = pack_audio(payload, version, ts)
        got = unpack_audio(frame, version)
        assert got.payload == payload
        assert got.timestamp == (ts if version == 2 else 0)
        if version != 1:
            # drop or add a byte: the size field no longer matches
            bad = frame[:-1] if rng.random() < 0.5 else frame + b"\x00"
            with pytest.raises(ProtocolError):
                unpack_audio(bad, version)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_v2_headers(seed: int) -> None:
    rng = random.Random(700 + seed)
    for _ in range(ROUNDS):
        body = rng.randbytes(rng.randrange(10))
        kind = rng.choice((0, 1, 2, 0xFFFF))
        size = rng.choice((len(body), len(body) + 1, max(len(body) - 1, 0), 2**32 - 1))
        frame = struct.pack(">HHIII", 2, kind, 0, 0, size) + body
        ok = kind in (0, 1) and size == len(body) and len(body) > 0
        try:
            got = unpack_audio(frame, 2)
        except ProtocolError:
            assert not ok
        else:
            assert ok and got.is_json == (kind == 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_mcp_payloads(seed: int) -> None:
    rng = random.Random(800 + seed)
    for _ in range(ROUNDS):
        payload = _random_json(rng)
        if isinstance(payload, dict) and rng.random() < 0.7:
            payload["jsonrpc"] = "2.0"
        try:
            got = parse_payload(payload)
        except ProtocolError as exc:
            assert exc.code == "bad_field"
        else:
            assert isinstance(got, McpResponse | McpNotification)
            if isinstance(got, McpResponse):
                assert (got.result is None) != (got.error is None)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_tool_results(seed: int) -> None:
    rng = random.Random(900 + seed)
    for _ in range(ROUNDS):
        value = _random_json(rng)
        for fn in (parse_tools_list, call_result_text):
            try:
                fn(value)
            except (ProtocolError, McpError):
                pass
        parse_iot_descriptors(value)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_tool_names_map_back(seed: int) -> None:
    from shared.protocol.mcp import Tool

    rng = random.Random(1000 + seed)
    alphabet = "ab._-/ 灯Z9"
    names = ToolNameMap()
    device_names = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 70))) for _ in range(200)}
    for name in device_names:
        llm = names.add(Tool(name, "", {}))
        assert len(llm) <= 64 and llm_tool_name(llm) == llm
    assert len(names) == len(device_names)
    for func in names.llm_functions():
        llm = func["function"]["name"]
        device = names.device_name(llm)
        assert device in device_names
        assert names.llm_name(device) == llm
