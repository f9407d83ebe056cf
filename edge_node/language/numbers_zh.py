"""Chinese numerals both ways: what a Mandarin speaker says (三十, 百分之五十, 两) and how a number is read.

Whisper writes spoken numbers in Chinese as either digits or numerals ("音量调到30" or "音量调到三十"), so a
device command must accept both; and the Chinese voice reads pinyin, not digits, so every number in a reply
is spelled out before synthesis (``speech_text``).
"""

from __future__ import annotations

import re

_DIGITS = "零一二三四五六七八九"
_DIGIT_VALUE = {c: i for i, c in enumerate(_DIGITS)} | {"两": 2, "〇": 0, "○": 0, "兩": 2}
_SMALL_UNITS = {"十": 10, "百": 100, "千": 1000}
_BIG_UNITS = {"万": 10_000, "萬": 10_000, "亿": 100_000_000, "億": 100_000_000}
_NUMERAL_CHARS = "".join(_DIGIT_VALUE) + "".join(_SMALL_UNITS) + "".join(_BIG_UNITS)
_NUMERAL_RUN = re.compile(f"[{_NUMERAL_CHARS}]+")
_ARABIC = re.compile(r"\d+")
_PERCENT = re.compile(f"百分之([{_NUMERAL_CHARS}]+|\\d+)")


def read_number_zh(n: int) -> str:
    """How a number is said: 30 -> 三十, 105 -> 一百零五, 10000 -> 一万, 1_0000_0000 -> 一亿, -3 -> 负三."""
    if n < 0:
        return "负" + read_number_zh(-n)
    if n == 0:
        return "零"
    groups: list[int] = []
    while n:
        groups.append(n % 10_000)
        n //= 10_000
    units = ["", "万", "亿", "万亿"]
    out = ""
    pending_zero = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            pending_zero = bool(out)
            continue
        if out and (pending_zero or group < 1000):
            out += "零"
        out += _read_group(group) + units[index]
        pending_zero = False
    if out.startswith("一十"):  # 十五, not 一十五
        out = out[1:]
    return out


def _read_group(n: int) -> str:
    """1..9999 within a 万 group, with the zeros a reader says (一千零五, 一百零五)."""
    out = ""
    zero = False
    for value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        out += _DIGITS[digit] + unit
    return out


def read_digits_zh(digits: str) -> str:
    """Digit by digit, as a phone number or a year is read: 2026 -> 二零二六."""
    return "".join(_DIGITS[int(c)] for c in digits if c.isdigit())


def parse_numeral_zh(numeral: str) -> int | None:
    """The value of a run of Chinese numerals (三十 -> 30, 五十五 -> 55, 一百零五 -> 105, 两千 -> 2000,
    三五 -> 35 read digit by digit); None when it is not a number."""
    if not numeral or any(c not in _NUMERAL_CHARS for c in numeral):
        return None
    if all(c in _DIGIT_VALUE for c in numeral):  # 二零二六, 三五
        return int("".join(str(_DIGIT_VALUE[c]) for c in numeral))
    total = 0  # what the big units (万, 亿) have closed
    section = 0  # the part below 万 being read
    digit: int | None = None
    for char in numeral:
        if char in _DIGIT_VALUE:
            digit = _DIGIT_VALUE[char]
        elif char in _SMALL_UNITS:
            section += (1 if digit is None else digit) * _SMALL_UNITS[char]
            digit = None
        elif _BIG_UNITS[char] == 10_000:
            total += (section + (digit or 0) or 1) * 10_000
            section, digit = 0, None
        else:  # 亿 multiplies everything before it: 一万亿
            total = (total + section + (digit or 0) or 1) * 100_000_000
            section, digit = 0, None
    return total + section + (digit or 0)


def find_number_zh(text: str) -> int | None:
    """The first number in a Chinese utterance: digits or numerals; 百分之五十 is 50."""
    percent = _PERCENT.search(text)
    candidates: list[tuple[int, int]] = []
    if percent:
        raw = percent.group(1)
        value = int(raw) if raw.isdigit() else parse_numeral_zh(raw)
        if value is not None:
            candidates.append((percent.start(), value))
    for match in _ARABIC.finditer(text):
        candidates.append((match.start(), int(match.group())))
        break
    for match in _NUMERAL_RUN.finditer(text):
        if percent and percent.start() <= match.start() < percent.end():
            continue
        value = parse_numeral_zh(match.group())
        if value is not None and match.group() not in ("百", "千", "万", "亿"):
            candidates.append((match.start(), value))
            break
    if not candidates:
        return None
    return min(candidates)[1]
