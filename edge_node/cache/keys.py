"""Cache keys. A TTS key names exactly what the device would hear; an answer key names a question
up to case, punctuation and spacing ("What's the capital of France?" == "whats the capital of france")."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_PUNCT_RE = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")
_APOSTROPHES = "'\u2019\u2018`"
# Whitespace next to a Han character: Chinese has no spaces between words, but an ASR may put some in.
_HAN_SPACE_RE = re.compile(r"(?<=[\u3400-\u9fff])\s+|\s+(?=[\u3400-\u9fff])")


def normalize_question(text: str) -> str:
    """Lowercase, drop punctuation (apostrophes join: "what's" -> "whats"), collapse whitespace; no
    whitespace next to Chinese characters ("中国 的首都？" == "中国的首都")."""
    text = unicodedata.normalize("NFKC", text).lower()
    for ch in _APOSTROPHES:
        text = text.replace(ch, "")
    text = _PUNCT_RE.sub(" ", text).replace("_", " ")
    return _HAN_SPACE_RE.sub("", _SPACE_RE.sub(" ", text)).strip()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def tts_key(voice: str, text: str, rate: int, frame_ms: int, language: str = "en") -> str:
    """Exact text: punctuation changes Piper's prosody, so "Paris." and "Paris!" are different audio.
    The language is part of the key as well as the voice: one text (a number, a name) read by the
    English and the Chinese voice is two different sounds."""
    return "tts:" + _digest(language, voice, str(int(rate)), str(int(frame_ms)), text)


def answer_key(question: str, language: str = "en") -> str:
    """The answer depends on the language it is given in as well as the question (a bilingual
    node can answer one question in either, from different models)."""
    return "answer:" + _digest(language, normalize_question(question))
