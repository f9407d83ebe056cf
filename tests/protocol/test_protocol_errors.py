"""Each ProtocolError code, with a message that says what was wrong."""

from __future__ import annotations

import json
import pickle

import pytest

from shared.protocol import ProtocolError, parse_client_message
from shared.protocol.errors import CODES


def _code(data: str | bytes, **kwargs: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as err:
        parse_client_message(data, **kwargs)
    return err.value


def test_error_is_value_error_with_code_and_message() -> None:
    err = ProtocolError("bad_field", "field 'x' must be a string")
    assert isinstance(err, ValueError)
    assert err.code == "bad_field"
    assert err.message == "field 'x' must be a string"
    assert str(err) == "bad_field: field 'x' must be a string"


def test_error_default_message() -> None:
    err = ProtocolError("bad_frame")
    assert err.message
    assert str(err).startswith("bad_frame: ")


def test_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(ProtocolError("oversize", "too big")))
    assert (err.code, err.message) == ("oversize", "too big")


def test_codes_listed() -> None:
    assert CODES == {
        "invalid_json",
        "not_object",
        "missing_type",
        "unknown_type",
        "bad_field",
        "oversize",
        "bad_frame",
    }


# ---- invalid_json ----------------------------------------------------------------------------------


def test_invalid_json_has_position() -> None:
    err = _code('{"type": "listen",, }')
    assert err.code == "invalid_json"
    assert "line 1 column 19" in err.message and "char 18" in err.message


def test_invalid_json_multiline_position() -> None:
    err = _code('{\n"type":\n}')
    assert err.code == "invalid_json"
    assert "line 3" in err.message


def test_invalid_utf8_bytes() -> None:
    err = _code(b'{"type":"ping","x":"\xff\xfe"}')
    assert err.code == "invalid_json"
    assert "UTF-8" in err.message and "byte 20" in err.message


@pytest.mark.parametrize("raw", ["", " ", "{", "}", "[1,", "nul", "{'type':'ping'}", '{"type":"ping"} x'])
def test_invalid_json_variants(raw: str) -> None:
    assert _code(raw).code == "invalid_json"


@pytest.mark.parametrize("raw", ['{"type":"ping","x":NaN}', '{"type":"ping","x":Infinity}', "-Infinity"])
def test_non_standard_constants_rejected(raw: str) -> None:
    err = _code(raw)
    assert err.code == "invalid_json"


def test_deep_nesting_is_invalid_json_not_crash() -> None:
    raw = "[" * 100_000 + "]" * 100_000
    err = _code(raw, max_bytes=1_000_000)
    assert err.code == "invalid_json"


def test_huge_integer_literal_is_invalid_json() -> None:
    err = _code('{"type":"ping","n":' + "9" * 5000 + "}")
    assert err.code == "invalid_json"


# ---- not_object ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [("[]", "array"), ('"hello"', "string"), ("1", "number"), ("null", "null"), ("true", "boolean")],
)
def test_not_object(raw: str, kind: str) -> None:
    err = _code(raw)
    assert err.code == "not_object"
    assert kind in err.message


# ---- missing_type ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["{}", '{"session_id":"s"}', '{"type":null}'])
def test_missing_type(raw: str) -> None:
    err = _code(raw)
    assert err.code == "missing_type"
    assert "type" in err.message


@pytest.mark.parametrize(("value", "kind"), [(1, "number"), (["hello"], "array"), ({"a": 1}, "object")])
def test_non_string_type(value: object, kind: str) -> None:
    err = _code(json.dumps({"type": value}))
    assert err.code == "missing_type"
    assert kind in err.message


# ---- unknown_type ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["server", "custom", "Hello", "LISTEN", "", "tts"])
def test_unknown_type_named(name: str) -> None:
    err = _code(json.dumps({"type": name}))
    assert err.code == "unknown_type"
    assert repr(name) in err.message


