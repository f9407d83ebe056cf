from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shared.engines.asr import SherpaAsr, WhisperAsr, collapse_repeats, load_asr
from shared.engines.config import AsrConfig
from shared.engines.errors import ModelError


def words(text: str) -> list[str]:
    return re.sub(r"[^\w\s]", "", text.lower()).split()


@pytest.fixture(scope="module")
def whisper() -> WhisperAsr:
    return WhisperAsr(AsrConfig())


def test_whisper_transcribes_a_command(whisper: WhisperAsr, espeak_16k: Callable[[str], np.ndarray]) -> None:
    pcm = espeak_16k("turn on the kitchen light")
    pcm = np.concatenate([np.zeros(4800, np.int16), pcm, np.zeros(8000, np.int16)])
    result = whisper.transcribe(pcm)
    assert words(result.text) == ["turn", "on", "the", "kitchen", "light"], result.text
    assert result.language == "en"
    assert result.audio_ms == pytest.approx(pcm.size / 16, abs=0.01)
    assert result.compute_ms > 0
    assert whisper.name.startswith("whisper:")
    print(f"\nwhisper tiny.en: {result.audio_ms:.0f} ms audio in {result.compute_ms:.0f} ms")


def test_whisper_silence_and_empty_give_empty_text(whisper: WhisperAsr) -> None:
    assert whisper.transcribe(np.zeros(16000, dtype=np.int16)).text == ""
    assert whisper.transcribe(np.zeros(0, dtype=np.int16)).text == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Turn on the light. Turn on the light. Turn on the light.", "Turn on the light."),
        ("hello hello hello world", "hello world"),
        ("I said yes, yes, yes, yes!", "I said yes,"),
        ("a b a b a b c", "a b c"),
        ("one two one two", "one two one two"),  # only twice: kept
        ("the cat sat on the mat", "the cat sat on the mat"),
        (
            "Okay. Set a timer for ten minutes. Set a timer for ten minutes. Set a timer for ten minutes",
            "Okay. Set a timer for ten minutes.",
        ),
        ("长城长城长城很长", "长城很长"),
        ("", ""),
    ],
)
def test_collapse_repeats(text: str, expected: str) -> None:
    assert collapse_repeats(text) == expected


def test_load_asr_picks_backend(whisper: WhisperAsr, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_asr(AsrConfig(backend="sherpa", model_path=str(tmp_path / "none.onnx")))


def write_tokens(path: Path) -> Path:
    path.write_text("<blk> 0\n<s> 1\n</s> 2\n▁the 3\na 4\n  5\n", encoding="utf-8")
    return path


def test_sherpa_missing_files(tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens.txt")
    with pytest.raises(ModelError, match="model file not found"):
        SherpaAsr(AsrConfig(backend="sherpa", model_path=str(tmp_path / "model.onnx"), sherpa_tokens=str(tokens)))
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        SherpaAsr(AsrConfig(backend="sherpa", model_path=str(model), sherpa_tokens=str(tokens)))
    model.write_bytes(b"x" * 10)
    with pytest.raises(ModelError, match="tokens file not found"):
        SherpaAsr(AsrConfig(backend="sherpa", model_path=str(model), sherpa_tokens=str(tmp_path / "no.txt")))
    with pytest.raises(ModelError, match="needs asr.model_path"):
        SherpaAsr(AsrConfig(backend="sherpa"))


def test_sherpa_malformed_tokens(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(os.urandom(4096))
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blk> 0\nthis line has no id\n", encoding="utf-8")
    with pytest.raises(ModelError, match="tokens.txt:2"):
        SherpaAsr(AsrConfig(backend="sherpa", model_path=str(model), sherpa_tokens=str(tokens)))
    tokens.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelError, match="tokens"):
        SherpaAsr(AsrConfig(backend="sherpa", model_path=str(model), sherpa_tokens=str(tokens)))


@pytest.mark.parametrize("model_type", ["sense_voice", "paraformer"])
def test_sherpa_garbage_model_is_rejected_without_killing_us(tmp_path: Path, model_type: str) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(np.random.default_rng(7).bytes(64 * 1024))
    tokens = write_tokens(tmp_path / "tokens.txt")
    cfg = AsrConfig(backend="sherpa", sherpa_model_type=model_type, model_path=str(model), sherpa_tokens=str(tokens))
    with pytest.raises(ModelError, match="probe exit") as info:
        load_asr(cfg)
    assert "cannot load" in str(info.value)
    # Still here: the crash happened in the probe's child process.
    assert os.getpid() > 0


def test_multilingual_whisper_reports_the_turns_language_among_the_served_ones(
    espeak_16k: Callable[[str], np.ndarray],
) -> None:
    """A bilingual node's ASR (multilingual Whisper base, languages [en, zh]) names each utterance's language,
    and never one the node does not serve. Mandarin from the bundled Chinese voice (espeak-ng's is not
    intelligible to Whisper: it is heard as Thai)."""
    from shared.client.speech import ZhSpeechUnavailable, synthesize_zh_16k
    from shared.models import whisper_base_multilingual

    try:
        (mandarin,) = synthesize_zh_16k(["今天天气很好，我们去公园散步吧。"])
    except ZhSpeechUnavailable as exc:
        pytest.skip(str(exc))

    asr = WhisperAsr(AsrConfig(model_path=str(whisper_base_multilingual()), language="auto", languages=["en", "zh"]))
    pad = np.zeros(4800, np.int16)
    chinese = asr.transcribe(np.concatenate([pad, mandarin, pad]))
    english = asr.transcribe(np.concatenate([pad, espeak_16k("turn on the kitchen light"), pad]))
    assert chinese.language == "zh", chinese
    assert re.search(r"[\u4e00-\u9fff]", chinese.text), chinese.text
    assert english.language == "en", english


def test_language_detection_keeps_to_the_allowed_languages() -> None:
    """Whisper ranks every language it knows; the pick is the best-ranked allowed one, else the first allowed."""
    asr = WhisperAsr.__new__(WhisperAsr)
    asr.cfg = AsrConfig(language="auto", languages=["en", "zh"])
    ranked = [("<|ja|>", 0.5), ("<|zh|>", 0.3), ("<|en|>", 0.2)]
    assert asr._detect(ranked) == "zh"
    assert asr._detect([("<|ko|>", 0.9)]) == "en"
    asr.cfg = AsrConfig(language="auto")
    assert asr._detect(ranked) == "ja"


def test_mandarin_transcripts_come_in_the_configured_script() -> None:
    """Whisper often writes Mandarin in traditional characters; the node's rules and cache read simplified."""
    from shared.engines.asr import AsrResult, in_script

    heard = AsrResult("現在幾點了", "zh", 1000.0, 100.0)
    assert in_script(heard, AsrConfig()).text == "现在几点了"
    assert in_script(heard, AsrConfig(chinese_script="as_heard")).text == "現在幾點了"
    simplified = AsrResult("现在几点了", "zh", 1.0, 1.0)
    assert in_script(simplified, AsrConfig(chinese_script="traditional")).text == "現在幾點了"
    english = AsrResult("What time is it?", "en", 1.0, 1.0)
    assert in_script(english, AsrConfig()) is english
