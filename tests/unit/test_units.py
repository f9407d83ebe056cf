"""Unit conversions by rule: a quantity of one unit in another of the same kind, English and Chinese, exactly;
anything else (another kind, a unit that varies like a month or a year, other questions) is left alone."""

from __future__ import annotations

from decimal import Decimal

import pytest

from edge_node.routing.intent import DeviceCapabilities, IntentMatcher
from edge_node.routing.units import convert


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("How many minutes are in an hour?", "60"),
        ("How many seconds are in a minute?", "60"),
        ("How many hours are in a day?", "24"),
        ("How many hours in a day", "24"),
        ("how many minutes are there in three hours", "180"),
        ("How many days are in a week?", "7"),
        ("How many metres is 5 kilometres?", "5000"),
        ("convert 2.5 kilograms to grams", "2500"),
        ("What is 90 minutes in hours?", "1.5"),
        ("What's 500 millilitres in litres?", "0.5"),
    ],
)
def test_english_conversions(question: str, value: str) -> None:
    result = convert(question, "en")
    assert result is not None and result.value == Decimal(value), (question, result)


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("一小时有多少分钟？", "60"),
        ("一分钟有多少秒？", "60"),
        ("一天有多少个小时？", "24"),
        ("一周有几天？", "7"),
        ("三公里是多少米", "3000"),
        ("两千克等于多少克", "2000"),
        ("一百二十分钟是多少小时", "2"),
    ],
)
def test_chinese_conversions(question: str, value: str) -> None:
    result = convert(question, "zh")
    assert result is not None and result.value == Decimal(value), (question, result)
    assert result.text.endswith("。") and "等于" in result.text


@pytest.mark.parametrize(
    ("question", "language"),
    [
        ("How many days are in a year?", "en"),  # 365 or 366: not a fixed unit
        ("How many minutes are in a kilometre?", "en"),  # another kind
        ("How many minutes are in a minute?", "en"),
        ("How many legs does a spider have?", "en"),
        ("Set the volume to 40.", "en"),
        ("一年有几个月？", "zh"),
        ("中国的首都是哪里", "zh"),
        ("一公里有多少秒", "zh"),
        ("音量调到三十", "zh"),
    ],
)
def test_anything_else_is_not_a_conversion(question: str, language: str) -> None:
    assert convert(question, language) is None


def test_conversions_are_answered_by_the_intent_rules() -> None:
    matcher = IntentMatcher(["hello xiaozhi", "你好小智"], timezone_offset_min=0)
    en = matcher.match("How many minutes are in three hours?", DeviceCapabilities())
    zh = matcher.match("一天有多少个小时？", DeviceCapabilities(), "zh")
    assert en is not None and en.say == "3 hours is 180 minutes."
    assert zh is not None and zh.say == "1天等于24小时。"
