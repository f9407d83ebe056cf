"""The routing rules' measures of a turn: its language and how complex it is.

The schema of the rules (``shared/routing_config.py``) is shared with the cloud tools that check and
publish it; measuring a turn against them is the edge router's business alone, so it lives here.
"""

from __future__ import annotations

import re

from shared.routing_config import Complexity

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_WORD = re.compile(r"[\w']+", re.UNICODE)


def text_language(text: str, asr_language: str = "") -> str:
    """The turn's language: from the script when it says so (Hangul, kana, Han), else the ASR's."""
    if _HANGUL.search(text):
        return "ko"
    if _KANA.search(text):
        return "ja"
    if _CJK.search(text):
        return "zh"
    return (asr_language or "en").split("-")[0].lower()


def complexity_score(text: str, cfg: Complexity) -> float:
    """0..1: longer questions, "why/how/explain" questions and heavy topics score higher."""
    lowered = text.lower()
    words = _WORD.findall(lowered)
    if _CJK.search(text):
        length = len(_CJK.findall(text)) / 2  # about two characters to an English word
    else:
        length = len(words)
    score = min(0.5, 0.5 * length / cfg.long_words)
    padded = f" {' '.join(words)} "
    score += max((w for q, w in cfg.question_words.items() if f" {q.lower()} " in padded), default=0.0)
    score += sum(w for k, w in cfg.keywords.items() if f" {k.lower()} " in padded)
    return round(min(1.0, score), 3)
