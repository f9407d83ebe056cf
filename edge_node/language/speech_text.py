"""A reply sentence as the voice of its language should read it.

The display text (what the device shows, what ``tts/sentence_start`` carries) keeps digits and symbols; the
text handed to TTS is rewritten here. English is read as it is (Piper's espeak front end reads digits).
The bundled Chinese voice turns characters into pinyin and has no reading for Arabic digits, Latin
letters or symbols: left in, "音量30%" is spoken as "音量". So numbers become their Chinese readings (a
year or a long number digit by digit, a time as 点 and 分, a decimal with 点, a percentage as 百分之),
ASCII punctuation becomes its Chinese form (a pause the voice knows) and what cannot be read is dropped.
"""

from __future__ import annotations

import re

from edge_node.language.numbers_zh import read_digits_zh, read_number_zh

_TIME = re.compile(r"(\d{1,2})[:：](\d{2})")
_PERCENT = re.compile(r"(-?\d+(?:\.\d+)?)\s*[%％]")
_YEAR = re.compile(r"(\d{4})\s*年")
_DECIMAL = re.compile(r"((?<!\d)-)?(\d+)\.(\d+)")
_LONG_DIGITS = re.compile(r"\d{9,}")  # phone numbers, codes: digit by digit
_NUMBER = re.compile(r"((?<!\d)-)?(\d+)")
_TWO_BEFORE_MEASURE = re.compile(r"(?<![\d一二三四五六七八九十百千万亿零第])二(?=[个位只本件条张次天年岁种份台双])")
_ASCII_PUNCT = str.maketrans({",": "，", ".": "。", "?": "？", "!": "！", ";": "；", ":": "：", "(": "（", ")": "）"})
# Markdown and symbols the small models like to write; Latin letters are left to the voice to skip.
_UNREADABLE = re.compile(r"[*#_`~<>|\[\]{}\\^=+@$&]|[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F]")
_SPACES = re.compile(r"\s+")


def for_speech(text: str, language: str) -> str:
    """``text`` as the TTS of ``language`` reads it; unchanged for any language but Chinese."""
    if language != "zh":
        return text
    return _chinese(text)


def _decimal(sign: str | None, whole: str, frac: str) -> str:
    return ("负" if sign else "") + read_number_zh(int(whole)) + "点" + read_digits_zh(frac)


def _number(sign: str | None, digits: str) -> str:
    value = int(digits)
    if len(digits) > 1 and digits.startswith("0"):  # 007, 0571: a code, read digit by digit
        return ("负" if sign else "") + read_digits_zh(digits)
    return read_number_zh(-value if sign else value)


def _chinese(text: str) -> str:
    text = _UNREADABLE.sub("", text)
    text = _TIME.sub(lambda m: _clock(int(m.group(1)), int(m.group(2))), text)
    text = _PERCENT.sub(lambda m: "百分之" + _chinese_number(m.group(1)), text)
    text = _YEAR.sub(lambda m: read_digits_zh(m.group(1)) + "年", text)
    text = _LONG_DIGITS.sub(lambda m: read_digits_zh(m.group()), text)
    text = _DECIMAL.sub(lambda m: _decimal(m.group(1), m.group(2), m.group(3)), text)
    text = _NUMBER.sub(lambda m: _number(m.group(1), m.group(2)), text)
    text = _TWO_BEFORE_MEASURE.sub("两", text)
    text = text.translate(_ASCII_PUNCT)
    # A space between Han characters is no pause in Chinese; elsewhere it separates words.
    text = re.sub(r"(?<=[\u3400-\u9fff，。？！；：])\s+|\s+(?=[\u3400-\u9fff，。？！；：])", "", text)
    return _SPACES.sub(" ", text).strip()


def _chinese_number(raw: str) -> str:
    match = _DECIMAL.fullmatch(raw)
    if match:
        return _decimal(match.group(1), match.group(2), match.group(3))
    return _number("-" if raw.startswith("-") else "", raw.lstrip("-"))


def _clock(hour: int, minute: int) -> str:
    """12:30 -> 十二点三十分, 8:05 -> 八点零五分, 9:00 -> 九点."""
    if hour > 24 or minute > 59:
        return f"{read_number_zh(hour)}比{read_number_zh(minute)}"  # a score, not a time
    spoken_hour = "两" if hour == 2 else read_number_zh(hour)
    if minute == 0:
        return f"{spoken_hour}点"
    minutes = read_number_zh(minute) if minute >= 10 else "零" + read_number_zh(minute)
    return f"{spoken_hour}点{minutes}分"
