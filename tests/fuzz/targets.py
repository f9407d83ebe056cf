"""Fuzz targets: one hypothesis strategy and one property per parser of outside input.

Shared by the CI fuzz tests (``tests/fuzz``, few examples, derandomized) and the long run
(``python -m bench.fuzz``, many examples, random seeds), so both check exactly the same thing.

Every property has the same shape: the parser either returns its documented result type, and that
result is checked against what the input says (an oracle written from docs/protocol.md / the parser's
docstring, not from its code), or it raises the parser's documented error type with a non-empty
message. Any other exception, or a wrong result, is an ``AssertionError`` naming the example. A
property returns a short *outcome kind* ("ok:Hello", "rejected:bad_field", ...) that the long run
counts per target.

Strategies come in two kinds per target: unstructured (random bytes/text/JSON/YAML) and
near-valid (a valid input with one field dropped, of the wrong type, out of range or huge), which
is where parsers usually break. ``LARGE_INPUTS`` are single multi-megabyte inputs that must be
rejected or handled within a time bound.
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
import numpy as np
import yaml
from hypothesis import strategies as st
from multidict import CIMultiDict

from cloud.workers.asr import AsrRequestError, decode_pcm_request
from cloud.workers.llm import LlmRequestError, parse_chat_request
from edge_node.cache.answers import AnswerCache, encode_answer
from edge_node.cache.lru import LruCache
from edge_node.cache.packets import pack_packets, unpack_packets
from edge_node.cloud_link.kv_cache import KvCacheLevel
from provisioning.firmware import parse_version
from shared.nats import subjects as s
from shared.nats.heartbeats import HeartbeatError, parse_heartbeat
from shared.nats.streaming import RemoteError, RemoteFailed, RemoteTimeout, RemoteUnavailable, request_stream
from shared.protocol import errors as perr
from shared.protocol import framing, mcp
from shared.protocol import messages as msgs
from shared.protocol.errors import ProtocolError
from shared.protocol.ota import MAX_DEVICE_ID, OtaRequest, OtaRequestError, parse_ota_request
from shared.routing_config import RoutingConfigError, RoutingPolicy, parse_routing

__all__ = [
    "LARGE_INPUTS",
    "TARGETS",
    "LargeInput",
    "Target",
    "check_client_text",
    "client_frames",
    "error_kind",
    "expected_ota",
    "hostile_client_message",
    "near_valid_client_message",
    "ota_request",
    "run_large_input",
]

T = TypeVar("T")

# --------------------------------------------------------------------------------------------------
# helpers


@dataclass(frozen=True)
class Target:
    """One fuzz target. ``weight`` scales the profile's ``max_examples`` for slower targets."""

    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], str]
    doc: str
    weight: float = 1.0


