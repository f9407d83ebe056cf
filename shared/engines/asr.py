"""Speech recognition engines: faster-whisper (default) and sherpa-onnx (SenseVoice / Paraformer).

Both take one whole utterance (int16 mono 16 kHz, as cut by the VAD) and are synchronous: the
caller runs them on a dedicated ASR thread. CTranslate2 and onnxruntime release the GIL while they
compute, so the event loop keeps moving audio meanwhile.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared import models
from shared.audio.resample import pcm_to_float
from shared.engines.config import AsrConfig
from shared.engines.errors import ModelError

# faster-whisper imports huggingface_hub; a local model path never needs the hub, and an edge node
# must never block on (or leak requests to) one.
os.environ["HF_HUB_OFFLINE"] = "1"

__all__ = [
    "AsrEngine",
    "AsrResult",
    "SherpaAsr",
    "WhisperAsr",
    "collapse_repeats",
    "load_asr",
    "validate_sherpa_files",
    "window_frames",
    "window_needs_fallback",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Below this peak (about -50 dBFS) the utterance is treated as silence: Whisper tends to
# hallucinate ("you", "Thank you.") on near-silent input, and the answer would be nonsense anyway.
SILENCE_PEAK = 100
SHERPA_PROBE_TIMEOUT_S = 120.0
# Whisper's mel features: 100 frames per second, the encoder's full window is 30 s.
FRAMES_PER_S = 100
FULL_WINDOW_S = 30
# Decode budget in the utterance window: new tokens = 20 + 12 per second of audio (fluent English
# is ~3-5 tokens/s), never more than the model allows.
TOKENS_BASE = 20
TOKENS_PER_S = 12
# Silence put before the speech in the short window (see _transcribe_window).
LEAD_PAD_SAMPLES = int(0.3 * SAMPLE_RATE)
# faster-whisper's defaults for dropping a segment as silence (no_speech_threshold, log_prob_threshold).
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0


@dataclass
class AsrResult:
    """A transcript with the figures the session logs and exports as metrics."""

    text: str
    language: str
    audio_ms: float
    compute_ms: float
    # Mean log-probability of the decoded tokens (Whisper): how sure the model was. Low on speech
    # in a language the model does not know, which is when the router escalates ASR to the cloud.
    avg_logprob: float | None = None


@functools.cache
def _converter(config: str) -> Any:
    from opencc import OpenCC

    return OpenCC(config)


def in_script(result: AsrResult, cfg: AsrConfig) -> AsrResult:
    """A Mandarin transcript in the configured script (``asr.chinese_script``); other languages as they are."""
    if cfg.chinese_script == "as_heard" or not result.text or not result.language.startswith("zh"):
        return result
    config = "t2s" if cfg.chinese_script == "simplified" else "s2t"
    return dataclasses.replace(result, text=_converter(config).convert(result.text))


class AsrEngine(Protocol):
    """What the session needs from an ASR backend."""

    name: str

    def transcribe(self, pcm: np.ndarray) -> AsrResult:
        """int16 mono 16 kHz in; synchronous, called from a worker thread."""
        ...


_WORD_NORM = re.compile(r"[^\w]+", re.UNICODE)
# A phrase of 2-20 CJK characters (with optional CJK punctuation) repeated 3+ times in a row.
_CJK_REPEAT = re.compile(
    r"([\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af][\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af，。、！？]{1,19}?)\1{2,}"
)


def collapse_repeats(text: str, min_repeats: int = 3) -> str:
    """Collapse a phrase repeated ``min_repeats``+ times in a row to one copy.

    Whisper sometimes loops on short or odd input ("Turn on the light. Turn on the light. ...");
    ``max_new_tokens`` bounds the cost, this removes the echo. Words are compared case- and
    punctuation-insensitively; the first copy is kept as written. Runs of CJK characters (no
    spaces) are handled separately at the character level.
    """
    text = _CJK_REPEAT.sub(r"\1", text)
    words = text.split()
    if len(words) < min_repeats:
        return text.strip()
    norm = [_WORD_NORM.sub("", w).lower() for w in words]
    out: list[str] = []
    i = 0
    n_words = len(words)
    while i < n_words:
        collapsed = False
        for size in range(1, (n_words - i) // min_repeats + 1):
            phrase = norm[i : i + size]
            if not any(phrase):
                continue
            reps = 1
            while norm[i + reps * size : i + (reps + 1) * size] == phrase:
                reps += 1
            if reps >= min_repeats:
                out.extend(words[i : i + size])
                i += reps * size
                collapsed = True
                break
        if not collapsed:
            out.append(words[i])
            i += 1
    return " ".join(out)


def window_frames(audio_s: float, min_window_s: float, margin_s: float) -> int:
    """Mel frames of the encoder window for an utterance of ``audio_s`` seconds.

    max(min_window_s, audio_s + margin_s), rounded up to a whole second, capped at 30 s.
    """
    seconds = math.ceil(max(min_window_s, audio_s + margin_s) - 1e-9)
    return min(FULL_WINDOW_S, max(1, seconds)) * FRAMES_PER_S


# A CJK phrase of 4+ characters said twice in a row (the CJK form of a doubled sentence).
_CJK_DOUBLE = re.compile(r"([\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]{4,}?)[，。、！？\s]*\1")
# A phrase this long said twice back to back is a loop, not speech ("Play some music. Play some music.").
DOUBLE_PHRASE_WORDS = 3


def _has_doubled_phrase(text: str, min_words: int = DOUBLE_PHRASE_WORDS) -> bool:
    norm = [w for w in (_WORD_NORM.sub("", w).lower() for w in text.split()) if w]
    n = len(norm)
    for size in range(min_words, n // 2 + 1):
        for i in range(n - 2 * size + 1):
            if norm[i : i + size] == norm[i + size : i + 2 * size]:
                return True
    return bool(_CJK_DOUBLE.search(text))


def window_needs_fallback(text: str, cut: bool) -> bool:
    """Whether a short-window decode looks like a loop and must be redone with the 30 s window.

    ``cut``: generation stopped at its token budget instead of at end-of-text. Otherwise a phrase
    repeated 3+ times in a row (what :func:`collapse_repeats` would remove), or a phrase of 3+ words
    said twice back to back, marks a loop. With a short window Whisper tends to transcribe the
    utterance and then start it again: a 6 s window gave "Turn on the kitchen light." six times, and
    an 8 s window gave "Play some music. Play some music." on espeak speech with trailing silence
    (docs/models.md §9).
    """
    if cut:
        return True
    if collapse_repeats(text).split() != text.split():
        return True
    return _has_doubled_phrase(text)


def _as_pcm16(pcm: np.ndarray) -> np.ndarray:
    arr = np.asarray(pcm)
    if arr.ndim != 1:
        raise ValueError(f"expected mono PCM as a 1-D array, got shape {arr.shape}")
    if arr.dtype != np.int16:
        arr = arr.astype(np.int16)
    return arr


def _is_silence(pcm: np.ndarray) -> bool:
    return pcm.size == 0 or int(np.abs(pcm.astype(np.int32)).max()) < SILENCE_PEAK


class WhisperAsr:
    """faster-whisper (CTranslate2, int8) with a bounded, greedy, timestamp-free decode.

    Greedy with a single temperature keeps the cost per utterance bounded (no fallback
    re-decodes); loops are cut by ``max_new_tokens`` and :func:`collapse_repeats`.

    ``encoder_window="utterance"`` (docs/models.md §9): the encoder's cost is set by its window, not by
    the speech in it, and faster-whisper always pads to 30 s. Here the log-mel features are padded
    only to the utterance's length plus a margin (>= ``min_window_s``) and the CTranslate2 model is
    called directly (encode + greedy generate). A decode that hits its token budget or looks like a
    loop (:func:`window_needs_fallback`) is redone once with the 30 s window (``window_fallbacks``
    counts those, each logged at INFO). Utterances over 30 s take the standard path directly.
    """

    def __init__(self, cfg: AsrConfig) -> None:
        from faster_whisper import WhisperModel

        path = Path(cfg.model_path) if cfg.model_path else models.whisper_tiny_en()
        if not (path / "model.bin").is_file():
            raise ModelError(f"no CTranslate2 Whisper model (model.bin) in {path}")
        self.cfg = cfg
        self.language = None if cfg.language in ("", "auto") else cfg.language
        try:
            self._model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=cfg.threads)
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError for bad files
            raise ModelError(f"cannot load Whisper model {path}: {exc}") from exc
        self.name = f"whisper:{path.name if path.name != 'model' else path.parent.name}"
        self.window_fallbacks = 0
        self._last_logprob: float | None = None  # of the latest decode (one instance, one thread)
        self._last_language: str | None = None  # detected by the latest short-window decode
        self._multilingual = bool(self._model.model.is_multilingual)
        self._tokenizers: dict[str, Any] = {}
        self._suppress: dict[str, list[int]] = {}

    def transcribe(self, pcm: np.ndarray) -> AsrResult:
        started = time.perf_counter()
        pcm = _as_pcm16(pcm)
        audio_ms = pcm.size * 1000 / SAMPLE_RATE
        if _is_silence(pcm):
            return AsrResult("", self.language or "", audio_ms, (time.perf_counter() - started) * 1000)
        audio = pcm_to_float(pcm)
        self._last_language = None
        if self.cfg.encoder_window == "utterance" and audio.size <= FULL_WINDOW_S * SAMPLE_RATE:
            self._last_logprob = None
            text, language, cut = self._transcribe_window(audio)
            if not window_needs_fallback(text, cut):
                elapsed = (time.perf_counter() - started) * 1000
                return in_script(AsrResult(text.strip(), language, audio_ms, elapsed, self._last_logprob), self.cfg)
            self.window_fallbacks += 1
            log.info(
                "asr: %.1f s utterance %s in the short window (%r): redoing it with the 30 s window",
                audio_ms / 1000,
                "hit its token budget" if cut else "repeated a phrase",
                text[:80],
            )
        text, language = self._transcribe_full(audio)
        elapsed = (time.perf_counter() - started) * 1000
        return in_script(AsrResult(text, language, audio_ms, elapsed, self._last_logprob), self.cfg)

    def _tokenizer(self, language: str) -> tuple[Any, list[int]]:
        """faster-whisper's Tokenizer for ``language`` and its suppress list, built once each."""
        if language not in self._tokenizers:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            tok = Tokenizer(self._model.hf_tokenizer, self._multilingual, task="transcribe", language=language)
            self._tokenizers[language] = tok
            # faster-whisper's default suppress_tokens=[-1]: non-speech symbols + special tokens.
            self._suppress[language] = list(get_suppressed_tokens(tok, [-1]))
        return self._tokenizers[language], self._suppress[language]

    def _transcribe_window(self, audio: np.ndarray) -> tuple[str, str, bool]:
        """Encode + greedy decode in a window that follows the utterance; (text, language, cut)."""
        import ctranslate2

        model = self._model.model
        # Speech from the very first sample (a device that streams as the user starts talking,
        # a VAD cut with no room for its pre-roll) is what makes a short window loop: "Set the
        # volume to 30." x7 and "Switch to Dart mode." x7 with no lead, the right text with
        # 0.3 s of it. Whisper was trained on clips that start with a breath of silence.
        audio = np.concatenate([np.zeros(LEAD_PAD_SAMPLES, dtype=np.float32), audio])
        audio_s = audio.size / SAMPLE_RATE
        frames = window_frames(audio_s, self.cfg.min_window_s, self.cfg.window_margin_s)
        # faster-whisper's extractor (last frame dropped, as its own path does). The padding is the
        # log-mel floor (max - 8 in log10 = max - 2 normalised), which is what OpenAI's pipeline
        # feeds for the zero samples it pads with, rather than faster-whisper's 0.0: on Piper clips
        # with no leading silence an 8 s window padded with 0.0 misread 3 of 12 and looped on 2,
        # the floor misread 1 and looped on none (before the lead pad above); with a pre-roll both gave
        # the same text.
        features = self._model.feature_extractor(audio)[:, :-1]
        floor = float(features.max()) - 2.0 if features.size else 0.0
        padded = np.full((1, features.shape[0], frames), floor, dtype=np.float32)
        used = min(frames, features.shape[1])
        padded[0, :, :used] = features[:, :used]
        encoder_output = model.encode(ctranslate2.StorageView.from_array(padded), to_cpu=False)

        language = self.language or "en"
        if self._multilingual and self.language is None:
            language = self._detect(model.detect_language(encoder_output)[0])
        elif not self._multilingual:
            language = "en"
        self._last_language = language
        tokenizer, suppress = self._tokenizer(language)
        # .en models: <|startoftranscript|><|notimestamps|>; multilingual: sot, language, transcribe, notimestamps.
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        budget = TOKENS_BASE + math.ceil(TOKENS_PER_S * audio_s)
        # CTranslate2's Whisper generate stops after max_length // 2 new tokens (it mirrors
        # OpenAI's sample_len = n_text_ctx // 2; measured with CTranslate2 4.8.5), hence the 2x.
        max_length = min(self._model.max_length, 2 * budget)
        result = model.generate(
            encoder_output,
            [prompt],
            beam_size=1,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress,
        )[0]
        tokens = result.sequences_ids[0]
        cut = len(tokens) >= max_length // 2
        # faster-whisper's silence rule: likely no speech and a low-confidence decode -> nothing.
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if result.scores else 0.0
        self._last_logprob = float(avg_logprob)
        if result.no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOG_PROB_THRESHOLD:
            return "", language, False
        return tokenizer.decode(tokens).strip(), language, cut

    def _detect(self, ranked: list[tuple[str, float]]) -> str:
        """The most likely language among the allowed ones (``asr.languages``; empty: any).

        Whisper ranks every language it knows; on a node that serves English and Mandarin a
        short utterance ranked Japanese or Cantonese first is still one of the two it serves.
        """
        allowed = self.cfg.languages
        for token, _prob in ranked:
            code = token[2:-2]
            if not allowed or code in allowed:
                return code
        return allowed[0] if allowed else "en"

    def _transcribe_full(self, audio: np.ndarray) -> tuple[str, str]:
        """faster-whisper's standard path: the fixed 30 s window."""
        language = self.language
        if language is None and self._multilingual and self.cfg.languages:
            # The short window (tried first) detected among the allowed languages; reuse its choice,
            # else let faster-whisper rank them and keep the best allowed one.
            language = self._last_language
            if language is None:
                _lang, _prob, ranked = self._model.detect_language(audio)
                language = self._detect([(f"<|{code}|>", prob) for code, prob in ranked])
        segments, info = self._model.transcribe(
            audio,
            language=language,
            beam_size=1,
            temperature=0.0,
            without_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
            max_new_tokens=self.cfg.max_new_tokens,
        )
        segments = list(segments)
        text = " ".join(seg.text.strip() for seg in segments).strip()
        if segments:
            self._last_logprob = float(sum(seg.avg_logprob for seg in segments) / len(segments))
        return collapse_repeats(text), info.language or self.language or ""


