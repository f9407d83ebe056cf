from __future__ import annotations

import numpy as np

from shared.audio.resample import pcm_to_float, resample
from shared.audio.wav import read_wav, write_wav


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


def test_22050_to_24000_keeps_length_and_frequency() -> None:
    t = np.arange(22050) / 22050
    pcm = (0.5 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    out = resample(pcm, 22050, 24000)
    assert out.dtype == np.int16
    assert abs(out.size - 24000) <= 2
    assert abs(dominant_hz(out, 24000) - 440) < 3
    assert 0.9 < np.abs(out).max() / np.abs(pcm).max() < 1.1


def test_identity_and_downsample() -> None:
    pcm = (np.random.default_rng(0).standard_normal(1600) * 1000).astype(np.int16)
    assert resample(pcm, 16000, 16000) is pcm
    assert abs(resample(pcm, 48000, 16000).size - 533) <= 1


def test_pcm_to_float_range() -> None:
    f = pcm_to_float(np.array([-32768, 0, 32767], dtype=np.int16))
    assert f.dtype == np.float32
    assert f[0] == -1.0 and f[1] == 0.0 and 0.999 < f[2] <= 1.0


def test_wav_round_trip_and_stereo_mixdown(tmp_path) -> None:
    import wave

    pcm = np.arange(-500, 500, dtype=np.int16)
    write_wav(tmp_path / "a.wav", pcm, 16000)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and np.array_equal(back, pcm)

    stereo = np.stack([np.full(100, 1000, np.int16), np.full(100, 3000, np.int16)], axis=1)
    with wave.open(str(tmp_path / "s.wav"), "wb") as wf:
        wf.setnchannels(2)
        wf.setsampwidth(2)
        wf.setframerate(8000)
        wf.writeframes(stereo.tobytes())
    mono, rate = read_wav(tmp_path / "s.wav")
    assert rate == 8000 and mono.shape == (100,) and int(mono[0]) == 2000