_NUM = re.compile(r"\d+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def error_kind(exc: BaseException) -> str:
    """A short, value-free label for an error, so the long run can count rejections by kind.

    Numbers become N and quoted text an ellipsis; of ``a: b: c`` only ``a: b`` is kept, which drops
    the peer-supplied tail (a worker's error text, a JSON decoder's position).
    """
    if isinstance(exc, ProtocolError):
        return exc.code
    text = _NUM.sub("N", _QUOTED.sub("…", str(exc)))
    return f"{type(exc).__name__}: {': '.join(text.split(': ')[:2]).strip()[:60]}"


def _rejected(exc: BaseException) -> str:
    assert str(exc).strip(), f"{type(exc).__name__} raised with an empty message"
    return f"rejected:{error_kind(exc)}"


def _run_sync(awaitable: Awaitable[T]) -> T:
    """Run a coroutine that never really suspends (its I/O is fakes that answer at once).

    No event loop per example: that would cost more than most parsers. A coroutine that does
    suspend is a fake that needs fixing, hence the assertion.
    """
    coro: Coroutine[Any, Any, T] = awaitable.__await__()  # type: ignore[assignment]
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("coroutine suspended although every fake answers at once")


def _assert_clean(value: object, where: str) -> None:
    """A parsed result can be sent on: valid Unicode, finite numbers (what the edge re-encodes)."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError) as exc:
        raise AssertionError(f"{where} parsed into a value that cannot be re-encoded: {exc}") from None


# JSON values: scalars that sit near the interesting boundaries, nested a little.
JSON_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, -1, 16000, 60, 2**31, 2**31 - 1, 2**32, 1.0, 2.0, 0.5, 1e300, -0.0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
    st.sampled_from(["", "start", "stop", "detect", "auto", "opus", "2.0", "hello", "websocket", "😶", "\x00"]),
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_JSON_TYPES = ("string", "number", "boolean", "array", "object")


def _of_type(kind: str) -> st.SearchStrategy[Any]:
    """A non-null JSON value of one JSON type."""
    return {
        "string": st.text(max_size=12),
        "number": st.integers(-1000, 100_000) | st.floats(allow_nan=False, allow_infinity=False),
        "boolean": st.booleans(),
        "array": st.lists(JSON_SCALARS, max_size=3),
        "object": st.dictionaries(st.text(max_size=6), JSON_SCALARS, max_size=3),
    }[kind]


def _wrong_type(expected: str) -> st.SearchStrategy[Any]:
    return st.sampled_from([k for k in _JSON_TYPES if k != expected]).flatmap(_of_type)


# --------------------------------------------------------------------------------------------------
# WebSocket text messages (shared/protocol/messages.py)


def _with(base: dict[str, Any], extra: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return extra.map(lambda more: {**more, **base})


_ALL_FIELDS = {
    "type",
    "session_id",
    "version",
    "transport",
    "features",
    "audio_params",
    "state",
    "mode",
    "text",
    "reason",
    "payload",
    "update",
    "descriptors",
    "states",
}
_EXTRAS = st.dictionaries(st.text(max_size=8).filter(lambda k: k not in _ALL_FIELDS), JSON_VALUES, max_size=2)

_AUDIO_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from(["opus", "Opus", "OPUS"]),
        "sample_rate": st.sampled_from(sorted(msgs.SAMPLE_RATES)) | st.just(16000.0),
        "channels": st.just(1),
        "frame_duration": st.sampled_from(sorted(msgs.FRAME_DURATIONS)),
    },
)

VALID_CLIENT_MESSAGES: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("hello")},
        optional={
            "version": st.sampled_from([1, 2, 3, 2.0]),
            "transport": st.just("websocket") | st.text(max_size=10),
            "features": st.dictionaries(st.text(max_size=10), st.booleans() | JSON_SCALARS, max_size=3),
            "audio_params": _AUDIO_PARAMS,
            "text_font": JSON_VALUES,
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("listen"), "state": st.sampled_from(sorted(msgs.LISTEN_STATES))},
        optional={
            "mode": st.sampled_from(sorted(msgs.LISTEN_MODES)),
            "text": st.text(max_size=30),
            "session_id": st.text(max_size=40),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("abort")}, optional={"reason": st.text(max_size=20), "session_id": st.text(max_size=40)}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("mcp"),
            "payload": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3).map(
                lambda p: {**p, "jsonrpc": "2.0"}
            ),
        },
        optional={"session_id": st.text(max_size=40)},
    ),
    st.fixed_dictionaries(
        {"type": st.just("iot")},
        optional={
            "update": st.booleans(),
            "descriptors": st.lists(JSON_VALUES, max_size=3),
            "states": st.lists(JSON_VALUES, max_size=3),
            "session_id": st.text(max_size=40),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["goodbye", "ping"])}, optional={"session_id": st.text(max_size=40)}
    ),
).flatmap(lambda base: _with(base, _EXTRAS))

# Field -> JSON type it must have when present (null means absent), per message type.
_TYPED_FIELDS: dict[str, dict[tuple[str, ...], str]] = {
    "hello": {
        ("version",): "number",
        ("transport",): "string",
        ("features",): "object",
        ("audio_params",): "object",
        ("audio_params", "sample_rate"): "number",
        ("audio_params", "channels"): "number",
        ("audio_params", "frame_duration"): "number",
        ("audio_params", "format"): "string",
    },
    "listen": {("state",): "string", ("mode",): "string", ("text",): "string", ("session_id",): "string"},
    "abort": {("reason",): "string", ("session_id",): "string"},
    "mcp": {("payload",): "object", ("session_id",): "string"},
    "iot": {("update",): "boolean", ("descriptors",): "array", ("states",): "array", ("session_id",): "string"},
    "goodbye": {("session_id",): "string"},
    "ping": {("session_id",): "string"},
}
# Fields whose value is one of a few: a wrong value of the right type is refused.
_BAD_VALUES: dict[str, dict[tuple[str, ...], list[Any]]] = {
    "hello": {
        ("version",): [0, 4, -1, 1.5, 2**40],
        ("audio_params", "sample_rate"): [44100, 0, -16000, 16000.5],
        ("audio_params", "channels"): [2, 0],
        ("audio_params", "frame_duration"): [30, 0, 2.5, 1000],
        ("audio_params", "format"): ["pcm", "", "mp3"],
    },
    "listen": {("state",): ["begin", "", "START"], ("mode",): ["push", "", "AUTO"]},
    "mcp": {("payload", "jsonrpc"): ["1.0", 2.0, None, "2"]},
}
_REQUIRED: dict[str, set[str]] = {"listen": {"state"}, "mcp": {"payload"}}


@dataclass(frozen=True)
class Expect:
    """What a mutated message must parse into: a class, or a ProtocolError code (+ a name it names)."""

    cls: type | None = None
    code: str | None = None
    names: str = ""


def _set_path(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        child = obj.get(key)
        if not isinstance(child, dict):
            child = obj[key] = {}
        obj = child
    obj[path[-1]] = value


_CLASSES: dict[str, type] = {
    "hello": msgs.Hello,
    "listen": msgs.Listen,
    "abort": msgs.Abort,
    "mcp": msgs.Mcp,
    "iot": msgs.Iot,
    "goodbye": msgs.Goodbye,
    "ping": msgs.Ping,
}


@st.composite
def near_valid_client_message(draw: st.DrawFn) -> tuple[str, Expect]:
    """A valid device message with exactly one mutation, and what the parser must make of it."""
    msg = json.loads(json.dumps(draw(VALID_CLIENT_MESSAGES)))
    kind = msg["type"]
    ok = Expect(cls=_CLASSES[kind])
    mutation = draw(st.sampled_from(["drop", "null", "wrong_type", "bad_value", "extra", "type", "huge", "none"]))
    placeholder = None  # (token, literal) spliced into the JSON text: values json.dumps cannot write
    expect = ok
    if mutation in ("drop", "null"):
        key = draw(st.sampled_from(sorted(msg)))
        if mutation == "drop":
            del msg[key]
        else:
            msg[key] = None
        if key == "type":
            expect = Expect(code=perr.MISSING_TYPE)
        elif key in _REQUIRED.get(kind, set()):
            expect = Expect(code=perr.BAD_FIELD, names=key)
    elif mutation == "wrong_type":
        path, json_type = draw(st.sampled_from(sorted(_TYPED_FIELDS[kind].items())))
        if len(path) > 1 and not isinstance(msg.get(path[0]), dict):
            msg[path[0]] = {}
        _set_path(msg, path, draw(_wrong_type(json_type)))
        expect = Expect(code=perr.BAD_FIELD, names=".".join(path))
    elif mutation == "bad_value" and kind in _BAD_VALUES:
        path, values = draw(st.sampled_from(sorted(_BAD_VALUES[kind].items())))
        if len(path) > 1 and not isinstance(msg.get(path[0]), dict):
            msg[path[0]] = {}
        _set_path(msg, path, draw(st.sampled_from(values)))
        expect = Expect(code=perr.BAD_FIELD, names=".".join(path))
    elif mutation == "extra":
        msg[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in _ALL_FIELDS))] = draw(JSON_VALUES)
    elif mutation == "type":
        new = draw(st.text(max_size=12) | _wrong_type("string"))
        msg["type"] = new
        if not isinstance(new, str):
            expect = Expect(code=perr.MISSING_TYPE)
        elif new not in _CLASSES:
            expect = Expect(code=perr.UNKNOWN_TYPE)
        elif new != kind:
            expect = Expect()  # another type's rules apply: only the general property holds
    elif mutation == "huge":
        what = draw(st.sampled_from(["string", "int", "float", "deep"]))
        key = draw(st.sampled_from(["session_id", "zz_extra"]))
        if what == "string":
            msg[key] = "x" * draw(st.integers(65_537, 70_000))
            expect = Expect(code=perr.OVERSIZE)
        elif what == "int":
            placeholder = ('"@HUGE@"', "9" * draw(st.integers(4301, 6000)))
            expect = Expect(code=perr.INVALID_JSON)
        elif what == "float":
            placeholder = ('"@HUGE@"', draw(st.sampled_from(["1e999", "-1e400", "1" * 400 + ".0e9999"])))
            expect = Expect(code=perr.INVALID_JSON)
        else:
            depth = draw(st.integers(20_000, 30_000))  # deeper than any recursion limit (hypothesis raises it)
            placeholder = ('"@HUGE@"', "[" * depth + "]" * depth)
            expect = Expect(code=perr.INVALID_JSON)
        if placeholder is not None:
            msg[key] = "@HUGE@"
    text = json.dumps(msg, ensure_ascii=draw(st.booleans()))
    if placeholder is not None:
        text = text.replace(placeholder[0], placeholder[1])
    return text, expect


def _client_result_ok(result: msgs.ClientMessage) -> None:
    """The documented result types, with field types as documented, re-encodable."""
    assert isinstance(result, msgs.Hello | msgs.Listen | msgs.Abort | msgs.Mcp | msgs.Iot | msgs.Goodbye | msgs.Ping)
    if not isinstance(result, msgs.Hello):
        assert isinstance(result.session_id, str)
    if isinstance(result, msgs.Hello):
        assert result.version in (1, 2, 3) and type(result.version) is int
        assert isinstance(result.transport, str)
        assert all(isinstance(v, bool) for v in result.features.values())
        if result.audio_params is not None:
            ap = result.audio_params
            assert (
                ap.sample_rate in msgs.SAMPLE_RATES and ap.frame_duration in msgs.FRAME_DURATIONS and ap.channels == 1
            )
        _assert_clean(result.raw, "hello")
    elif isinstance(result, msgs.Listen):
        assert result.state in msgs.LISTEN_STATES and (result.mode is None or result.mode in msgs.LISTEN_MODES)
        _assert_clean([result.text, result.session_id], "listen")
    elif isinstance(result, msgs.Abort):
        _assert_clean([result.reason, result.session_id], "abort")
    elif isinstance(result, msgs.Mcp):
        assert result.payload.get("jsonrpc") == "2.0"
        _assert_clean(result.payload, "mcp payload")
    elif isinstance(result, msgs.Iot):
        for items in (result.descriptors, result.states):
            assert items is None or all(isinstance(i, dict) for i in items)
        _assert_clean([result.descriptors, result.states, result.session_id], "iot")


def check_client_text(data: str | bytes) -> str:
    """Any text frame: a documented message type, or ProtocolError with a known code and a message."""
    try:
        result = msgs.parse_client_message(data)
    except ProtocolError as exc:
        assert exc.code in perr.CODES, f"unknown ProtocolError code {exc.code!r}"
        assert exc.message.strip(), "ProtocolError without a message"
        return _rejected(exc)
    _client_result_ok(result)
    return f"ok:{type(result).__name__}"


def _check_near_valid_message(example: tuple[str, Expect]) -> str:
    text, expect = example
    try:
        result = msgs.parse_client_message(text)
    except ProtocolError as exc:
        assert exc.code in perr.CODES and exc.message.strip(), repr(exc)
        assert expect.cls is None, f"expected a {expect.cls.__name__ if expect.cls else ''}, refused: {exc}"
        assert expect.code in (None, exc.code), f"expected {expect.code}, got {exc}"
        assert expect.names in exc.message, f"error does not name {expect.names!r}: {exc.message}"
        return _rejected(exc)
    _client_result_ok(result)
    assert expect.code is None, f"expected {expect.code}, parsed {result!r}"
    assert expect.cls is None or isinstance(result, expect.cls), f"expected {expect.cls}, parsed {result!r}"
    return f"ok:{type(result).__name__}"


def _check_valid_message(msg: dict[str, Any]) -> str:
    """A valid message parses to its type with every field as sent (the round trip)."""
    text = json.dumps(msg, ensure_ascii=False)
    for data in (text, text.encode("utf-8")):
        result = msgs.parse_client_message(data)
        assert isinstance(result, _CLASSES[msg["type"]])
        if not isinstance(result, msgs.Hello):
            assert result.session_id == (msg.get("session_id") or "")
        if isinstance(result, msgs.Hello):
            assert result.version == int(msg.get("version") or 1)
            assert result.features == {k: v for k, v in (msg.get("features") or {}).items() if isinstance(v, bool)}
            assert result.transport == (msg["transport"] if msg.get("transport") is not None else "websocket")
            params = msg.get("audio_params")
            if params is None:
                assert result.audio_params is None
            else:
                assert result.audio_params is not None
                assert result.audio_params.sample_rate == params.get("sample_rate", 16000)
                assert result.audio_params.frame_duration == params.get("frame_duration", 60)
        elif isinstance(result, msgs.Listen):
            assert (result.state, result.mode, result.text) == (msg["state"], msg.get("mode"), msg.get("text"))
        elif isinstance(result, msgs.Abort):
            assert result.reason == msg.get("reason")
        elif isinstance(result, msgs.Mcp):
            assert result.payload == msg["payload"]
        elif isinstance(result, msgs.Iot):
            assert result.update == bool(msg.get("update"))
            for key in ("descriptors", "states"):
                sent = msg.get(key)
                got = getattr(result, key)
                assert got == (None if sent is None else [d for d in sent if isinstance(d, dict)])
    return f"ok:{_CLASSES[msg['type']].__name__}"


# Raw-text mutations of valid messages: truncation, inserted bytes, surrogate escapes, BOMs ...
@st.composite
def _raw_mutated_message(draw: st.DrawFn) -> str | bytes:
    text = json.dumps(draw(VALID_CLIENT_MESSAGES), ensure_ascii=draw(st.booleans()))
    op = draw(st.sampled_from(["truncate", "insert", "delete", "replace", "surrogate", "bom", "bytes", "dupkey"]))
    pos = draw(st.integers(0, len(text)))
    if op == "truncate":
        return text[:pos]
    if op == "insert":
        return text[:pos] + draw(st.text(min_size=1, max_size=4) | st.sampled_from(list('{}[]",:\\'))) + text[pos:]
    if op == "delete":
        return text[:pos] + text[pos + draw(st.integers(1, 5)) :]
    if op == "replace" and text:
        return text[:pos] + draw(st.characters()) + text[pos + 1 :]
    if op == "surrogate":
        # Valid JSON escapes for unpaired (or paired) UTF-16 surrogates, inside a string value.
        escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\ude00\\ud83d", "\\uDBFF"]))
        key = draw(st.sampled_from(["session_id", "text", "reason", "zz"]))
        obj = json.loads(text)
        obj[key] = "@S@"
        return json.dumps(obj).replace("@S@", "a" + escape + "b")
    if op == "bom":
        return "\ufeff" + text
    if op == "bytes":
        raw = text.encode("utf-8")
        return raw[:pos] + draw(st.binary(min_size=1, max_size=4)) + raw[pos:]
    return text[:-1] + ', "type": ' + json.dumps(draw(st.text(max_size=8))) + "}" if text.endswith("}") else text


# Messages whose values travel past the parser into the session (IoT state, MCP replies, detect
# text, audio parameters), with JSON literals json.dumps never writes: overflowing floats, huge
# integers, NaN, lone-surrogate escapes. Fuzzing found two session crashes this way.
_HOSTILE_TEMPLATES = [
    '{"type":"iot","update":true,"states":[{"name":"Speaker","state":{"volume":@N@}}]}',
    '{"type":"iot","states":[{"name":"Screen","state":{"brightness":@N@,"theme":@S@}}]}',
    '{"type":"iot","update":true,"descriptors":[{"name":@S@,"description":@S@,'
    '"methods":{"SetVolume":{"parameters":{"volume":{"type":"number"}}}}}]}',
    '{"type":"listen","state":"detect","text":@S@}',
    '{"type":"listen","state":"start","mode":"manual","session_id":@S@}',
    '{"type":"abort","reason":@S@}',
    '{"type":"hello","version":@N@,"transport":"websocket","audio_params":{"sample_rate":@N@,"frame_duration":@N@}}',
    '{"type":"hello","version":1,"transport":"websocket","features":{"mcp":true,@S@:true}}',
    '{"type":"mcp","payload":{"jsonrpc":"2.0","id":@N@,"result":{"protocolVersion":@S@,"serverInfo":{"name":@S@}}}}',
    '{"type":"mcp","payload":{"jsonrpc":"2.0","id":@N@,"result":{"tools":[{"name":@S@,"description":@S@,'
    '"inputSchema":{"type":"object"}}],"nextCursor":@S@}}}',
    '{"type":"mcp","payload":{"jsonrpc":"2.0","id":@N@,"error":{"code":@N@,"message":@S@}}}',
    '{"type":"mcp","payload":{"jsonrpc":"2.0","method":"notifications/state_changed","params":{"v":@N@}}}',
    '{"type":"ping","session_id":@S@}',
]
_HOSTILE_NUMBERS = [
    "1",
    "2",
    "3",
    "0",
    "-1",
    "60",
    "16000",
    "1e999",
    "-1e999",
    "1E400",
    "1e308",
    "-0",
    "2.5",
    "9" * 400,
    "123456789012345678901234567890",
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "null",
    '"60"',
    "[]",
    "{}",
]
_HOSTILE_STRINGS = [
    '"\\ud800"',
    '"a\\udfffb"',
    '"\\ud83d\\ude00"',
    '"\\ude00\\ud83d"',
    '"\\u0000"',
    '""',
    '"\\\\ud800"',
    '"what time is it"',
    json.dumps("x" * 5000),
    "1",
    "null",
    "[]",
]


@st.composite
def hostile_client_message(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_HOSTILE_TEMPLATES))
    while "@N@" in text or "@S@" in text:
        if "@N@" in text:
            text = text.replace("@N@", draw(st.sampled_from(_HOSTILE_NUMBERS)), 1)
        if "@S@" in text:
            text = text.replace("@S@", draw(st.sampled_from(_HOSTILE_STRINGS)), 1)
    return text


def client_frames() -> st.SearchStrategy[str | bytes]:
    """Every kind of text frame the fuzzers send: random, JSON-ish, near-valid, raw-mutated, hostile."""
    return st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200),
        JSON_VALUES.map(json.dumps),
        near_valid_client_message().map(lambda e: e[0]),
        _raw_mutated_message(),
        hostile_client_message(),
    )


# --------------------------------------------------------------------------------------------------
# binary audio framing (shared/protocol/framing.py), oracle from docs/protocol.md §2.7


def _expected_frame(frame: bytes, version: int) -> framing.AudioFrame | None:
    if version == 1:
        return framing.AudioFrame(frame) if frame else None
    if version == 2:
        if len(frame) < 16:
            return None
        _v, kind, _r, ts, size = struct.unpack(">HHIII", frame[:16])
        ok = kind in (0, 1) and size == len(frame) - 16 and size > 0
        return framing.AudioFrame(frame[16:], ts, kind == 1) if ok else None
    if len(frame) < 4:
        return None
    size = int.from_bytes(frame[2:4], "big")
    return framing.AudioFrame(frame[4:]) if size == len(frame) - 4 and size > 0 else None


def _check_frame(example: tuple[bytes, int]) -> str:
    frame, version = example
    expected = _expected_frame(frame, version)
    try:
        got = framing.unpack_audio(frame, version)
    except ProtocolError as exc:
        assert exc.code == perr.BAD_FRAME, f"framing raised {exc.code}, not bad_frame"
        assert expected is None, f"v{version} frame refused ({exc}) but it is valid per docs/protocol.md §2.7"
        return _rejected(exc)
    assert got == expected, f"v{version}: got {got!r}, docs/protocol.md §2.7 says {expected!r}"
    return f"ok:v{version}{'-json' if got.is_json else ''}"


@st.composite
def _near_valid_frame(draw: st.DrawFn) -> tuple[bytes, int]:
    version = draw(st.sampled_from(framing.VERSIONS))
    payload = draw(st.binary(min_size=1, max_size=400))
    frame = bytearray(framing.pack_audio(payload, version, draw(st.integers(0, 2**32 - 1))))
    op = draw(st.sampled_from(["none", "truncate", "append", "flip", "size", "type"]))
    if op == "truncate":
        del frame[len(frame) - draw(st.integers(1, len(frame))) :]
    elif op == "append":
        frame += draw(st.binary(min_size=1, max_size=8))
    elif op == "flip":
        i = draw(st.integers(0, min(len(frame), 20) - 1))
        frame[i] ^= draw(st.integers(1, 255))
    elif op == "size" and version > 1:
        size = draw(st.integers(0, 2**32 - 1 if version == 2 else 0xFFFF))
        frame[12 if version == 2 else 2 : 16 if version == 2 else 4] = size.to_bytes(4 if version == 2 else 2, "big")
    elif op == "type" and version == 2:
        frame[2:4] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    return bytes(frame), version


def _check_frame_round_trip(example: tuple[bytes, int, int]) -> str:
    payload, version, timestamp = example
    try:
        packed = framing.pack_audio(payload, version, timestamp)
    except ValueError as exc:  # the documented refusals: empty, too big for v3, timestamp beyond u32
        assert (
            not payload
            or (version == 3 and len(payload) > framing.MAX_V3_PAYLOAD)
            or (version == 2 and not 0 <= timestamp <= 0xFFFFFFFF)
        ), f"pack_audio refused a packable payload: {exc}"
        return _rejected(exc)
    got = framing.unpack_audio(packed, version)
    assert got == framing.AudioFrame(payload, timestamp if version == 2 else 0, False)
    return f"ok:v{version}"


# --------------------------------------------------------------------------------------------------
# MCP payloads (shared/protocol/mcp.py)

_IDS = st.one_of(st.integers(0, 2**31 - 1), st.none(), st.sampled_from([1.0, -1, 2**40]), _wrong_type("number"))


def _mcp_payload_strategy() -> st.SearchStrategy[Any]:
    response = st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "id": _IDS},
        optional={
            "result": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3) | JSON_VALUES,
            "error": st.fixed_dictionaries(
                {},
                optional={
                    "code": st.integers() | JSON_SCALARS,
                    "message": st.text(max_size=20) | JSON_SCALARS,
                    "data": JSON_VALUES,
                },
            )
            | JSON_VALUES,
        },
    )
    notification = st.fixed_dictionaries(
        {
            "jsonrpc": st.just("2.0"),
            "method": st.sampled_from(["notifications/state", "tools/list", ""]) | JSON_SCALARS,
        },
        optional={"params": JSON_VALUES, "id": _IDS},
    )
    valid = st.one_of(
        st.fixed_dictionaries(
            {
                "jsonrpc": st.just("2.0"),
                "id": st.integers(0, 2**31 - 1) | st.none(),
                "result": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
            }
        ),
        st.fixed_dictionaries(
            {
                "jsonrpc": st.just("2.0"),
                "id": st.integers(0, 2**31 - 1),
                "error": st.fixed_dictionaries(
                    {}, optional={"code": st.integers(-33000, 0), "message": st.text(max_size=20)}
                ),
            }
        ),
        st.fixed_dictionaries(
            {"jsonrpc": st.just("2.0"), "method": st.text(max_size=12).map(lambda m: "notifications/" + m)},
            optional={"params": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)},
        ),
    )
    near = (valid | response | notification).flatmap(
        lambda p: st.sampled_from(sorted(p)).flatmap(
            lambda k: st.one_of(
                st.just({**p}),
                st.just({key: v for key, v in p.items() if key != k}),
                JSON_VALUES.map(lambda v: {**p, k: v}),
            )
        )
    )
    return valid | near | JSON_VALUES


def _check_mcp_payload(payload: Any) -> str:
    try:
        parsed = mcp.parse_payload(payload)
    except ProtocolError as exc:
        assert exc.code == perr.BAD_FIELD and exc.message.startswith("MCP payload:"), repr(exc)
        return _rejected(exc)
    assert isinstance(payload, dict) and payload.get("jsonrpc") == "2.0", "accepted a payload without jsonrpc 2.0"
    if isinstance(parsed, mcp.McpNotification):
        assert isinstance(parsed.method, str) and parsed.method.startswith("notifications")
        assert isinstance(parsed.params, dict)
        return "ok:notification"
    assert isinstance(parsed, mcp.McpResponse), f"unexpected result {parsed!r}"
    assert (parsed.result is None) != (parsed.error is None), "a response needs exactly one of result and error"
    assert parsed.id is None or (type(parsed.id) is int), f"id {parsed.id!r}"
    if parsed.error is not None:
        assert isinstance(parsed.error.code, int) and isinstance(parsed.error.message, str) and parsed.error.message
        return "ok:error"
    assert isinstance(parsed.result, dict)
    return "ok:result"


# Well-formed tools / IoT things (what firmware sends), and entries with any field missing or junk.
_GOOD_ENTRY = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=20)},
    optional={
        "description": st.text(max_size=20),
        "inputSchema": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
        "properties": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
        "methods": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3),
    },
)
_TOOL_ENTRY = (
    _GOOD_ENTRY
    | st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=20) | JSON_SCALARS,
            "description": st.text(max_size=20) | JSON_SCALARS,
            "inputSchema": JSON_VALUES,
            "properties": JSON_VALUES,
            "methods": JSON_VALUES,
        },
    )
    | JSON_SCALARS
)
_TOOLS_RESULT = (
    st.fixed_dictionaries(
        {"tools": st.lists(_GOOD_ENTRY | _TOOL_ENTRY, min_size=1, max_size=6)},
        optional={"nextCursor": st.text(max_size=8)},
    )
    | st.fixed_dictionaries(
        {},
        optional={
            "tools": st.lists(_TOOL_ENTRY, max_size=6) | JSON_VALUES,
            "nextCursor": st.text(max_size=8) | JSON_SCALARS,
        },
    )
    | JSON_VALUES
)


def _check_tools_list(result: Any) -> str:
    try:
        tools, cursor = mcp.parse_tools_list(result)
    except ProtocolError as exc:
        assert exc.code == perr.BAD_FIELD, repr(exc)
        return _rejected(exc)
    assert isinstance(result, dict)
    raw = result.get("tools") or []
    want = [t["name"] for t in raw if isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"]]
    assert [t.name for t in tools] == want, "tools/list kept or dropped the wrong entries"
    assert all(isinstance(t.description, str) and isinstance(t.input_schema, dict) for t in tools)
    assert cursor == (result.get("nextCursor") or "")
    return f"ok:{min(len(tools), 3)}+tools"


def _check_iot_descriptors(descriptors: Any) -> str:
    things = mcp.parse_iot_descriptors(descriptors)
    items = descriptors if isinstance(descriptors, list) else []
    want = [d["name"] for d in items if isinstance(d, dict) and isinstance(d.get("name"), str) and d["name"]]
    assert [t.name for t in things] == want
    assert all(isinstance(t.properties, dict) and isinstance(t.methods, dict) for t in things)
    return f"ok:{min(len(things), 3)}+things"


_CALL_RESULT = (
    st.fixed_dictionaries(
        {},
        optional={
            "content": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "type": st.sampled_from(["text", "image"]) | JSON_SCALARS,
                        "text": st.text(max_size=10) | JSON_SCALARS,
                    },
                )
                | JSON_SCALARS,
                max_size=4,
            )
            | JSON_VALUES,
            "isError": st.booleans() | JSON_SCALARS,
        },
    )
    | JSON_VALUES
)


def _check_call_result(result: Any) -> str:
    try:
        text = mcp.call_result_text(result)
    except mcp.McpError as exc:
        assert isinstance(result, dict) and result.get("isError") is True
        assert exc.message
        return "rejected:McpError"
    except ProtocolError as exc:
        assert exc.code == perr.BAD_FIELD
        return _rejected(exc)
    assert isinstance(text, str) and result.get("isError") is not True
    return "ok:text"


# --------------------------------------------------------------------------------------------------
# OTA request (shared/protocol/ota.py), oracle from docs/protocol.md §1.2/§1.3

_VALID_OTA_BODY: dict[str, Any] = {
    "version": 2,
    "language": "zh-CN",
    "flash_size": 16777216,
    "minimum_free_heap_size": "8316316",
    "mac_address": "d8:3b:da:12:34:56",
    "uuid": "9c2f0000-0000-4000-8000-000000000000",
    "chip_model_name": "esp32s3",
    "application": {"name": "xiaozhi", "version": "2.4.2", "idf_version": "v5.5"},
    "ota": {"label": "ota_0"},
    "board": {"type": "bread-compact-wifi", "name": "bread-compact-wifi", "ssid": "MyWifi"},
}
_HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)


@st.composite
def ota_request(
    draw: st.DrawFn, header_text: st.SearchStrategy[str] = _HEADER_TEXT
) -> tuple[list[tuple[str, str]], bytes]:
    """(header pairs, body) of an OTA POST: valid, near-valid (one body field changed) or junk."""
    headers: list[tuple[str, str]] = []
    device = draw(st.sampled_from(["valid", "none", "blank", "random", "long", "upper"]))
    if device != "none":
        value = {
            "valid": "d8:3b:da:12:34:56",
            "blank": "  ",
            "long": "a" * draw(st.integers(60, 70)),
            "upper": " D8:3B:DA:12:34:56 ",
        }.get(device) or draw(header_text)
        headers.append(("Device-Id", value))
    if draw(st.booleans()):
        headers.append(("User-Agent", draw(st.just("bread-compact-wifi/2.4.2") | header_text)))
    headers += draw(
        st.lists(
            st.tuples(st.sampled_from(["Client-Id", "Activation-Version", "X-Junk", "device-id"]), header_text),
            max_size=2,
        )
    )
    body_kind = draw(st.sampled_from(["valid", "mutated", "json", "bytes", "empty", "deep", "bigint"]))
    if body_kind == "valid":
        body = json.dumps(_VALID_OTA_BODY).encode()
    elif body_kind == "mutated":
        obj = json.loads(json.dumps(_VALID_OTA_BODY))
        path = draw(
            st.sampled_from(
                [("mac_address",), ("application",), ("application", "version"), ("board",), ("board", "type")]
            )
        )
        _set_path(obj, path, draw(JSON_VALUES))
        if draw(st.booleans()):
            del obj[path[0]]
        body = json.dumps(obj).encode()
    elif body_kind == "json":
        body = json.dumps(draw(JSON_VALUES)).encode()
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif body_kind == "deep":
        body = b"[" * draw(st.integers(1_000, 60_000))
    elif body_kind == "bigint":
        body = b'{"version": ' + b"7" * draw(st.integers(4_301, 6_000)) + b"}"
    else:
        body = b""
    return headers, body


def expected_ota(headers: CIMultiDict[str], raw: bytes) -> tuple[str, str, str] | None:
    """(device id, firmware, board) per docs/protocol.md §1.2/§1.3, or None when the request cannot be answered."""
    body: Any = {}
    if raw:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(body, dict):
            return None
    device = (headers.get("Device-Id") or "").strip().lower()
    if not device and isinstance(body.get("mac_address"), str):
        device = body["mac_address"].strip().lower()
    if not device or len(device) > MAX_DEVICE_ID:
        return None
    ua_board, _, ua_version = (headers.get("User-Agent") or "").partition("/")
    app = body.get("application")
    firmware = app["version"] if isinstance(app, dict) and isinstance(app.get("version"), str) else ua_version
    board_info = body.get("board")
    board = board_info["type"] if isinstance(board_info, dict) and isinstance(board_info.get("type"), str) else ua_board
    return device, firmware.strip(), board.strip()


def _check_ota(example: tuple[list[tuple[str, str]], bytes]) -> str:
    pairs, raw = example
    headers: CIMultiDict[str] = CIMultiDict(pairs)  # what aiohttp hands the parser: case-insensitive
    expected = expected_ota(headers, raw)
    try:
        got = parse_ota_request(headers, raw)
    except OtaRequestError as exc:
        assert expected is None, f"refused ({exc}) but docs/protocol.md §1 makes it {expected}"
        return _rejected(exc)
    assert isinstance(got, OtaRequest)
    assert (got.device_id, got.firmware, got.board) == expected, f"got {got!r}, expected {expected}"
    return "ok:OtaRequest"


# --------------------------------------------------------------------------------------------------
# routing config (shared/routing_config.py)

VALID_ROUTING: dict[str, Any] = {
    "version": 1,
    "order": ["intent", "cache", "llm"],
    "llm": {
        "default": "local_llm",
        "rules": [
            {"name": "not-english", "when": {"language": ["zh", "ja", "ko"]}, "route": "cloud"},
            {"name": "open-question", "when": {"complexity_at_least": 0.6}, "route": "cloud"},
            {"name": "fresh-facts", "when": {"keywords": ["weather", "news"]}, "route": "cloud"},
        ],
        "overflow": {"llm_queue_depth_at_least": 2, "route": "cloud"},
    },
    "complexity": {"long_words": 16, "question_words": {"why": 0.3, "how": 0.2}, "keywords": {"story": 0.3}},
    "routes": {
        "cloud": {
            "accept_timeout_s": 1.0,
            "first_token_timeout_s": 4.0,
            "chunk_timeout_s": 3.0,
            "retries": 1,
            "max_tokens": 256,
            "breaker": {"failures": 3, "open_s": 30},
        },
        "local_llm": {"first_token_timeout_s": 20.0},
    },
    "fallback": {"cloud": ["local_llm", "apology"], "local_llm": ["apology"]},
    "asr": {"cloud": "low_confidence", "min_avg_logprob": -1.0},
}


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


_ROUTING_PATHS = _paths(VALID_ROUTING)
# The only keys without a default: a rule's name and route.
_ROUTING_REQUIRED = {"name", "route"}


@st.composite
def _mutated_routing(draw: st.DrawFn) -> tuple[Any, str, tuple[Any, ...], bool]:
    """(config as dict or YAML, mutation, path it touched, must it still be valid)."""
    cfg = json.loads(json.dumps(VALID_ROUTING))
    path = draw(st.sampled_from(_ROUTING_PATHS))
    parent: Any = cfg
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    op = draw(st.sampled_from(["drop", "wrong", "extra", "none"]))
    must_be_valid = False
    if op == "drop":
        del parent[last]
        # Every key has a default but a rule's name and route; order must keep "llm".
        required = path[:2] == ("llm", "rules") and len(path) == 4 and last in _ROUTING_REQUIRED
        must_be_valid = not required and "llm" in cfg.get("order", ["llm"])
        if isinstance(last, int):
            path = path[:-1]  # a list lost an element: its validator speaks of the list
    elif op == "wrong":
        parent[last] = draw(JSON_VALUES)
    elif op == "extra" and isinstance(parent, dict):
        key = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in parent))
        parent[key] = draw(JSON_VALUES)
        path = (*path[:-1], key)
    else:
        op, must_be_valid = "none", True
    as_yaml = draw(st.booleans())
    data: Any = yaml.safe_dump(cfg, allow_unicode=draw(st.booleans())) if as_yaml else cfg
    return data, op, path, must_be_valid


def _check_routing_mutation(example: tuple[Any, str, tuple[Any, ...], bool]) -> str:
    data, op, path, must_be_valid = example
    try:
        policy = parse_routing(data, "fuzz")
    except RoutingConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz: "), message
        assert not must_be_valid, f"a valid config ({op} {path}) was refused: {message}"
        # The error names the key path it is about: the mutated key, or a container above it
        # whose own validator (unique names, chains, order) refused it.
        names = [".".join(str(p) for p in path[:n]) for n in range(len(path), 0, -1)]
        assert any(f"{n}:" in message or f"{n} " in message or f"{n}." in message for n in names), (
            f"error does not name {'.'.join(map(str, path))} or a parent: {message}"
        )
        return f"rejected:{op}"
    assert isinstance(policy, RoutingPolicy)
    return f"ok:{op}"


_YAML_TEXT = st.one_of(
    st.text(max_size=200),
    st.text(st.sampled_from(list("abcdefloruvw_01.-:[]{},&*!|>'\"#? \n\t")), max_size=200),
    JSON_VALUES.map(lambda v: yaml.safe_dump(v)),
    st.dictionaries(st.sampled_from([*VALID_ROUTING, "x"]), JSON_VALUES, max_size=4).map(yaml.safe_dump),
    st.binary(max_size=100),
    st.integers(1_000, 20_000).map(lambda n: "order: " + "[" * n),
)


def _check_routing_text(data: str | bytes) -> str:
    try:
        policy = parse_routing(data, "fuzz")
    except RoutingConfigError as exc:
        assert str(exc).startswith("fuzz: "), str(exc)
        return _rejected(exc)
    assert isinstance(policy, RoutingPolicy)
    return "ok:RoutingPolicy"


# --------------------------------------------------------------------------------------------------
# NATS messages: heartbeats, chat requests, ASR requests, streamed replies


_HEARTBEAT = st.tuples(
    st.one_of(
        st.from_regex(r"\Axz\.fleet\.heartbeat\.[A-Za-z0-9_-]{1,20}\Z"),
        st.text(max_size=40).map(lambda t: f"{s.HEARTBEAT_PREFIX}.{t}"),
        st.text(max_size=40),
    ),
    st.one_of(
        st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4).map(lambda d: json.dumps(d).encode()),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=100),
        st.integers(1_000, 30_000).map(lambda n: b"[" * n),
    ),
)


def _check_heartbeat(example: tuple[str, bytes]) -> str:
    subject, data = example
    try:
        edge, beat = parse_heartbeat(subject, data)
    except HeartbeatError as exc:
        return _rejected(exc)
    assert subject == f"{s.HEARTBEAT_PREFIX}.{edge}" and edge and s.safe_token(edge) == edge
    assert isinstance(beat, dict) and json.dumps(beat) == json.dumps(json.loads(data))
    return "ok:heartbeat"


_CHAT_MESSAGE = (
    st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["system", "user", "assistant", "tool"]) | JSON_SCALARS,
            "content": st.text(max_size=20) | JSON_SCALARS,
        },
    )
    | JSON_SCALARS
)
_CHAT_NUMBERS = st.one_of(st.integers(-3, 10**6), st.floats(), st.sampled_from([10**400, True, 0, 1, 0.0]), JSON_VALUES)


_VALID_CHAT = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=20)}
            ),
            min_size=1,
            max_size=4,
        )
    },
    optional={"max_tokens": st.integers(1, 10**6), "temperature": st.floats(0, 2) | st.integers(0, 2)},
)


@st.composite
def _chat_request(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=80) | st.integers(1_000, 30_000).map(lambda n: b"[" * n))
    body = draw(_VALID_CHAT)
    op = draw(st.sampled_from(["none", "drop", "field", "message", "add_message"]))
    if op == "drop":
        del body[draw(st.sampled_from(sorted(body)))]
    elif op == "field":
        body[draw(st.sampled_from(["messages", "max_tokens", "temperature"]))] = draw(_CHAT_NUMBERS)
    elif op == "message":
        i = draw(st.integers(0, len(body["messages"]) - 1))
        body["messages"][i] = draw(_CHAT_MESSAGE)
    elif op == "add_message":
        body["messages"].append(draw(_CHAT_MESSAGE))
    return json.dumps(body).encode()  # allow_nan: NaN/Infinity reach the worker as Python's json writes them


def _expected_chat(body: bytes, cap: int) -> tuple[list[dict[str, str]], int, float] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list) or not data["messages"]:
        return None
    out = []
    for m in data["messages"]:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            return None
        if not isinstance(m.get("content"), str):
            return None
        out.append({"role": m["role"], "content": m["content"]})
    tokens, temp = data.get("max_tokens", 128), data.get("temperature", 0.3)
    if type(tokens) is not int or tokens < 1:
        return None
    if type(temp) not in (int, float) or not (0 <= temp <= 1e6 if type(temp) is int else 0 <= temp < math.inf):
        return None
    return out, min(tokens, cap), float(temp)


def _check_chat_request(body: bytes) -> str:
    expected = _expected_chat(body, 64)
    try:
        got = parse_chat_request(body, 64)
    except LlmRequestError as exc:
        assert expected is None, f"refused ({exc}) a request that is valid: {expected}"
        return _rejected(exc)
    assert got == expected, f"got {got}, expected {expected}"
    assert math.isfinite(got[2]) and 1 <= got[1] <= 64
    return "ok:chat"


def _check_pcm_request(example: tuple[bytes, float]) -> str:
    body, max_s = example
    try:
        pcm = decode_pcm_request(body, max_s)
    except AsrRequestError as exc:
        assert not body or len(body) % 2 or len(body) // 2 > max_s * 16000, f"refused valid PCM: {exc}"
        return _rejected(exc)
    assert pcm.dtype == np.int16 and pcm.size == len(body) // 2 <= max_s * 16000 and body
    assert pcm.tobytes() == np.frombuffer(body, dtype="<i2").astype(np.int16).tobytes()
    return "ok:pcm"


# -- streamed replies: request_stream against a fake NATS client that never blocks


class _Msg:
    def __init__(self, data: bytes, headers: dict[str, str] | None) -> None:
        self.data = data
        self.headers = headers


class _Sub:
    def __init__(self, msgs: list[_Msg]) -> None:
        self._msgs = list(msgs)

    async def next_msg(self, **_options: Any) -> _Msg:
        if not self._msgs:
            raise nats.errors.TimeoutError
        return self._msgs.pop(0)

    async def unsubscribe(self) -> None:
        return None


class _FakeNc:
    def __init__(self, ack: _Msg | Exception, msgs: list[_Msg]) -> None:
        self.ack = ack
        self.msgs = msgs
        self.published: list[str] = []

    def new_inbox(self) -> str:
        return "_INBOX.fuzz"

    async def subscribe(self, subject: str, pending_msgs_limit: int = 0) -> _Sub:
        return _Sub(self.msgs)

    async def request(self, subject: str, body: bytes, **_options: Any) -> _Msg:
        if isinstance(self.ack, Exception):
            raise self.ack
        return self.ack

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.published.append(subject)


_TURN, _GEN = "turn-1", 7
_HDR_VALUE = st.text(max_size=6)
_CHUNK_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        s.H_TURN: st.sampled_from([_TURN, _TURN, _TURN, "turn-0"]) | _HDR_VALUE,
        s.H_GEN: st.sampled_from([str(_GEN), str(_GEN), str(_GEN), "6"]) | _HDR_VALUE,
        s.H_SEQ: st.integers(0, 6).map(str) | _HDR_VALUE | st.just("9" * 5000),
        s.H_END: st.sampled_from(["1", ""]),
        s.H_ERROR: st.text(max_size=10),
    },
)


@st.composite
def _stream_messages(draw: st.DrawFn) -> list[_Msg]:
    """The chunks a worker sends (1..n, then the end marker), with at most one thing gone wrong."""
    n = draw(st.integers(0, 4))
    headers = [{s.H_TURN: _TURN, s.H_GEN: str(_GEN), s.H_SEQ: str(i + 1)} for i in range(n + 1)]
    headers[-1][s.H_END] = "1"
    if draw(st.integers(0, 3)) == 0:
        headers[-1][s.H_ERROR] = draw(st.text(min_size=1, max_size=10))
    out = [_Msg(draw(st.binary(max_size=12)), h) for h in headers[:-1]]
    summary = json.dumps({"worker": "w", "chunks": n}).encode() if draw(st.integers(0, 4)) else b"[" * 50_000
    out.append(_Msg(summary, headers[-1]))
    op = draw(st.sampled_from(["none", "drop", "duplicate", "swap", "header", "foreign", "cut"]))
    i = draw(st.integers(0, len(out) - 1))
    if op == "drop":
        del out[i]
    elif op == "duplicate":
        out.insert(i, out[i])
    elif op == "swap" and len(out) > 1:
        j = draw(st.integers(0, len(out) - 1))
        out[i], out[j] = out[j], out[i]
    elif op == "header":
        h = dict(out[i].headers or {})
        h[draw(st.sampled_from([s.H_TURN, s.H_GEN, s.H_SEQ, s.H_END, s.H_ERROR]))] = draw(_HDR_VALUE)
        out[i] = _Msg(out[i].data, h)
    elif op == "foreign":
        out.insert(i, draw(st.tuples(_CHUNK_HEADERS, st.binary(max_size=12)).map(lambda t: _Msg(t[1], t[0] or None))))
    elif op == "cut":
        del out[i:]
    return out


_STREAM = st.tuples(
    st.one_of(
        st.just(_Msg(b"", {s.H_WORKER: "w1"})),
        st.sampled_from(
            [nats.errors.NoRespondersError(), nats.errors.TimeoutError(), nats.errors.ConnectionClosedError()]
        ),
        st.dictionaries(
            st.sampled_from([s.H_WORKER, "Nats-Service-Error-Code", "Nats-Service-Error"]),
            st.text(max_size=8),
            max_size=2,
        ).map(lambda h: _Msg(b"", h or None)),
    ),
    _stream_messages()
    | st.lists(
        st.tuples(
            _CHUNK_HEADERS.map(lambda h: h or None),
            st.binary(max_size=20) | JSON_VALUES.map(lambda v: json.dumps(v).encode()) | st.just(b"[" * 50_000),
        ).map(lambda t: _Msg(t[1], t[0])),
        max_size=8,
    ),
)


def _expected_stream(ack: _Msg | Exception, messages: list[_Msg]) -> tuple[list[bytes], type | None, bool]:
    """(chunks, error class, reached the end marker) by the protocol in shared/nats/streaming.py's docstring."""
    if isinstance(ack, nats.errors.NoRespondersError | nats.errors.ConnectionClosedError):
        return [], RemoteUnavailable, False
    if isinstance(ack, Exception):
        return [], RemoteTimeout, False
    if "Nats-Service-Error-Code" in (ack.headers or {}):
        return [], RemoteFailed, False
    expected, chunks = 1, []
    for msg in messages:
        h = msg.headers or {}
        if h.get(s.H_GEN) != str(_GEN) or h.get(s.H_TURN) != _TURN:
            continue
        try:
            seq = int(h.get(s.H_SEQ, "0"))
        except ValueError:
            seq = 0
        if seq < expected:
            continue
        if seq > expected:
            return chunks, RemoteFailed, False
        expected += 1
        if h.get(s.H_END):
            return chunks, RemoteFailed if h.get(s.H_ERROR) else None, True
        chunks.append(msg.data)
    return chunks, RemoteTimeout, False


def _check_stream(example: tuple[_Msg | Exception, list[_Msg]]) -> str:
    ack, messages = example
    nc = _FakeNc(ack, messages)
    agen = request_stream(nc, s.CLOUD_LLM, b"{}", turn_id=_TURN, gen=_GEN)  # type: ignore[arg-type]
    chunks: list[bytes] = []
    error: BaseException | None = None
    while True:
        try:
            chunks.append(_run_sync(agen.__anext__()))
        except StopAsyncIteration:
            break
        except RemoteError as exc:
            error = exc
            break
    want_chunks, want_error, ended = _expected_stream(ack, messages)
    assert chunks == want_chunks, f"yielded {chunks}, the protocol says {want_chunks}"
    got_error = None if error is None else type(error)
    assert got_error is want_error, f"ended with {error!r}, the protocol says {want_error}"
    if error is not None:
        assert str(error) and error.stage in ("accept", "first_chunk", "stream")
    # A stream that did not reach its end marker tells the worker to stop (barge-in, failure).
    assert (s.cancel_subject(_TURN) in nc.published) == (not ended), "cancel published iff the stream did not end"
    return _rejected(error) if error is not None else f"ok:{min(len(chunks), 3)}+chunks"


# -- cache entries from the fleet KV


def _check_packets(data: bytes) -> str:
    try:
        packets = unpack_packets(data)
    except ValueError as exc:
        assert str(exc).startswith("packed packets:"), str(exc)
        return _rejected(exc)
    assert pack_packets(packets) == data, "unpack accepted a value that is not the packing of what it returned"
    return f"ok:{min(len(packets), 3)}+packets"


@st.composite
def _packed(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=60))
    data = bytearray(pack_packets(draw(st.lists(st.binary(max_size=30), max_size=6))))
    op = draw(st.sampled_from(["none", "truncate", "append", "count", "flip"]))
    if op == "truncate" and data:
        del data[draw(st.integers(0, len(data) - 1)) :]
    elif op == "append":
        data += draw(st.binary(min_size=1, max_size=6))
    elif op == "count":
        data[0:4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
    elif op == "flip" and data:
        data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    return bytes(data)


class _Entry:
    def __init__(self, value: bytes) -> None:
        self.value = value


class _Kv:
    def __init__(self, value: bytes | Exception) -> None:
        self.value = value

    async def get(self, key: str) -> _Entry:
        if isinstance(self.value, Exception):
            raise self.value
        return _Entry(self.value)


class _Js:
    def __init__(self, kv: _Kv) -> None:
        self.kv = kv

    async def key_value(self, bucket: str) -> _Kv:
        return self.kv


class _Nc:
    is_connected = True

    def __init__(self, kv: _Kv) -> None:
        self.js = _Js(kv)

    def jetstream(self, timeout: float, domain: str) -> _Js:
        return self.js


class _Link:
    def __init__(self, kv: _Kv) -> None:
        self.nc = _Nc(kv)


_TTL_S = 3600.0


@st.composite
def _kv_answer(draw: st.DrawFn) -> tuple[bytes | Exception, str]:
    question = draw(st.text(max_size=30))
    kind = draw(st.sampled_from(["answer", "bytes", "error"]))
    if kind == "error":
        return draw(
            st.sampled_from(
                [
                    nats.js.errors.KeyNotFoundError(),
                    nats.errors.TimeoutError(),
                    OSError("down"),
                    nats.errors.ConnectionClosedError(),
                ]
            )
        ), question
    if kind == "bytes":
        return draw(st.binary(max_size=40)), question
    age = draw(st.sampled_from([-1e9, -400.0, -200.0, 0.0, 10.0, _TTL_S - 10, _TTL_S + 10, 1e9, math.nan, math.inf]))
    text = draw(st.text(max_size=20)).encode() if draw(st.booleans()) else draw(st.binary(max_size=20))
    return encode_answer("", time.time() - age) + text, question


def _check_kv_answer(example: tuple[bytes | Exception, str]) -> str:
    """An answer entry read from the fleet KV (L2): a fresh, readable answer or a miss; never raises."""
    value, question = example
    cache = AnswerCache(LruCache(1 << 20), None, _TTL_S)
    try:
        cache.tiered.l2 = KvCacheLevel(_Link(_Kv(value)), "xz_cache_answer", 60)  # type: ignore[arg-type]
        got = _run_sync(cache.get(question))
    finally:
        cache.close()
    if isinstance(value, Exception):
        assert got is None
        return f"miss:{type(value).__name__}"
    want: str | None = None
    if len(value) >= 8:
        (stored_at,) = struct.unpack_from("<d", value)
        age = time.time() - stored_at
        try:
            text = value[8:].decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if -300 <= age <= _TTL_S and text:
            want = text
        if min(abs(age + 300), abs(age - _TTL_S)) < 5:  # on the boundary the clock decides
            return "ok:boundary"
    assert got == want, f"L2 value {value!r} read as {got!r}, expected {want!r}"
    return "ok:hit" if got is not None else "ok:miss"


# -- firmware versions in OTA requests (provisioning/firmware.py)


def _check_version(text: str) -> str:
    parts = parse_version(text)
    assert len(parts) == len(text.strip().split("."))
    assert all(type(p) is int and 0 <= p <= 2**31 - 1 for p in parts)
    return f"ok:{min(len(parts), 4)}parts"


_VERSION_TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.integers(0, 10**12).map(str) | st.text("0123456789²³¹٣۳-rc.", max_size=6), max_size=5).map(".".join),
    st.integers(4_300, 6_000).map(lambda n: "1." + "9" * n),
)