_TOKEN_LINE = re.compile(r"^(.*)\s(-?\d+)$")

# Runs in a child interpreter: sherpa-onnx calls exit() on a bad model instead of raising, so
# the first load of a file must not happen in the server process.
_PROBE = """
import json, sys
import sherpa_onnx
kind, kwargs = json.loads(sys.argv[1])
if kind == "sense_voice":
    sherpa_onnx.OfflineRecognizer.from_sense_voice(**kwargs)
else:
    sherpa_onnx.OfflineRecognizer.from_paraformer(**kwargs)
print("ok")
"""


def validate_sherpa_files(model: Path, tokens: Path) -> None:
    """Cheap checks first (files exist, non-empty, tokens.txt shaped "<token> <id>")."""
    for label, path in (("model", model), ("tokens", tokens)):
        if not str(path) or not path.is_file():
            raise ModelError(f"sherpa-onnx {label} file not found: {path}")
        if path.stat().st_size == 0:
            raise ModelError(f"sherpa-onnx {label} file is empty: {path}")
    try:
        lines = tokens.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read tokens file {tokens}: {exc}") from exc
    count = 0
    for number, line in enumerate(lines, 1):
        if line == "":
            continue
        if not _TOKEN_LINE.match(line):
            raise ModelError(f"{tokens}:{number}: expected '<token> <integer id>', got {line[:60]!r}")
        count += 1
    if count == 0:
        raise ModelError(f"tokens file {tokens} holds no tokens")


