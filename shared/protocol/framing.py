"""Binary WebSocket frames: one Opus packet per frame, with a header chosen by protocol version (§2.7).

* v1: the frame is the raw Opus packet (what all current firmware uses unless told otherwise).
* v2: 16-byte header ``>HHIII`` = version, type (0 Opus, 1 JSON), reserved, timestamp ms, payload size.
* v3: 4-byte header ``>BBH`` = type, reserved, payload size.

The same framing is used in both directions. This runs for every audio packet (~17/s per device),
so it is a couple of precompiled ``struct`` calls and nothing else. Malformed frames from a device
raise :class:`ProtocolError` ("bad_frame"); a bad *version* argument is a server bug and raises a
plain ``ValueError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import BAD_FRAME, ProtocolError

_V2 = struct.Struct(">HHIII")
_V3 = struct.Struct(">BBH")
V2_HEADER_SIZE = _V2.size  # 16
V3_HEADER_SIZE = _V3.size  # 4
V2_TYPE_OPUS = 0
V2_TYPE_JSON = 1
MAX_V3_PAYLOAD = 0xFFFF
_MAX_U32 = 0xFFFFFFFF
VERSIONS = (1, 2, 3)


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One received binary frame.

    ``timestamp`` is only carried by v2 (server-side AEC alignment, §2.7), 0 otherwise.
    ``is_json`` is True for a v2 frame of type 1, whose payload is a UTF-8 JSON message rather than
    Opus; the server should route it to the text-message path instead of the decoder.
    """

    payload: bytes
    timestamp: int = 0
    is_json: bool = False


def _check_version(version: int) -> None:
    if isinstance(version, bool) or version not in VERSIONS:
        raise ValueError(f"unsupported binary protocol version {version!r}; expected 1, 2 or 3")


def unpack_audio(frame: bytes, version: int) -> AudioFrame:
    """Split a received binary frame into payload (+ timestamp) according to ``version``.

    The declared payload size must equal the bytes actually present: a mismatch means the two sides
    disagree about the version, and decoding the header bytes as Opus would only produce noise.
    """
    _check_version(version)
    size = len(frame)
    if version == 1:
        if size == 0:
            raise ProtocolError(BAD_FRAME, "empty audio frame")
        return AudioFrame(bytes(frame))
    if version == 2:
        if size < V2_HEADER_SIZE:
            raise ProtocolError(BAD_FRAME, f"v2 frame of {size} bytes is shorter than its 16-byte header")
        _ver, kind, _reserved, timestamp, payload_size = _V2.unpack_from(frame)
        if kind not in (V2_TYPE_OPUS, V2_TYPE_JSON):
            raise ProtocolError(BAD_FRAME, f"v2 frame has unknown type {kind}")
        payload = bytes(frame[V2_HEADER_SIZE:])
        if payload_size != len(payload):
            raise ProtocolError(BAD_FRAME, f"v2 header says {payload_size} payload bytes, frame carries {len(payload)}")
        if not payload:
            raise ProtocolError(BAD_FRAME, "v2 frame has an empty payload")
        return AudioFrame(payload, timestamp, kind == V2_TYPE_JSON)
    if size < V3_HEADER_SIZE:
        raise ProtocolError(BAD_FRAME, f"v3 frame of {size} bytes is shorter than its 4-byte header")
    # The type byte is ignored, as the firmware does on receive.
    _kind, _reserved, payload_size = _V3.unpack_from(frame)
    payload = bytes(frame[V3_HEADER_SIZE:])
    if payload_size != len(payload):
        raise ProtocolError(BAD_FRAME, f"v3 header says {payload_size} payload bytes, frame carries {len(payload)}")
    if not payload:
        raise ProtocolError(BAD_FRAME, "v3 frame has an empty payload")
    return AudioFrame(payload)


def pack_audio(payload: bytes, version: int, timestamp: int = 0) -> bytes:
    """Build a binary frame for one Opus packet. ``timestamp`` is only sent by v2 (ignored by v1/v3)."""
    _check_version(version)
    if not payload:
        raise ValueError("refusing to send an empty audio payload (the peer would reject it)")
    if version == 1:
        return bytes(payload)
    if version == 2:
        if not 0 <= timestamp <= _MAX_U32:
            raise ValueError(f"v2 timestamp {timestamp} does not fit in uint32")
        if len(payload) > _MAX_U32:
            raise ValueError("payload too large for a v2 frame")
        return _V2.pack(2, V2_TYPE_OPUS, 0, timestamp, len(payload)) + bytes(payload)
    if len(payload) > MAX_V3_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a v3 frame (max {MAX_V3_PAYLOAD})")
    return _V3.pack(0, 0, len(payload)) + bytes(payload)


def frame_samples(sample_rate: int, frame_ms: int) -> int:
    """Samples per channel in one frame (16000 Hz, 60 ms -> 960); refuses non-integral results."""
    if isinstance(sample_rate, bool) or isinstance(frame_ms, bool):
        raise ValueError("sample_rate and frame_ms must be integers")
    if sample_rate <= 0 or frame_ms <= 0:
        raise ValueError(f"sample_rate and frame_ms must be positive, got {sample_rate}, {frame_ms}")
    samples, rest = divmod(sample_rate * frame_ms, 1000)
    if rest:
        raise ValueError(f"{frame_ms} ms at {sample_rate} Hz is not a whole number of samples")
    return samples
