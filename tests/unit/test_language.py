"""What the node says per language, Chinese numerals both ways, and text as the Chinese voice reads it."""

from __future__ import annotations

import random
import re

import pytest

from edge_node.language.numbers_zh import find_number_zh, parse_numeral_zh, read_number_zh
from edge_node.language.phrases import PHRASES, say
from edge_node.language.speech_text import for_speech

_HAN = re.compile(r"[\u4e00-\u9fff]")


def test_every_phrase_has_a_chinese_version_in_chinese() -> None:
    assert set(PHRASES["zh"]) == set(PHRASES["en"])
    fields = {"key": "volume", "name": "音量", "level": 30, "spoken": "volume control", "theme": "dark"}
    fields |= {"theme_name": "深色", "clock": "三点", "period": "下午", "weekday": "星期五", "month_name": "December"}
    fields |= {"day": 4, "month": 12, "year": 2026, "amount": "二十分钟", "value": "三十", "message": "喝水"}
    for key in PHRASES["zh"]:
        text = say("zh", key, **fields)
        assert len(_HAN.findall(text)) >= 3, (key, text)
        assert not re.search(r"[A-Za-z]", text), (key, text)


def test_english_phrases_and_fallbacks() -> None:
    assert say("en", "apology") == "Sorry, I can't answer that right now."
    assert say("en", "busy") == "Sorry, I'm busy right now. Please ask me again in a moment."
    assert say("fr", "apology") == say("en", "apology")  # a language without a table speaks English
    with pytest.raises(KeyError):
        say("zh", "no such phrase")


@pytest.mark.parametrize(
    ("n", "reading"),
    [(0, "零"), (10, "十"), (15, "十五"), (30, "三十"), (105, "一百零五"), (110, "一百一十"), (1005, "一千零五")]
    + [(10000, "一万"), (10001, "一万零一"), (120000, "十二万"), (100010000, "一亿零一万"), (-3, "负三")],
)
def test_numbers_are_read_as_a_speaker_says_them(n: int, reading: str) -> None:
    assert read_number_zh(n) == reading


def test_reading_and_parsing_agree() -> None:
    rng = random.Random(16)
    for n in [*range(2000), *(rng.randrange(10**11) for _ in range(3000))]:
        assert parse_numeral_zh(read_number_zh(n)) == n, n


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("音量调到三十", 30),
        ("音量调到30", 30),
        ("亮度百分之五十", 50),
        ("调到五十五", 55),
        ("两个", 2),
        ("百分之30", 30),
        ("一百零五", 105),
        ("今天天气很好", None),
    ],
)
def test_the_first_number_of_an_utterance(text: str, number: int | None) -> None:
    assert find_number_zh(text) == number


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("音量已调到30%。", "音量已调到百分之三十。"),
        ("现在是12:30。", "现在是十二点三十分。"),
        ("2026年12月4日", "二零二六年十二月四日"),
        ("圆周率约为3.14", "圆周率约为三点一四"),
        ("气温-5度", "气温负五度"),
        ("第二天有2个苹果", "第二天有两个苹果"),
        ("电话13812345678", "电话一三八一二三四五六七八"),
        ("**北京**是首都 😀", "北京是首都"),
        ("你好, 世界!", "你好，世界！"),
    ],
)
def test_chinese_text_is_read_without_digits_or_symbols(text: str, spoken: str) -> None:
    assert for_speech(text, "zh") == spoken


def test_english_text_is_read_as_written() -> None:
    text = "It's 3:30 PM, 25% done **now**."
    assert for_speech(text, "en") == text