def _sherpa_kwargs(cfg: AsrConfig, model: Path, tokens: Path) -> tuple[str, dict[str, Any]]:
    if cfg.sherpa_model_type == "sense_voice":
        language = cfg.language if cfg.language in ("auto", "zh", "en", "ja", "ko", "yue") else "auto"
        return "sense_voice", {
            "model": str(model),
            "tokens": str(tokens),
            "num_threads": cfg.threads,
            "language": language,
            "use_itn": True,
        }
    return "paraformer", {"paraformer": str(model), "tokens": str(tokens), "num_threads": cfg.threads}


def probe_sherpa(kind: str, kwargs: dict[str, Any], timeout_s: float = SHERPA_PROBE_TIMEOUT_S) -> None:
    """Load the model once in a child process; raise ModelError if that process dies or hangs."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, json.dumps([kind, kwargs])],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"sherpa-onnx probe of {kwargs} timed out after {timeout_s:.0f} s") from exc
    if proc.returncode != 0 or "ok" not in proc.stdout:
        tail = (proc.stderr or proc.stdout or "").strip()[-1500:]
        raise ModelError(f"sherpa-onnx cannot load the {kind} model (probe exit {proc.returncode}): {tail}")


class SherpaAsr:
    """sherpa-onnx offline recognizer for SenseVoice or Paraformer ONNX files given by path."""

    def __init__(self, cfg: AsrConfig) -> None:
        if not cfg.model_path:
            raise ModelError("asr.backend=sherpa needs asr.model_path (the model.onnx file)")
        model = Path(cfg.model_path)
        tokens = Path(cfg.sherpa_tokens) if cfg.sherpa_tokens else model.with_name("tokens.txt")
        validate_sherpa_files(model, tokens)
        kind, kwargs = _sherpa_kwargs(cfg, model, tokens)
        probe_sherpa(kind, kwargs)

        import sherpa_onnx

        if kind == "sense_voice":
            self._recognizer = sherpa_onnx.OfflineRecognizer.from_sense_voice(**kwargs)
        else:
            self._recognizer = sherpa_onnx.OfflineRecognizer.from_paraformer(**kwargs)
        self.cfg = cfg
        self.language = cfg.language
        self.name = f"sherpa:{kind}:{model.name}"
        # One recognizer, one caller at a time (the ASR thread); the lock guards misuse.
        self._lock = threading.Lock()

    def transcribe(self, pcm: np.ndarray) -> AsrResult:
        started = time.perf_counter()
        pcm = _as_pcm16(pcm)
        audio_ms = pcm.size * 1000 / SAMPLE_RATE
        if _is_silence(pcm):
            return AsrResult("", self.language, audio_ms, (time.perf_counter() - started) * 1000)
        with self._lock:
            stream = self._recognizer.create_stream()
            stream.accept_waveform(SAMPLE_RATE, pcm_to_float(pcm))
            self._recognizer.decode_stream(stream)
            result = stream.result
        text = collapse_repeats(result.text.strip())
        language = getattr(result, "lang", "") or self.language
        language = language.strip("<|>") if isinstance(language, str) else self.language
        return in_script(AsrResult(text, language, audio_ms, (time.perf_counter() - started) * 1000), self.cfg)


def load_asr(cfg: AsrConfig) -> AsrEngine:
    """Build the configured backend; raises ModelError before anything could kill the process."""
    if cfg.backend == "sherpa":
        return SherpaAsr(cfg)
    return WhisperAsr(cfg)
