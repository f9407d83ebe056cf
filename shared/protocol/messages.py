"""JSON text-frame messages of the Xiaozhi WebSocket protocol (docs/protocol.md §2.2, §2.5, §2.6).

Device -> server messages are parsed by :func:`parse_client_message` into small frozen dataclasses,
so the session code dispatches on a Python type instead of poking at dicts, and every rule about
what a device may send lives here. Parsing is plain ``json`` plus hand-written checks: this runs
for every text frame of every device and pydantic would cost more than the whole rest of the path.

Tolerance policy (the firmware is deployed and cannot be fixed by us):

* unknown extra keys are ignored, JSON ``null`` counts as "absent" for optional fields;
* ``session_id`` is optional everywhere (the device echoes whatever it last got, "" on a fresh boot);
* ``features`` / ``audio_params`` may be missing from ``hello`` (firmware <= 1.6, desktop clients);
* a field that is present with the wrong type is an error (``bad_field``) naming the field, because
  guessing there hides real bugs.

Server -> device messages are built by the small functions at the bottom; each returns a ``dict``
that :func:`encode` turns into the text frame.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias, cast

from .errors import (
    BAD_FIELD,
    INVALID_JSON,
    MISSING_TYPE,
    NOT_OBJECT,
    OVERSIZE,
    UNKNOWN_TYPE,
    ProtocolError,
)

ListenState: TypeAlias = Literal["start", "stop", "detect"]
ListenMode: TypeAlias = Literal["auto", "manual", "realtime"]

LISTEN_STATES: frozenset[str] = frozenset({"start", "stop", "detect"})
LISTEN_MODES: frozenset[str] = frozenset({"auto", "manual", "realtime"})
PROTOCOL_VERSIONS: frozenset[int] = frozenset({1, 2, 3})
# Opus supports exactly these rates.
SAMPLE_RATES: frozenset[int] = frozenset({8000, 12000, 16000, 24000, 48000})
# Opus frame sizes in whole milliseconds (2.5 ms cannot be an int and no client uses it);
# the firmware decoder supports 5..120 (§2.8), clients send 20/40/60 (§2.2).
FRAME_DURATIONS: frozenset[int] = frozenset({5, 10, 20, 40, 60, 80, 100, 120})

_TYPE_ECHO_LIMIT = 40
_VALUE_ECHO_LIMIT = 40


# --------------------------------------------------------------------------------------------------
# small validation helpers


def _json_type(value: object) -> str:
    """JSON-ish name of a Python value, for error messages a firmware developer understands."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(value: object, limit: int = _VALUE_ECHO_LIMIT) -> str:
    """A bounded repr: device input is echoed into logs, so never let it grow them unboundedly."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad(name: str, expected: str, value: object) -> ProtocolError:
    return ProtocolError(BAD_FIELD, f"field {name!r} must be {expected}, got {_json_type(value)} {_short(value)}")


def _as_int(value: object) -> int | None:
    """An int from a JSON number that holds an integer (``16000`` or ``16000.0``); None otherwise.

    Booleans are rejected even though ``bool`` subclasses ``int``: ``true`` is never a sample rate.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _opt_str(obj: dict[str, Any], key: str, name: str | None = None) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(name or key, "a string", value)
    return value


def _session_id(obj: dict[str, Any]) -> str:
    return _opt_str(obj, "session_id") or ""