def test_unknown_type_truncated() -> None:
    name = "x" * 5000
    err = _code(json.dumps({"type": name}))
    assert err.code == "unknown_type"
    assert len(err.message) < 80
    assert "xxxx" in err.message and err.message.endswith("...")


# ---- bad_field -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ({"type": "listen"}, "state"),
        ({"type": "listen", "state": "begin"}, "state"),
        ({"type": "listen", "state": 1}, "state"),
        ({"type": "listen", "state": "start", "mode": "push"}, "mode"),
        ({"type": "listen", "state": "start", "mode": 2}, "mode"),
        ({"type": "listen", "state": "detect", "text": 5}, "text"),
        ({"type": "listen", "state": "start", "session_id": ["s"]}, "session_id"),
        ({"type": "abort", "reason": 1}, "reason"),
        ({"type": "abort", "session_id": 1}, "session_id"),
        ({"type": "mcp"}, "payload"),
        ({"type": "mcp", "payload": "x"}, "payload"),
        ({"type": "mcp", "payload": []}, "payload"),
        ({"type": "mcp", "payload": {"id": 1}}, "payload.jsonrpc"),
        ({"type": "mcp", "payload": {"jsonrpc": "1.0", "id": 1}}, "payload.jsonrpc"),
        ({"type": "mcp", "payload": {"jsonrpc": 2.0, "id": 1}}, "payload.jsonrpc"),
        ({"type": "iot", "update": "yes"}, "update"),
        ({"type": "iot", "update": 1}, "update"),
        ({"type": "iot", "descriptors": {"name": "x"}}, "descriptors"),
        ({"type": "iot", "states": "x"}, "states"),
        ({"type": "goodbye", "session_id": {}}, "session_id"),
        ({"type": "ping", "session_id": False}, "session_id"),
    ],
)
def test_bad_field_named(msg: dict[str, object], field: str) -> None:
    err = _code(json.dumps(msg))
    assert err.code == "bad_field"
    assert repr(field) in err.message


def test_bad_field_message_says_expected_and_got() -> None:
    err = _code('{"type":"listen","state":"start","mode":42}')
    assert err.message == 'field \'mode\' must be "auto", "manual" or "realtime", got number 42'


def test_bad_field_value_echo_is_bounded() -> None:
    err = _code(json.dumps({"type": "listen", "state": "s" * 10_000}))
    assert err.code == "bad_field"
    assert len(err.message) < 200


# ---- oversize --------------------------------------------------------------------------------------


def test_oversize_str() -> None:
    raw = json.dumps({"type": "ping", "pad": "x" * 70_000})
    err = _code(raw)
    assert err.code == "oversize"
    assert "65536" in err.message


def test_oversize_bytes() -> None:
    raw = json.dumps({"type": "ping", "pad": "x" * 100}).encode()
    err = _code(raw, max_bytes=50)
    assert err.code == "oversize"
    assert f"{len(raw)} bytes" in err.message


def test_oversize_counts_utf8_bytes_not_chars() -> None:
    raw = json.dumps({"type": "ping", "pad": "你" * 30}, ensure_ascii=False)
    assert len(raw) < 100 < len(raw.encode())
    err = _code(raw, max_bytes=100)
    assert err.code == "oversize"
    assert f"{len(raw.encode())} bytes" in err.message


def test_exactly_max_bytes_is_fine() -> None:
    base = '{"type":"ping","p":""}'
    raw = base[:-2] + "x" * (200 - len(base)) + '"}'
    assert len(raw) == 200
    assert parse_client_message(raw, max_bytes=200).session_id == ""  # type: ignore[union-attr]
    assert parse_client_message(raw.encode(), max_bytes=200).session_id == ""  # type: ignore[union-attr]
    assert _code(raw, max_bytes=199).code == "oversize"


def test_oversize_checked_before_json() -> None:
    # Garbage that is too big reports oversize, not invalid_json: no parsing work is done.
    assert _code(b"\xff" * 100, max_bytes=10).code == "oversize"
