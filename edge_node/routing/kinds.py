"""What kind of question a turn is: the unit the local model's measured correctness is kept in.

The router escalates a turn when the local model is measurably weak at its kind of question in its
language (routing policy ``local_scores``, filled from ``xiaozhi-eval --quality``), rather than by a
keyword score: "why do cats purr" and "explain why the sky is blue" are ordinary explanations that a
keyword threshold missed, while "what is the capital of Japan" is a fact the small model knows. The
evaluator groups its question bank with this same function, so a score and the turns it routes are
the same kind by construction.

Kinds: ``explain`` (why / how does / what causes), ``advice`` (what should I / how can I), ``device``
(a request to the device itself), ``arithmetic`` (numbers to compute or convert), ``timer`` (a timer,
reminder or alarm), ``creative`` (a story, joke or poem), and ``fact`` for everything else.
"""

from __future__ import annotations

import re

__all__ = ["KINDS", "question_kind"]

KINDS = ("fact", "explain", "advice", "device", "arithmetic", "timer", "creative")

_EN: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("timer", re.compile(r"\b(timer|remind me|reminder|alarm|wake me)\b")),
    (
        "device",
        re.compile(
            r"\b(volume|louder|quieter|softer|brightness|brighter|dimmer|screen|mute|unmute|"
            r"turn (it|the \w+) (up|down))\b"
        ),
    ),
    (
        "arithmetic",
        re.compile(
            r"\b(plus|minus|times|multiplied by|divided by|percent of|squared|convert)\b"
            r"|\bhow many \w+ (are )?(there )?in (a|an|one|two|three|four|five|six|seven|eight|nine|ten|\d+)\b"
        ),
    ),
    ("creative", re.compile(r"\b(tell me a|write a|make up|sing)\b.*\b(story|joke|poem|song|riddle)\b")),
    (
        "advice",
        re.compile(
            r"\b(should i|should we|how can i|how do i|how should i|what can i do|tips?|advice|"
            r"is it (ok|okay|safe|good) to|how (long|often) should)\b"
        ),
    ),
    (
        "explain",
        re.compile(
            r"\b(why|explain|what causes|how (does|do|did|is|are) (a |an |the )?\w+( \w+)? "
            r"(work|form|grow|fly|happen|made|make)|how is \w+ made|what happens when)\b"
            r"|^how (does|do) "
        ),
    ),
)

_ZH: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("timer", re.compile(r"提醒|定时|计时|闹钟|叫醒")),
    ("device", re.compile(r"音量|声音|亮度|屏幕|静音|调大|调小|调高|调低|调亮|调暗")),
    (
        "arithmetic",
        re.compile(r"[加减乘除]|乘以|除以|等于几|多少(米|克|分钟|秒|小时|天|公里|千克|厘米)|百分之"),
    ),
    ("creative", re.compile(r"讲(个|一个)?(故事|笑话)|写(一首|首|个)?(诗|歌)|编(个|一个)?故事|唱")),
    ("advice", re.compile(r"应该|怎样才能|怎么才能|如何才能|怎么办|建议|可以吗|好不好|要不要")),
    ("explain", re.compile(r"为什么|为何|怎么形成|怎么来的|是怎么|是如何|原理|原因|解释")),
)


def question_kind(text: str, language: str = "en") -> str:
    """The kind of ``text`` in ``language`` (``en`` or ``zh``; another language is read as English)."""
    if language == "zh":
        for kind, pattern in _ZH:
            if pattern.search(text):
                return kind
        return "fact"
    t = " ".join(re.sub(r"[^\w'%]+", " ", text.lower()).split())
    for kind, pattern in _EN:
        if pattern.search(t):
            return kind
    return "fact"