def _opt_dict_list(obj: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    """An optional array of objects; non-object entries are dropped (legacy IoT sends odd things)."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise _bad(key, "an array", value)
    return [item for item in value if isinstance(item, dict)]


# --------------------------------------------------------------------------------------------------
# device -> server messages


@dataclass(frozen=True, slots=True)
class AudioParams:
    """Opus stream parameters, as announced in a hello (either direction).

    Validated on construction so an invalid value can never reach the codec set-up; the error is a
    ``bad_field`` ProtocolError because the usual source is a device hello.
    """

    format: str = "opus"
    sample_rate: int = 16000
    channels: int = 1
    frame_duration: int = 60

    def __post_init__(self) -> None:
        if self.format != "opus":
            raise _bad("audio_params.format", '"opus"', self.format)
        checks = (
            ("sample_rate", SAMPLE_RATES),
            # Mono only: the uplink VAD/ASR path and the firmware decoder are mono (§2.8).
            ("channels", frozenset({1})),
            ("frame_duration", FRAME_DURATIONS),
        )
        for key, allowed in checks:
            value = getattr(self, key)
            number = _as_int(value)
            if number is None or number not in allowed:
                expected = "1" if len(allowed) == 1 else f"one of {sorted(allowed)}"
                raise _bad(f"audio_params.{key}", expected, value)
            if type(value) is not int:  # 16000.0 -> 16000, so equality and hashing stay predictable
                object.__setattr__(self, key, number)

    @property
    def frame_samples(self) -> int:
        """Samples per channel in one frame, e.g. 960 for 16 kHz / 60 ms."""
        return self.sample_rate * self.frame_duration // 1000

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frame_duration": self.frame_duration,
        }

    @classmethod
    def from_json(cls, value: object, name: str = "audio_params") -> AudioParams:
        """Parse the ``audio_params`` object of a hello; missing keys take the firmware defaults."""
        if not isinstance(value, dict):
            raise _bad(name, "an object", value)
        fmt = value.get("format", "opus")
        if fmt is None:
            fmt = "opus"
        if not isinstance(fmt, str):
            raise _bad(f"{name}.format", "a string", fmt)
        ints: dict[str, int] = {}
        for key, default in (("sample_rate", 16000), ("channels", 1), ("frame_duration", 60)):
            raw = value.get(key)
            if raw is None:
                ints[key] = default
                continue
            number = _as_int(raw)
            if number is None:
                raise _bad(f"{name}.{key}", "an integer", raw)
            ints[key] = number
        # Clients are not consistent about case ("Opus"); the codec is the same.
        return cls(format=fmt.lower(), **ints)


@dataclass(frozen=True, slots=True)
class Hello:
    """First text frame of a connection (§2.2).

    ``version`` is the binary framing version (1/2/3) the device will use for audio frames;
    ``raw`` keeps the whole message for fields this module does not model (``text_font`` ...).
    ``audio_params`` is None when the device sent none; the server then assumes 16 kHz / 60 ms.
    """

    TYPE: ClassVar[str] = "hello"

    version: int = 1
    transport: str = "websocket"
    features: dict[str, bool] = field(default_factory=dict)
    audio_params: AudioParams | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def supports(self, feature: str) -> bool:
        """True when the device advertised ``features.<feature>: true`` (e.g. "mcp", "aec")."""
        return self.features.get(feature, False) is True


@dataclass(frozen=True, slots=True)
class Listen:
    """``listen`` start/stop/detect (§2.5). ``mode`` None means the device sent none: treat as auto."""

    TYPE: ClassVar[str] = "listen"

    state: ListenState
    mode: ListenMode | None = None
    text: str | None = None
    session_id: str = ""


@dataclass(frozen=True, slots=True)
class Abort:
    """User interrupted playback; ``reason`` is e.g. "wake_word_detected" or None (button)."""

    TYPE: ClassVar[str] = "abort"

    reason: str | None = None
    session_id: str = ""


@dataclass(frozen=True, slots=True)
class Mcp:
    """A JSON-RPC 2.0 object from the device's MCP server (§3); see :mod:`shared.protocol.mcp`."""

    TYPE: ClassVar[str] = "mcp"

    payload: dict[str, Any]
    session_id: str = ""


@dataclass(frozen=True, slots=True)
class Iot:
    """Legacy IoT descriptors or states (fw <= 1.7.x); non-object list entries are dropped."""

    TYPE: ClassVar[str] = "iot"

    update: bool = False
    descriptors: list[dict[str, Any]] | None = None
    states: list[dict[str, Any]] | None = None
    session_id: str = ""


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Device closes the channel (MQTT transport only; harmless to accept on WebSocket)."""

    TYPE: ClassVar[str] = "goodbye"

    session_id: str = ""


@dataclass(frozen=True, slots=True)
class Ping:
    """Application-level ping some web/desktop clients send; answer with :func:`pong`."""

    TYPE: ClassVar[str] = "ping"

    session_id: str = ""


ClientMessage: TypeAlias = Hello | Listen | Abort | Mcp | Iot | Goodbye | Ping


def _parse_hello(obj: dict[str, Any]) -> Hello:
    raw_version = obj.get("version")
    if raw_version is None:
        version = 1
    else:
        number = _as_int(raw_version)
        if number is None or number not in PROTOCOL_VERSIONS:
            raise _bad("version", "1, 2 or 3", raw_version)
        version = number

    transport = _opt_str(obj, "transport")
    if transport is None:
        transport = "websocket"

    raw_features = obj.get("features")
    features: dict[str, bool] = {}
    if raw_features is not None:
        if not isinstance(raw_features, dict):
            raise _bad("features", "an object", raw_features)
        # Keep only boolean flags: a future firmware may add non-boolean feature values, and
        # rejecting the whole hello for that would lock those devices out.
        features = {k: v for k, v in raw_features.items() if isinstance(v, bool)}

    raw_params = obj.get("audio_params")
    audio_params = None if raw_params is None else AudioParams.from_json(raw_params)

    return Hello(version=version, transport=transport, features=features, audio_params=audio_params, raw=obj)


def _parse_listen(obj: dict[str, Any]) -> Listen:
    state = obj.get("state")
    if state is None:
        raise ProtocolError(BAD_FIELD, "field 'state' is required for type 'listen'")
    if not isinstance(state, str) or state not in LISTEN_STATES:
        raise _bad("state", '"start", "stop" or "detect"', state)
    mode = obj.get("mode")
    if mode is not None and (not isinstance(mode, str) or mode not in LISTEN_MODES):
        raise _bad("mode", '"auto", "manual" or "realtime"', mode)
    return Listen(
        state=cast(ListenState, state),
        mode=cast(ListenMode | None, mode),
        text=_opt_str(obj, "text"),
        session_id=_session_id(obj),
    )


def _parse_abort(obj: dict[str, Any]) -> Abort:
    return Abort(reason=_opt_str(obj, "reason"), session_id=_session_id(obj))


def _parse_mcp(obj: dict[str, Any]) -> Mcp:
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        raise _bad("payload", "a JSON-RPC object", payload)
    if payload.get("jsonrpc") != "2.0":
        raise _bad("payload.jsonrpc", '"2.0"', payload.get("jsonrpc"))
    return Mcp(payload=payload, session_id=_session_id(obj))


def _parse_iot(obj: dict[str, Any]) -> Iot:
    update = obj.get("update")
    if update is None:
        update = False
    elif not isinstance(update, bool):
        raise _bad("update", "a boolean", update)
    return Iot(
        update=update,
        descriptors=_opt_dict_list(obj, "descriptors"),
        states=_opt_dict_list(obj, "states"),
        session_id=_session_id(obj),
    )


def _parse_goodbye(obj: dict[str, Any]) -> Goodbye:
    return Goodbye(session_id=_session_id(obj))


def _parse_ping(obj: dict[str, Any]) -> Ping:
    return Ping(session_id=_session_id(obj))


_PARSERS: dict[str, Callable[[dict[str, Any]], ClientMessage]] = {
    "hello": _parse_hello,
    "listen": _parse_listen,
    "abort": _parse_abort,
    "mcp": _parse_mcp,
    "iot": _parse_iot,
    "goodbye": _parse_goodbye,
    "ping": _parse_ping,
}

CLIENT_TYPES: frozenset[str] = frozenset(_PARSERS)


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; cJSON never produces them, so they mean a broken or hostile client.
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(literal: str) -> float:
    """A JSON number literal as a float, refusing ones that overflow to infinity (``1e999``).

    Found by fuzzing: an infinite volume in a legacy ``iot`` state reached ``int()`` in the session
    and crashed it. The JSON is valid, but no device field can hold an infinite value.
    """
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"number {_short(literal)} is out of range")
    return value


# A \uD800-\uDFFF escape (or a raw surrogate in a str argument) may leave a lone surrogate in a
# parsed string: cheap to look for in the raw text, then confirmed on the parsed strings.
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _has_lone_surrogate(obj: object) -> bool:
    """True when a key or string anywhere in ``obj`` holds a surrogate that pairs with nothing.

    Such a string cannot be encoded as UTF-8: found by fuzzing, a ``listen/detect`` text with
    ``"\\ud800"`` made the edge's ``stt`` echo fail inside websockets and dropped the connection
    without a close frame. Iterative, so nesting depth cannot raise RecursionError here.
    """
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_client_message(data: str | bytes, max_bytes: int = 65536) -> ClientMessage:
    """Parse one device text frame into a message object, or raise :class:`ProtocolError`.

    The size check comes first and counts UTF-8 bytes, so a huge frame is refused before any
    decoding work. Only ProtocolError escapes, whatever the input.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        if len(raw) > max_bytes:
            raise ProtocolError(OVERSIZE, f"message is {len(raw)} bytes, limit {max_bytes}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(INVALID_JSON, f"not UTF-8 at byte {exc.start}") from None
    elif isinstance(data, str):
        text = data
        # len() counts code points; a UTF-8 byte is at most 4x more, so only count when it matters.
        if len(text) > max_bytes or (
            len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes
        ):
            size = len(text.encode("utf-8", "surrogatepass"))
            raise ProtocolError(OVERSIZE, f"message is {size} bytes, limit {max_bytes}")
    else:
        raise TypeError(f"expected str or bytes, got {type(data).__name__}")

    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            INVALID_JSON, f"{exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from None
    except RecursionError:
        raise ProtocolError(INVALID_JSON, "JSON nested too deeply") from None
    except ValueError as exc:  # non-standard constants, over-long integer literals, 1e999
        raise ProtocolError(INVALID_JSON, _short(str(exc), 120)) from None
    if _MAYBE_SURROGATE.search(text) and _has_lone_surrogate(obj):
        raise ProtocolError(INVALID_JSON, "a string holds a lone UTF-16 surrogate (not valid Unicode)")

    if not isinstance(obj, dict):
        raise ProtocolError(NOT_OBJECT, f"expected a JSON object, got {_json_type(obj)}")
    msg_type = obj.get("type")
    if not isinstance(msg_type, str):
        if msg_type is None:
            raise ProtocolError(MISSING_TYPE, "message has no 'type'")
        raise ProtocolError(MISSING_TYPE, f"'type' must be a string, got {_json_type(msg_type)}")
    parser = _PARSERS.get(msg_type)
    if parser is None:
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {_short(msg_type, _TYPE_ECHO_LIMIT)}")
    return parser(obj)


# --------------------------------------------------------------------------------------------------
# server -> device messages

# Emotion names the firmware has faces for (§2.6), mapped to the emoji XS sends as ``text``.
EMOTION_EMOJI: dict[str, str] = {
    "neutral": "\U0001f636",  # 😶
    "happy": "\U0001f642",  # 🙂
    "laughing": "\U0001f606",  # 😆
    "funny": "\U0001f602",  # 😂
    "sad": "\U0001f614",  # 😔
    "angry": "\U0001f620",  # 😠
    "crying": "\U0001f62d",  # 😭
    "loving": "\U0001f60d",  # 😍
    "embarrassed": "\U0001f633",  # 😳
    "surprised": "\U0001f632",  # 😲
    "shocked": "\U0001f631",  # 😱
    "thinking": "\U0001f914",  # 🤔
    "winking": "\U0001f609",  # 😉
    "cool": "\U0001f60e",  # 😎
    "relaxed": "\U0001f60c",  # 😌
    "delicious": "\U0001f924",  # 🤤
    "kissy": "\U0001f618",  # 😘
    "confident": "\U0001f60f",  # 😏
    "sleepy": "\U0001f634",  # 😴
    "silly": "\U0001f61c",  # 😜
    "confused": "\U0001f644",  # 🙄
}
EMOTIONS: tuple[str, ...] = tuple(EMOTION_EMOJI)
# Reverse map so an LLM reply that starts with an emoji can be turned into an emotion.
EMOJI_EMOTION: dict[str, str] = {emoji: name for name, emoji in EMOTION_EMOJI.items()}


def encode(msg: dict[str, Any]) -> str:
    """Serialise a server message compactly; UTF-8 text stays readable (the frame is UTF-8 anyway)."""
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def server_hello(
    session_id: str, sample_rate: int, frame_duration: int, transport: str = "websocket"
) -> dict[str, Any]:
    """The handshake reply; ``sample_rate``/``frame_duration`` must be what the TTS encoder really uses.

    The device only accepts it when ``transport`` is "websocket" (on a WebSocket connection).
    """
    params = AudioParams(sample_rate=sample_rate, frame_duration=frame_duration)
    return {
        "type": "hello",
        "transport": transport,
        "session_id": session_id,
        "audio_params": params.to_dict(),
    }


def stt(session_id: str, text: str) -> dict[str, Any]:
    return {"type": "stt", "session_id": session_id, "text": text}


def tts_start(session_id: str) -> dict[str, Any]:
    return {"type": "tts", "session_id": session_id, "state": "start"}


def tts_sentence_start(session_id: str, text: str) -> dict[str, Any]:
    return {"type": "tts", "session_id": session_id, "state": "sentence_start", "text": text}


def tts_stop(session_id: str) -> dict[str, Any]:
    return {"type": "tts", "session_id": session_id, "state": "stop"}


def llm_emotion(session_id: str, emotion: str) -> dict[str, Any]:
    """Set the device face. Unknown emotions become "neutral" so the device never gets a name it lacks."""
    if emotion not in EMOTION_EMOJI:
        emotion = "neutral"
    return {"type": "llm", "session_id": session_id, "text": EMOTION_EMOJI[emotion], "emotion": emotion}


def mcp(session_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "mcp", "session_id": session_id, "payload": payload}


def alert(session_id: str, status: str, message: str, emotion: str) -> dict[str, Any]:
    """An on-screen alert. The firmware drops the message unless all three are strings, so check here.

    ``emotion`` is passed through unmapped: alert icons include names outside :data:`EMOTIONS`.
    """
    for name, value in (("status", status), ("message", message), ("emotion", emotion)):
        if not isinstance(value, str):
            raise TypeError(f"alert {name} must be a string, got {type(value).__name__}")
    return {
        "type": "alert",
        "session_id": session_id,
        "status": status,
        "message": message,
        "emotion": emotion,
    }


def system_reboot(session_id: str) -> dict[str, Any]:
    return {"type": "system", "session_id": session_id, "command": "reboot"}


def iot_commands(session_id: str, commands: list[dict[str, Any]]) -> dict[str, Any]:
    """Legacy IoT control: ``[{"name": thing, "method": m, "parameters": {...}}]``."""
    return {"type": "iot", "session_id": session_id, "commands": commands}


def goodbye(session_id: str) -> dict[str, Any]:
    return {"type": "goodbye", "session_id": session_id}


def pong(session_id: str) -> dict[str, Any]:
    return {"type": "pong", "session_id": session_id}