# --------------------------------------------------------------------------------------------------
# the registry


def _unstructured_text(data: str | bytes) -> str:
    return check_client_text(data)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target(
            "messages.random",
            st.text(max_size=300) | st.binary(max_size=300),
            _unstructured_text,
            "random text/bytes as a device text frame",
        ),
        Target(
            "messages.json",
            JSON_VALUES.map(json.dumps)
            | st.dictionaries(st.just("type") | st.text(max_size=5), JSON_VALUES, max_size=4).map(json.dumps),
            check_client_text,
            "random JSON values as text frames",
        ),
        Target(
            "messages.valid",
            VALID_CLIENT_MESSAGES,
            _check_valid_message,
            "valid messages of every type parse with every field as sent",
        ),
        Target(
            "messages.near_valid",
            near_valid_client_message(),
            _check_near_valid_message,
            "valid messages with one field dropped/null/wrong type/bad value/huge",
        ),
        Target(
            "messages.raw_mutated",
            _raw_mutated_message(),
            check_client_text,
            "valid messages truncated, spliced, with surrogate escapes, BOMs, bad UTF-8",
        ),
        Target(
            "messages.hostile",
            hostile_client_message(),
            check_client_text,
            "messages whose values reach the session, with 1e999, NaN, huge ints, lone surrogates",
        ),
        Target(
            "framing.random",
            st.tuples(st.binary(max_size=300), st.sampled_from(framing.VERSIONS)),
            _check_frame,
            "random binary frames for v1/v2/v3",
        ),
        Target("framing.near_valid", _near_valid_frame(), _check_frame, "packed frames truncated/extended/bit-flipped"),
        Target(
            "framing.round_trip",
            st.tuples(st.binary(max_size=1500), st.sampled_from(framing.VERSIONS), st.integers(-1, 2**32)),
            _check_frame_round_trip,
            "pack_audio -> unpack_audio gives the payload (and v2 timestamp) back",
        ),
        Target("mcp.payload", _mcp_payload_strategy(), _check_mcp_payload, "device JSON-RPC payloads"),
        Target("mcp.tools_list", _TOOLS_RESULT, _check_tools_list, "tools/list results"),
        Target(
            "mcp.iot_descriptors",
            st.lists(_TOOL_ENTRY | JSON_VALUES, max_size=5) | JSON_VALUES,
            _check_iot_descriptors,
            "legacy IoT descriptor arrays",
        ),
        Target("mcp.call_result", _CALL_RESULT, _check_call_result, "tools/call results"),
        Target("ota.request", ota_request(), _check_ota, "OTA request headers + body (edge and provisioning)"),
        Target(
            "routing.mutated",
            _mutated_routing(),
            _check_routing_mutation,
            "the documented routing config with one key dropped/wrong/extra, as dict or YAML",
        ),
        Target("routing.text", _YAML_TEXT, _check_routing_text, "random YAML text and documents"),
        Target("nats.heartbeat", _HEARTBEAT, _check_heartbeat, "heartbeat subjects and payloads"),
        Target("nats.chat_request", _chat_request(), _check_chat_request, "cloud LLM worker chat requests"),
        Target(
            "nats.asr_request",
            st.tuples(st.binary(max_size=400), st.sampled_from([0.001, 0.005, 1.0, 30.0])),
            _check_pcm_request,
            "cloud ASR worker PCM requests",
        ),
        Target("nats.stream_reply", _STREAM, _check_stream, "streamed-reply acks and chunks (request_stream)"),
        Target("cache.packets", _packed(), _check_packets, "TTS cache entries (packed Opus packets)"),
        Target("cache.kv_answer", _kv_answer(), _check_kv_answer, "answer cache entries read from the fleet KV"),
        Target("provisioning.version", _VERSION_TEXT, _check_version, "firmware versions from OTA requests"),
    ]
}


