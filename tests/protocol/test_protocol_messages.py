"""Device -> server JSON messages (docs/protocol.md §2.2, §2.5)."""

from __future__ import annotations

import json

import pytest

from shared.protocol import (
    Abort,
    AudioParams,
    Goodbye,
    Hello,
    Iot,
    Listen,
    Mcp,
    Ping,
    ProtocolError,
    parse_client_message,
)

# ---- §2.2 hello variants ---------------------------------------------------------------------------

HELLO_CURRENT = (
    '{"type":"hello","version":1,'
    '"features":{"aec":true,"mcp":true,"glyph_push":true},'
    '"text_font":{"bundle":"noto-v1","charset":"common","size":20,"bpp":4},'
    '"transport":"websocket",'
    '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}'
)
HELLO_CANONICAL = (
    '{"type":"hello","version":1,"features":{"mcp":true},"transport":"websocket",'
    '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}'
)
# firmware <= 1.6: no features
HELLO_OLD = (
    '{"type":"hello","version":1,"transport":"websocket",'
    '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}'
)
# py-xiaozhi on x86: 20 ms frames, no features
HELLO_PY = (
    '{"type":"hello","version":1,"transport":"websocket",'
    '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":20}}'
)
# MQTT-style hello, v3 framing
HELLO_V3 = (
    '{"type":"hello","version":3,"transport":"udp","features":{"mcp":true},'
    '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}'
)


def test_hello_current_firmware() -> None:
    msg = parse_client_message(HELLO_CURRENT)
    assert isinstance(msg, Hello)
    assert msg.version == 1
    assert msg.transport == "websocket"
    assert msg.features == {"aec": True, "mcp": True, "glyph_push": True}
    assert msg.audio_params == AudioParams("opus", 16000, 1, 60)
    assert msg.raw["text_font"]["bundle"] == "noto-v1"
    assert msg.supports("mcp") and msg.supports("aec") and not msg.supports("nope")


def test_hello_canonical_conversation() -> None:
    msg = parse_client_message(HELLO_CANONICAL)
    assert isinstance(msg, Hello)
    assert msg.features == {"mcp": True}
    assert msg.audio_params is not None and msg.audio_params.frame_samples == 960


def test_hello_without_features() -> None:
    msg = parse_client_message(HELLO_OLD)
    assert isinstance(msg, Hello)
    assert msg.features == {}
    assert not msg.supports("mcp")


def test_hello_py_client_20ms() -> None:
    msg = parse_client_message(HELLO_PY)
    assert isinstance(msg, Hello) and msg.audio_params is not None
    assert msg.audio_params.frame_duration == 20
    assert msg.audio_params.frame_samples == 320


def test_hello_without_audio_params() -> None:
    msg = parse_client_message('{"type":"hello","version":1,"transport":"websocket"}')
    assert isinstance(msg, Hello)
    assert msg.audio_params is None


def test_hello_minimal_defaults() -> None:
    msg = parse_client_message('{"type":"hello"}')
    assert msg == Hello(version=1, transport="websocket", features={}, audio_params=None, raw={"type": "hello"})


def test_hello_version_3() -> None:
    msg = parse_client_message(HELLO_V3)
    assert isinstance(msg, Hello)
    assert msg.version == 3
    assert msg.transport == "udp"


@pytest.mark.parametrize("version", [1, 2, 3])
def test_hello_valid_versions(version: int) -> None:
    msg = parse_client_message(json.dumps({"type": "hello", "version": version}))
    assert isinstance(msg, Hello) and msg.version == version


@pytest.mark.parametrize("version", [0, 4, -1, 99, "1", True, 1.5, [], {}])
def test_hello_bad_version(version: object) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_client_message(json.dumps({"type": "hello", "version": version}))
    assert err.value.code == "bad_field"
    assert "'version'" in err.value.message


def test_hello_partial_audio_params_take_defaults() -> None:
    msg = parse_client_message('{"type":"hello","audio_params":{"frame_duration":40}}')
    assert isinstance(msg, Hello)
    assert msg.audio_params == AudioParams("opus", 16000, 1, 40)


def test_hello_integral_float_numbers_accepted() -> None:
    msg = parse_client_message('{"type":"hello","version":2.0,"audio_params":{"sample_rate":24000.0}}')
    assert isinstance(msg, Hello) and msg.audio_params is not None
    assert msg.version == 2
    assert msg.audio_params.sample_rate == 24000
    assert type(msg.audio_params.sample_rate) is int


