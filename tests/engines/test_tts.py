from __future__ import annotations

import time

import numpy as np
import pytest

from edge_node.engines.tts import PiperTts, encode_for_device
from shared.audio.opus import OpusDecoder, OpusEncoder
from shared.config import TtsConfig


@pytest.fixture(scope="module")
def tts() -> PiperTts:
    return PiperTts(TtsConfig())


def test_synthesize_plausible_duration(tts: PiperTts) -> None:
    assert tts.sample_rate == 22050
    started = time.perf_counter()
    pcm = tts.synthesize("Okay, I turned on the kitchen light.")
    elapsed = time.perf_counter() - started
    seconds = pcm.size / tts.sample_rate
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert 1.2 < seconds < 4.0, seconds
    assert np.abs(pcm).max() > 2000  # not silence
    print(f"\npiper: {seconds:.2f} s audio in {elapsed * 1000:.0f} ms, RTF {elapsed / seconds:.3f}")


def test_synthesize_two_sentences_is_longer_and_empty_is_empty(tts: PiperTts) -> None:
    one = tts.synthesize("Hello there.")
    two = tts.synthesize("Hello there. It is sunny today.")
    assert two.size > one.size * 1.5
    assert tts.synthesize("   ").size == 0


def test_encode_for_device_60ms_24k(tts: PiperTts) -> None:
    pcm = tts.synthesize("The weather is nice.")
    encoder = OpusEncoder(24000, 60)
    packets = encode_for_device(pcm, tts.sample_rate, encoder)
    expected_samples = round(pcm.size * 24000 / tts.sample_rate)
    assert len(packets) == -(-expected_samples // 1440)
    decoder = OpusDecoder(24000)
    decoded = [decoder.decode(p) for p in packets]
    assert all(d.size == 1440 for d in decoded)
    assert np.abs(np.concatenate(decoded)).max() > 1000
    # The shared encoder is reset per call: the same input gives the same packets.
    assert encode_for_device(pcm, tts.sample_rate, encoder) == packets
