"""Binary audio framing v1/v2/v3 (docs/protocol.md §2.7)."""

from __future__ import annotations

import struct

import pytest

from shared.protocol import AudioFrame, ProtocolError, frame_samples, pack_audio, unpack_audio

OPUS = bytes(range(1, 121))  # stand-in for one Opus packet


# ---- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("payload", [b"\x00", b"\xf8\xff\xfe", OPUS, bytes(1500), bytes(65535)])
def test_round_trip(version: int, payload: bytes) -> None:
    frame = pack_audio(payload, version)
    got = unpack_audio(frame, version)
    assert got == AudioFrame(payload, 0, False)


@pytest.mark.parametrize("ts", [0, 1, 60, 123_456, 2**32 - 1])
def test_v2_timestamp_round_trip(ts: int) -> None:
    got = unpack_audio(pack_audio(OPUS, 2, timestamp=ts), 2)
    assert got.timestamp == ts and got.payload == OPUS


def test_v1_is_raw() -> None:
    assert pack_audio(OPUS, 1) == OPUS
    assert unpack_audio(OPUS, 1).payload == OPUS


def test_v2_header_layout() -> None:
    frame = pack_audio(b"abc", 2, timestamp=0x01020304)
    assert len(frame) == 16 + 3
    assert frame[:16] == bytes([0, 2, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 3])
    # XS gateway offsets: timestamp at 8, length at 12
    assert struct.unpack_from(">I", frame, 8)[0] == 0x01020304
    assert struct.unpack_from(">I", frame, 12)[0] == 3


def test_v3_header_layout() -> None:
    frame = pack_audio(b"abcd", 3)
    assert frame == bytes([0, 0, 0, 4]) + b"abcd"


def test_timestamp_ignored_by_v1_v3() -> None:
    assert pack_audio(OPUS, 1, timestamp=99) == OPUS
    assert pack_audio(OPUS, 3, timestamp=99) == pack_audio(OPUS, 3)
    assert unpack_audio(pack_audio(OPUS, 3, timestamp=99), 3).timestamp == 0


def test_unpack_accepts_bytearray_and_memoryview() -> None:
    frame = pack_audio(OPUS, 2, 7)
    assert unpack_audio(bytearray(frame), 2) == AudioFrame(OPUS, 7)
    got = unpack_audio(memoryview(frame), 2)
    assert got == AudioFrame(OPUS, 7) and type(got.payload) is bytes


# ---- v2 JSON type ----------------------------------------------------------------------------------


def test_v2_json_type_flagged() -> None:
    body = b'{"type":"listen","state":"start"}'
    frame = struct.pack(">HHIII", 2, 1, 0, 0, len(body)) + body
    got = unpack_audio(frame, 2)
    assert got.is_json is True and got.payload == body


def test_v2_ignores_header_version_field() -> None:
    # The device ignores the version field on receive; so do we.
    frame = struct.pack(">HHIII", 7, 0, 0, 5, 3) + b"abc"
    assert unpack_audio(frame, 2) == AudioFrame(b"abc", 5)


def test_v2_unknown_type_rejected() -> None:
    frame = struct.pack(">HHIII", 2, 9, 0, 0, 3) + b"abc"
    with pytest.raises(ProtocolError) as err:
        unpack_audio(frame, 2)
    assert err.value.code == "bad_frame" and "type 9" in err.value.message


def test_v3_type_byte_ignored() -> None:
    frame = bytes([5, 9, 0, 2]) + b"hi"
    assert unpack_audio(frame, 3) == AudioFrame(b"hi")


# ---- malformed frames ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "version", "words"),
    [
        (b"", 1, "empty"),
        (b"", 2, "shorter"),
        (bytes(15), 2, "shorter"),
        (b"", 3, "shorter"),
        (b"\x00\x00\x00", 3, "shorter"),
        (struct.pack(">HHIII", 2, 0, 0, 0, 0), 2, "empty"),
        (struct.pack(">BBH", 0, 0, 0), 3, "empty"),
        (struct.pack(">HHIII", 2, 0, 0, 0, 10) + b"abc", 2, "says 10"),
        (struct.pack(">HHIII", 2, 0, 0, 0, 2) + b"abc", 2, "says 2"),
        (struct.pack(">BBH", 0, 0, 10) + b"abc", 3, "says 10"),
        (struct.pack(">BBH", 0, 0, 1) + b"abc", 3, "says 1"),
        (bytes(20), 2, "says 0"),
        (OPUS, 2, "unknown type"),  # raw Opus read as v2: header garbage
    ],
)
def test_bad_frames(frame: bytes, version: int, words: str) -> None:
    with pytest.raises(ProtocolError) as err:
        unpack_audio(frame, version)
    assert err.value.code == "bad_frame"
    assert words in err.value.message


def test_v3_frame_read_as_v2_is_bad() -> None:
    with pytest.raises(ProtocolError):
        unpack_audio(pack_audio(OPUS, 3), 2)


def test_v2_frame_read_as_v3_is_bad() -> None:
    with pytest.raises(ProtocolError):
        unpack_audio(pack_audio(OPUS, 2), 3)


# ---- argument errors (server bugs, not peer errors) ------------------------------------------------


@pytest.mark.parametrize("version", [0, 4, -1, True, "1", None])
def test_bad_version_is_plain_value_error(version: object) -> None:
    with pytest.raises(ValueError) as err:
        unpack_audio(OPUS, version)  # type: ignore[arg-type]
    assert not isinstance(err.value, ProtocolError)
    with pytest.raises(ValueError):
        pack_audio(OPUS, version)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_pack_empty_payload_rejected(version: int) -> None:
    with pytest.raises(ValueError):
        pack_audio(b"", version)


def test_pack_v3_payload_limit() -> None:
    with pytest.raises(ValueError):
        pack_audio(bytes(65536), 3)


@pytest.mark.parametrize("ts", [-1, 2**32])
def test_pack_v2_timestamp_range(ts: int) -> None:
    with pytest.raises(ValueError):
        pack_audio(OPUS, 2, timestamp=ts)


# ---- frame_samples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "ms", "samples"),
    [(16000, 60, 960), (24000, 60, 1440), (16000, 20, 320), (48000, 120, 5760), (8000, 5, 40), (16000, 40, 640)],
)
def test_frame_samples(rate: int, ms: int, samples: int) -> None:
    assert frame_samples(rate, ms) == samples


@pytest.mark.parametrize(("rate", "ms"), [(0, 60), (16000, 0), (-16000, 60), (44100, 1), (True, 60)])
def test_frame_samples_rejects(rate: int, ms: int) -> None:
    with pytest.raises(ValueError):
        frame_samples(rate, ms)
