from __future__ import annotations

import numpy as np
import opuslib_next
import pytest

from shared.audio.opus import AudioError, OpusDecoder, OpusEncoder


def tone(freq: float, seconds: float, rate: int, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


@pytest.mark.parametrize("frame_ms", [20, 40, 60])
def test_round_trip_16k(frame_ms: int) -> None:
    pcm = tone(440, 1.0, 16000)
    enc = OpusEncoder(16000, frame_ms, application="voip")
    packets = enc.encode_pcm(pcm)
    frame = 16000 * frame_ms // 1000
    assert len(packets) == -(-pcm.size // frame)
    dec = OpusDecoder(16000)
    parts = [dec.decode(p) for p in packets]
    assert all(p.dtype == np.int16 and p.size == frame for p in parts)
    out = np.concatenate(parts)
    # Skip the codec's start-up; the tone's level survives the round trip.
    assert 0.7 < rms(out[1600:]) / rms(pcm[1600:]) < 1.3


def test_encoder_24k_packets_decode_to_60ms() -> None:
    pcm = tone(300, 1.3, 24000)
    enc = OpusEncoder()  # 24 kHz, 60 ms, "audio"
    packets = enc.encode_pcm(pcm)
    assert len(packets) == -(-pcm.size // 1440) == 22
    dec = OpusDecoder(24000)
    assert [dec.decode(p).size for p in packets] == [1440] * len(packets)


def test_last_partial_frame_is_padded_and_empty_input() -> None:
    enc = OpusEncoder(16000, 60)
    assert len(enc.encode_pcm(np.ones(1000, dtype=np.int16))) == 2
    assert enc.encode_pcm(np.zeros(0, dtype=np.int16)) == []


def test_reset_gives_a_fresh_stream() -> None:
    pcm = tone(500, 0.5, 24000)
    enc = OpusEncoder()
    first = enc.encode_pcm(pcm)
    enc.encode_pcm(tone(900, 0.3, 24000))
    enc.reset()
    assert enc.encode_pcm(pcm) == first


@pytest.mark.parametrize("packet", [b"", b"\xff" * 50])
def test_garbage_raises_audio_error(packet: bytes) -> None:
    dec = OpusDecoder(16000)
    with pytest.raises(AudioError):
        dec.decode(packet)
    assert issubclass(AudioError, ValueError)
    # The decoder is still usable afterwards.
    good = OpusEncoder(16000, 20, application="voip").encode_pcm(tone(440, 0.02, 16000))[0]
    assert dec.decode(good).size == 320


def test_dtx_packets_decode() -> None:
    raw = opuslib_next.Encoder(16000, 1, opuslib_next.APPLICATION_VOIP)
    raw.dtx = 1
    packets = [raw.encode(np.zeros(960, dtype=np.int16).tobytes(), 960) for _ in range(10)]
    tiny = [p for p in packets if len(p) <= 3]
    assert tiny, [len(p) for p in packets]
    dec = OpusDecoder(16000)
    for p in packets:
        out = dec.decode(p)
        assert out.size == 960
    assert int(np.abs(dec.decode(tiny[0])).max()) < 1000  # silence / comfort noise


def test_long_frames_decode() -> None:
    """A 120 ms packet (the Opus maximum) decodes in one call."""
    raw = opuslib_next.Encoder(16000, 1, opuslib_next.APPLICATION_AUDIO)
    packet = raw.encode(tone(440, 0.12, 16000).tobytes(), 1920)
    assert OpusDecoder(16000).decode(packet).size == 1920