def test_hello_format_case_insensitive() -> None:
    msg = parse_client_message('{"type":"hello","audio_params":{"format":"OPUS"}}')
    assert isinstance(msg, Hello) and msg.audio_params is not None
    assert msg.audio_params.format == "opus"


def test_hello_non_bool_features_dropped() -> None:
    msg = parse_client_message('{"type":"hello","features":{"mcp":true,"future":3,"x":"y","aec":false}}')
    assert isinstance(msg, Hello)
    assert msg.features == {"mcp": True, "aec": False}


@pytest.mark.parametrize("rate", [8000, 12000, 16000, 24000, 48000])
def test_hello_sample_rates(rate: int) -> None:
    msg = parse_client_message(json.dumps({"type": "hello", "audio_params": {"sample_rate": rate}}))
    assert isinstance(msg, Hello) and msg.audio_params is not None
    assert msg.audio_params.sample_rate == rate


@pytest.mark.parametrize("duration", [5, 10, 20, 40, 60, 80, 100, 120])
def test_hello_frame_durations(duration: int) -> None:
    msg = parse_client_message(json.dumps({"type": "hello", "audio_params": {"frame_duration": duration}}))
    assert isinstance(msg, Hello) and msg.audio_params is not None
    assert msg.audio_params.frame_duration == duration


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"format": "pcm"}, "audio_params.format"),
        ({"format": 1}, "audio_params.format"),
        ({"sample_rate": 44100}, "audio_params.sample_rate"),
        ({"sample_rate": "16000"}, "audio_params.sample_rate"),
        ({"sample_rate": 16000.5}, "audio_params.sample_rate"),
        ({"sample_rate": True}, "audio_params.sample_rate"),
        ({"channels": 2}, "audio_params.channels"),
        ({"channels": 0}, "audio_params.channels"),
        ({"frame_duration": 2.5}, "audio_params.frame_duration"),
        ({"frame_duration": 30}, "audio_params.frame_duration"),
        ({"frame_duration": 0}, "audio_params.frame_duration"),
        ({"frame_duration": -60}, "audio_params.frame_duration"),
    ],
)
def test_hello_bad_audio_params(params: dict[str, object], field: str) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_client_message(json.dumps({"type": "hello", "audio_params": params}))
    assert err.value.code == "bad_field"
    assert repr(field) in err.value.message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("audio_params", "opus"),
        ("audio_params", [16000]),
        ("features", ["mcp"]),
        ("features", True),
        ("transport", 1),
    ],
)
def test_hello_bad_field_types(key: str, value: object) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_client_message(json.dumps({"type": "hello", key: value}))
    assert err.value.code == "bad_field"
    assert repr(key) in err.value.message


def test_audio_params_direct_construction_validates() -> None:
    assert AudioParams().to_dict() == {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60}
    with pytest.raises(ProtocolError):
        AudioParams(sample_rate=44100)
    with pytest.raises(ProtocolError):
        AudioParams(channels=2)


# ---- §2.5 table: every example parses ------------------------------------------------------------


def test_listen_start() -> None:
    msg = parse_client_message('{"session_id":"s","type":"listen","state":"start","mode":"auto"}')
    assert msg == Listen(state="start", mode="auto", text=None, session_id="s")


def test_listen_stop() -> None:
    msg = parse_client_message('{"session_id":"s","type":"listen","state":"stop"}')
    assert msg == Listen(state="stop", mode=None, text=None, session_id="s")


def test_listen_detect() -> None:
    msg = parse_client_message('{"session_id":"s","type":"listen","state":"detect","text":"你好小智"}')
    assert msg == Listen(state="detect", mode=None, text="你好小智", session_id="s")


@pytest.mark.parametrize("mode", ["auto", "manual", "realtime"])
def test_listen_modes(mode: str) -> None:
    msg = parse_client_message(json.dumps({"type": "listen", "state": "start", "mode": mode}))
    assert isinstance(msg, Listen) and msg.mode == mode


def test_abort_plain() -> None:
    assert parse_client_message('{"session_id":"s","type":"abort"}') == Abort(reason=None, session_id="s")


def test_abort_with_reason() -> None:
    msg = parse_client_message('{"session_id":"s","type":"abort","reason":"wake_word_detected"}')
    assert msg == Abort(reason="wake_word_detected", session_id="s")


