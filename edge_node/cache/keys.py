"""Cache keys. A TTS key names exactly what the device would hear; an answer key names a question
up to case, punctuation and spacing ("What's the capital of France?" == "whats the capital of france")."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_PUNCT_RE = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")
_APOSTROPHES = "'\u2019\u2018`"


def normalize_question(text: str) -> str:
    """Lowercase, drop punctuation (apostrophes join: "what's" -> "whats"), collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).lower()
    for ch in _APOSTROPHES:
        text = text.replace(ch, "")
    text = _PUNCT_RE.sub(" ", text).replace("_", " ")
    return _SPACE_RE.sub(" ", text).strip()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def tts_key(voice: str, text: str, rate: int, frame_ms: int) -> str:
    """Exact text: punctuation changes Piper's prosody, so "Paris." and "Paris!" are different audio."""
    return "tts:" + _digest(voice, str(int(rate)), str(int(frame_ms)), text)


def answer_key(question: str) -> str:
    return "answer:" + _digest(normalize_question(question))