# --------------------------------------------------------------------------------------------------
# multi-megabyte inputs: rejected or handled, fast


@dataclass(frozen=True)
class LargeInput:
    name: str
    run: Callable[[], str]


def _expect(fn: Callable[[], Any], *errors: type[BaseException]) -> str:
    try:
        fn()
    except errors as exc:
        return _rejected(exc)
    return "ok"


_MB = 1 << 20


def _large_stream() -> str:
    msgs_ = [_Msg(b"x" * 1024, {s.H_TURN: _TURN, s.H_GEN: str(_GEN), s.H_SEQ: str(i + 1)}) for i in range(4096)]
    return _check_stream((_Msg(b"", {}), msgs_))


LARGE_INPUTS: list[LargeInput] = [
    LargeInput("messages.4MB_text", lambda: check_client_text('{"type":"ping","x":"' + "y" * (4 * _MB) + '"}')),
    LargeInput("messages.4MB_bytes", lambda: check_client_text(b"\xff" * (4 * _MB))),
    LargeInput("messages.60KB_nesting", lambda: check_client_text("[" * 60_000)),
    LargeInput("framing.4MB_v1", lambda: _check_frame((b"\x01" * (4 * _MB), 1))),
    LargeInput("framing.4MB_v2", lambda: _check_frame((b"\x00" * (4 * _MB), 2))),
    LargeInput("framing.4MB_v3", lambda: _check_frame((b"\x00" * (4 * _MB), 3))),
    LargeInput("mcp.100k_tools", lambda: _check_tools_list({"tools": [{"name": f"t{i}"} for i in range(100_000)]})),
    LargeInput("mcp.200k_descriptors", lambda: _check_iot_descriptors([{"name": "x"}] * 200_000)),
    LargeInput("ota.4MB_body", lambda: _check_ota(([("Device-Id", "aa")], json.dumps({"a": ["b"] * _MB}).encode()))),
    LargeInput("ota.4MB_nesting", lambda: _check_ota(([("Device-Id", "aa")], b"[" * (4 * _MB)))),
    LargeInput("routing.3MB_yaml", lambda: _check_routing_text("k: [" + "1, " * _MB + "]")),
    LargeInput(
        "routing.alias_bomb",
        lambda: _check_routing_text(
            "x: &r {name: a, route: cloud, when: {keywords: [" + ", ".join(["a"] * 10_000) + "]}}\n"
            "llm:\n  rules: [" + ", ".join(["*r"] * 10_000) + "]\n"
        ),
    ),
    LargeInput(
        "routing.300k_key_dict",
        lambda: _expect(
            lambda: parse_routing({"complexity": {"keywords": {f"w{i}": 0.1 for i in range(300_000)}}}),
            RoutingConfigError,
        ),
    ),
    LargeInput(
        "nats.4MB_heartbeat",
        lambda: _check_heartbeat(("xz.fleet.heartbeat.e1", json.dumps({"x": "y" * (4 * _MB)}).encode())),
    ),
    LargeInput("nats.4MB_heartbeat_nesting", lambda: _check_heartbeat(("xz.fleet.heartbeat.e1", b"[" * (4 * _MB)))),
    LargeInput(
        "nats.4MB_chat_request",
        lambda: _check_chat_request(json.dumps({"messages": [{"role": "user", "content": "hi"}] * 100_000}).encode()),
    ),
    LargeInput("nats.4MB_pcm", lambda: _check_pcm_request((b"\x00" * (4 * _MB), 30.0))),
    LargeInput("nats.4MB_stream", _large_stream),
    LargeInput("cache.1MB_packets", lambda: _check_packets(pack_packets([b""] * (_MB // 2)))),
    LargeInput("cache.4MB_packets_bad_count", lambda: _check_packets(b"\xff\xff\xff\x7f" + b"\x00" * (4 * _MB))),
    LargeInput("provisioning.4MB_version", lambda: _check_version("1." + "9" * (4 * _MB))),
]

LARGE_INPUT_LIMIT_S = 5.0


def run_large_input(item: LargeInput) -> tuple[str, float]:
    started = time.perf_counter()
    outcome = item.run()
    return outcome, time.perf_counter() - started
