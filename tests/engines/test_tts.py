from __future__ import annotations

import time

import numpy as np
import pytest

from edge_node.config import TtsConfig
from edge_node.engines.tts import PiperTts, encode_for_device
from shared.audio.opus import OpusDecoder, OpusEncoder


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


class _RecordingSession:
    """Wraps the real onnxruntime session and records the run options Piper's calls arrive with."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.options: list[object] = []

    def run(self, output_names: object, feeds: object, run_options: object = None) -> object:
        self.options.append(run_options)
        return self.real.run(output_names, feeds, run_options)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


@pytest.mark.parametrize("release", [True, False])
def test_release_arena_shrinks_after_every_sentence(release: bool) -> None:
    tts = PiperTts(TtsConfig(release_arena=release))
    session = tts._voice.session
    if release:
        recorder = _RecordingSession(session._session)  # type: ignore[attr-defined]
        session._session = recorder  # type: ignore[attr-defined]
    else:
        recorder = _RecordingSession(session)
        tts._voice.session = recorder  # type: ignore[assignment]
    pcm = tts.synthesize("One sentence here. And a second one there.")
    assert pcm.size > tts.sample_rate  # both sentences were spoken
    assert len(recorder.options) == 2  # Piper runs the model once per sentence
    for options in recorder.options:
        if release:
            assert options.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"  # type: ignore[attr-defined]
        else:
            assert options is None
