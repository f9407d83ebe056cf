"""English numbers said in words: what the intent rules, the arithmetic rule and the ASR benchmark's
normaliser read ("fifty five" -> 55, "one hundred and five" -> 105)."""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["SCALES", "TENS", "UNITS", "find_number_en", "parse_number_en"]

# "oh" is zero as in "two oh one"; callers that read ordinary speech may skip it.
UNITS: dict[str, int] = {
    "zero": 0,
    "oh": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS: dict[str, int] = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
SCALES: dict[str, int] = {"hundred": 100, "thousand": 1_000, "million": 1_000_000}


def find_number_en(text: str) -> int | None:
    """The first number in an utterance, digits (up to three) or words ("fifty five" -> 55, "hundred" -> 100)."""
    digits = re.search(r"\b(\d{1,3})\b", text)
    if digits:
        return int(digits.group(1))
    words = text.replace("-", " ").split()
    for i, word in enumerate(words):
        if word in TENS:
            value = TENS[word]
            if i + 1 < len(words) and words[i + 1] in UNITS and UNITS[words[i + 1]] < 10:
                value += UNITS[words[i + 1]]
            return value
        if word in UNITS:
            return UNITS[word]
        if word == "hundred":
            return 100
    return None


def parse_number_en(words: str) -> Decimal | None:
    """The value of a whole span that is one number: digits ("2.5") or words ("one hundred and five",
    "twenty-one", "a thousand", "minus seven"); None when the span is anything else."""
    words = words.strip()
    if re.fullmatch(r"-?\d+(?:\.\d+)?", words):
        return Decimal(words)
    tokens = [t for t in words.replace("-", " ").split() if t != "and"]
    negative = bool(tokens) and tokens[0] in ("minus", "negative")
    if negative:
        tokens = tokens[1:]
    if not tokens or tokens == ["a"]:
        return None
    total = current = 0
    seen = False
    for i, token in enumerate(tokens):
        if token in UNITS or token in TENS:
            current += UNITS.get(token, TENS.get(token, 0))
            seen = True
        elif token == "a" and i == 0:
            current, seen = 1, True  # "a thousand"
        elif token in SCALES and seen:
            if SCALES[token] == 100:
                current *= 100
            else:
                total += current * SCALES[token]
                current = 0
        else:
            return None
    value = Decimal(total + current)
    return -value if negative else value
