"""Server -> device builders (docs/protocol.md §2.6) and encode()."""

from __future__ import annotations

import json

import pytest

from shared.protocol import (
    EMOTION_EMOJI,
    EMOTIONS,
    ProtocolError,
    alert,
    encode,
    goodbye,
    iot_commands,
    llm_emotion,
    mcp_message,
    messages,
    pong,
    server_hello,
    stt,
    system_reboot,
    tts_sentence_start,
    tts_start,
    tts_stop,
)

SPEC_EMOTIONS = (
    "neutral happy laughing funny sad angry crying loving embarrassed surprised shocked thinking "
    "winking cool relaxed delicious kissy confident sleepy silly confused"
).split()


def test_server_hello_shape() -> None:
    msg = server_hello("S1", 24000, 60)
    assert msg == {
        "type": "hello",
        "transport": "websocket",
        "session_id": "S1",
        "audio_params": {"format": "opus", "sample_rate": 24000, "channels": 1, "frame_duration": 60},
    }
    # key order as in docs/protocol.md §2.2 (cosmetic, but keeps captures diffable)
    assert list(msg) == ["type", "transport", "session_id", "audio_params"]


def test_server_hello_transport_override() -> None:
    assert server_hello("S", 16000, 20, transport="udp")["transport"] == "udp"


@pytest.mark.parametrize(("rate", "ms"), [(44100, 60), (24000, 30), (24000, 0)])
def test_server_hello_rejects_unusable_params(rate: int, ms: int) -> None:
    with pytest.raises(ProtocolError):
        server_hello("S", rate, ms)


def test_simple_builders() -> None:
    assert stt("S1", "今天天气怎么样") == {"type": "stt", "session_id": "S1", "text": "今天天气怎么样"}
    assert tts_start("S1") == {"type": "tts", "session_id": "S1", "state": "start"}
    assert tts_sentence_start("S1", "今天晴，") == {
        "type": "tts",
        "session_id": "S1",
        "state": "sentence_start",
        "text": "今天晴，",
    }
    assert tts_stop("S1") == {"type": "tts", "session_id": "S1", "state": "stop"}
    assert system_reboot("S1") == {"type": "system", "session_id": "S1", "command": "reboot"}
    assert goodbye("S1") == {"type": "goodbye", "session_id": "S1"}
    assert pong("S1") == {"type": "pong", "session_id": "S1"}


def test_mcp_builder() -> None:
    payload = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    assert mcp_message("S1", payload) == {"type": "mcp", "session_id": "S1", "payload": payload}
    assert messages.mcp is mcp_message


def test_iot_commands_builder() -> None:
    cmds = [{"name": "Speaker", "method": "SetVolume", "parameters": {"volume": 80}}]
    assert iot_commands("S1", cmds) == {"type": "iot", "session_id": "S1", "commands": cmds}


def test_alert_builder() -> None:
    assert alert("S1", "Error", "server busy", "sad") == {
        "type": "alert",
        "session_id": "S1",
        "status": "Error",
        "message": "server busy",
        "emotion": "sad",
    }


def test_alert_emotion_not_remapped() -> None:
    assert alert("S", "Warn", "m", "triangle_exclamation")["emotion"] == "triangle_exclamation"


@pytest.mark.parametrize("bad", [None, 1, ["x"]])
def test_alert_requires_strings(bad: object) -> None:
    with pytest.raises(TypeError):
        alert("S", bad, "m", "sad")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        alert("S", "s", bad, "sad")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        alert("S", "s", "m", bad)  # type: ignore[arg-type]


def test_emotions_match_spec_list() -> None:
    assert EMOTIONS == tuple(SPEC_EMOTIONS)
    assert set(EMOTION_EMOJI) == set(EMOTIONS)
    assert len(set(EMOTION_EMOJI.values())) == len(EMOTIONS), "emoji must be distinct to map back"


@pytest.mark.parametrize("emotion", SPEC_EMOTIONS)
def test_llm_emotion_each(emotion: str) -> None:
    msg = llm_emotion("S1", emotion)
    assert msg["type"] == "llm"
    assert msg["emotion"] == emotion
    assert msg["text"] == EMOTION_EMOJI[emotion]
    assert messages.EMOJI_EMOTION[msg["text"]] == emotion


def test_llm_emotion_known_emoji() -> None:
    assert llm_emotion("S1", "happy") == {"type": "llm", "session_id": "S1", "text": "🙂", "emotion": "happy"}
    assert llm_emotion("S1", "funny")["text"] == "😂"


@pytest.mark.parametrize("emotion", ["", "Happy", "joy", "😊", "neutral "])
def test_llm_emotion_unknown_becomes_neutral(emotion: str) -> None:
    msg = llm_emotion("S1", emotion)
    assert msg["emotion"] == "neutral"
    assert msg["text"] == "😶"


def test_encode_compact_utf8() -> None:
    text = encode(stt("S1", "你好"))
    assert text == '{"type":"stt","session_id":"S1","text":"你好"}'
    assert json.loads(text) == stt("S1", "你好")


def test_encode_rejects_nan() -> None:
    with pytest.raises(ValueError):
        encode({"type": "x", "v": float("nan")})


@pytest.mark.parametrize(
    "msg",
    [
        server_hello("S", 24000, 60),
        stt("S", "a"),
        tts_start("S"),
        tts_sentence_start("S", "b"),
        tts_stop("S"),
        llm_emotion("S", "cool"),
        mcp_message("S", {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
        alert("S", "a", "b", "c"),
        system_reboot("S"),
        iot_commands("S", []),
        goodbye("S"),
        pong("S"),
    ],
)
def test_every_builder_encodes_with_string_type(msg: dict[str, object]) -> None:
    decoded = json.loads(encode(msg))
    assert isinstance(decoded["type"], str)
    assert decoded["session_id"] == "S"