def test_mcp_message() -> None:
    raw = (
        '{"session_id":"s","type":"mcp","payload":{"jsonrpc":"2.0","id":1,'
        '"result":{"protocolVersion":"2024-11-05","capabilities":{"tools":{}},'
        '"serverInfo":{"name":"board","version":"2.4.0"}}}}'
    )
    msg = parse_client_message(raw)
    assert isinstance(msg, Mcp)
    assert msg.session_id == "s"
    assert msg.payload["id"] == 1
    assert msg.payload["result"]["protocolVersion"] == "2024-11-05"


def test_iot_descriptors() -> None:
    raw = (
        '{"session_id":"s","type":"iot","update":true,"descriptors":[{"name":"Speaker",'
        '"description":"speaker","properties":{"volume":{"description":"vol","type":"number"}},'
        '"methods":{"SetVolume":{"description":"set","parameters":{"volume":{"description":"v",'
        '"type":"number"}}}}}]}'
    )
    msg = parse_client_message(raw)
    assert isinstance(msg, Iot)
    assert msg.update is True
    assert msg.descriptors is not None and msg.descriptors[0]["name"] == "Speaker"
    assert msg.states is None


def test_iot_states() -> None:
    raw = '{"session_id":"s","type":"iot","update":true,"states":[{"name":"Speaker","state":{"volume":60}}]}'
    msg = parse_client_message(raw)
    assert msg == Iot(
        update=True, descriptors=None, states=[{"name": "Speaker", "state": {"volume": 60}}], session_id="s"
    )


def test_iot_drops_non_object_entries() -> None:
    msg = parse_client_message('{"type":"iot","descriptors":[1,"x",null,{"name":"Lamp"},[]]}')
    assert isinstance(msg, Iot)
    assert msg.descriptors == [{"name": "Lamp"}]
    assert msg.update is False


def test_goodbye() -> None:
    assert parse_client_message('{"session_id":"s","type":"goodbye"}') == Goodbye(session_id="s")


def test_ping() -> None:
    assert parse_client_message('{"type":"ping"}') == Ping(session_id="")


# ---- general rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"listen","state":"stop"}',
        '{"type":"abort"}',
        '{"type":"goodbye"}',
        '{"type":"ping"}',
        '{"type":"iot"}',
        '{"type":"mcp","payload":{"jsonrpc":"2.0","method":"notifications/x"}}',
    ],
)
def test_session_id_optional(raw: str) -> None:
    assert parse_client_message(raw).session_id == ""  # type: ignore[union-attr]


@pytest.mark.parametrize("sid", ["", "8a1f-uuid", "S1"])
def test_session_id_echoed(sid: str) -> None:
    msg = parse_client_message(json.dumps({"type": "abort", "session_id": sid}))
    assert isinstance(msg, Abort) and msg.session_id == sid


def test_session_id_null_treated_as_empty() -> None:
    msg = parse_client_message('{"type":"abort","session_id":null}')
    assert isinstance(msg, Abort) and msg.session_id == ""


def test_extra_keys_ignored() -> None:
    msg = parse_client_message('{"type":"listen","state":"start","mode":"auto","extra":{"a":[1,2]},"n":1}')
    assert msg == Listen(state="start", mode="auto")


def test_bytes_input() -> None:
    msg = parse_client_message('{"type":"listen","state":"detect","text":"你好小智"}'.encode())
    assert isinstance(msg, Listen) and msg.text == "你好小智"


def test_bytearray_and_memoryview_input() -> None:
    raw = b'{"type":"ping"}'
    assert isinstance(parse_client_message(bytearray(raw)), Ping)
    assert isinstance(parse_client_message(memoryview(raw)), Ping)


def test_wrong_input_type_is_type_error() -> None:
    with pytest.raises(TypeError):
        parse_client_message(123)  # type: ignore[arg-type]


def test_messages_are_frozen() -> None:
    msg = parse_client_message('{"type":"ping"}')
    with pytest.raises(AttributeError):
        msg.session_id = "x"  # type: ignore[misc]


def test_type_classvars() -> None:
    assert [c.TYPE for c in (Hello, Listen, Abort, Mcp, Iot, Goodbye, Ping)] == [
        "hello",
        "listen",
        "abort",
        "mcp",
        "iot",
        "goodbye",
        "ping",
    ]
