"""Arithmetic by rule: the four operations on two numbers, in English and Chinese, exactly; anything else
is left to the other rules and the model."""

from __future__ import annotations

from decimal import Decimal

import pytest

from edge_node.language.numbers_en import parse_number_en
from edge_node.routing.arithmetic import solve


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("What is two plus three?", "5"),
        ("ten minus four", "6"),
        ("What's 3 times 4?", "12"),
        ("twenty divided by five", "4"),
        ("twenty-one plus two", "23"),
        ("what does 7 times 8 equal", "56"),
        ("How much is 6 multiplied by 7?", "42"),
        ("add 3 and 4", "7"),
        ("subtract 4 from 10", "6"),
        ("multiply 12 by 3", "36"),
        ("What is 2.5 plus 1.25?", "3.75"),
        ("one hundred and five minus five", "100"),
        ("what is a thousand times two", "2000"),
        ("3 minus 5", "-2"),
        ("10-4", "6"),
        ("8 * 9", "72"),
    ],
)
def test_english_sums_are_exact(question: str, value: str) -> None:
    result = solve(question, "en")
    assert result is not None and result.value == Decimal(value), (question, result)
    assert result.text.endswith(".") and value in result.text


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("一加一等于几？", "2"),
        ("三加五等于几？", "8"),
        ("十减四等于几？", "6"),
        ("三乘以四等于几？", "12"),
        ("二十除以五等于几？", "4"),
        ("3+5等于几", "8"),
        ("请问一百零五减五是多少", "100"),
        ("三点五加一点五", "5"),
        ("两千除以四", "500"),
        # as Whisper base wrote them: homophones of the operator and of 等于几 between numbers
        ("三家五等余景", "8"),
        ("十剪四等于几", "6"),
        ("三成以四等于几", "12"),
    ],
)
def test_chinese_sums_are_exact(question: str, value: str) -> None:
    result = solve(question, "zh")
    assert result is not None and result.value == Decimal(value), (question, result)
    assert result.text.endswith("。") and "等于" in result.text


def test_inexact_division_is_rounded_and_says_so() -> None:
    en, zh = solve("What is 10 divided by 3?", "en"), solve("10除以3等于多少", "zh")
    assert en is not None and en.value == Decimal("3.33") and "about 3.33" in en.text
    assert zh is not None and zh.value == Decimal("3.33") and "约等于3.33" in zh.text


def test_division_by_zero_is_an_answer_not_an_error() -> None:
    en, zh = solve("divide 5 by 0", "en"), solve("五除以零", "zh")
    assert en is not None and en.value is None and "zero" in en.text
    assert zh is not None and zh.value is None and "零" in zh.text


@pytest.mark.parametrize(
    ("question", "language"),
    [
        ("Set the volume to 40.", "en"),
        ("What is the capital of France?", "en"),
        ("What time is it?", "en"),
        ("what is one plus", "en"),
        ("plus two", "en"),
        ("What is the plus side of two cars?", "en"),
        ("Tell me a joke about three plus four pirates.", "en"),
        ("subtract 4 by 10", "en"),
        ("音量调到三十", "zh"),
        ("一年有几个月", "zh"),
        ("中国的首都是哪里", "zh"),
        ("三个人加起来多大", "zh"),
        ("亮度百分之五十", "zh"),
        ("家里有几口人", "zh"),
        ("国家五个人", "zh"),
        ("", "en"),
    ],
)
def test_anything_else_is_not_arithmetic(question: str, language: str) -> None:
    assert solve(question, language) is None


def test_english_number_words() -> None:
    assert parse_number_en("forty two") == 42
    assert parse_number_en("twenty-one") == 21
    assert parse_number_en("one hundred and five") == 105
    assert parse_number_en("three thousand two hundred") == 3200
    assert parse_number_en("two million") == 2_000_000
    assert parse_number_en("minus seven") == -7
    for junk in ("", "a", "hundred", "the capital", "seven dwarfs"):
        assert parse_number_en(junk) is None, junk
