"""The intent fast path: rules that answer commands and built-ins without the LLM."""

from __future__ import annotations

import re

import pytest

from edge_node.language.numbers_en import find_number_en as find_number
from edge_node.routing.intent import DeviceCapabilities, IntentMatcher

TOOLS = {
    "self.get_device_status": {"type": "object", "properties": {}},
    "self.audio_speaker.set_volume": {
        "type": "object",
        "properties": {"volume": {"type": "integer"}},
        "required": ["volume"],
    },
    "self.screen.set_brightness": {
        "type": "object",
        "properties": {"brightness": {"type": "integer"}},
        "required": ["brightness"],
    },
    "self.screen.set_theme": {"type": "object", "properties": {"theme": {"type": "string"}}, "required": ["theme"]},
    "self.light.turn_on": {"type": "object", "properties": {}},
}


@pytest.fixture
def matcher() -> IntentMatcher:
    return IntentMatcher(["hello xiaozhi"], timezone_offset_min=0)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("set volume to 30", 30),
        ("fifty five percent", 55),
        ("volume twenty", 20),
        ("a hundred", 100),
        ("louder please", None),
    ],
)
def test_find_number(text: str, number: int | None) -> None:
    assert find_number(text) == number


@pytest.mark.parametrize(
    ("text", "volume"),
    [
        ("Set the volume to 30.", 30),
        ("volume 80", 80),
        ("Turn the volume up", 70),
        ("make it quieter", 30),
        ("Mute.", 0),
        ("volume fifty", 50),
        ("Set volume to 150", 100),
    ],
)
def test_volume_maps_to_the_mcp_tool(matcher: IntentMatcher, text: str, volume: int) -> None:
    caps = DeviceCapabilities(tools=dict(TOOLS), state={"volume": 50})
    match = matcher.match(text, caps)
    assert match is not None and match.action is not None
    assert match.action.kind == "mcp"
    assert match.action.name == "self.audio_speaker.set_volume"
    assert match.action.arguments == {"volume": volume}
    assert str(volume) in match.say


def test_volume_falls_back_to_legacy_iot(matcher: IntentMatcher) -> None:
    caps = DeviceCapabilities(iot_methods={"Speaker": {"SetVolume"}})
    match = matcher.match("set the volume to 20", caps)
    assert match is not None and match.action is not None
    assert (match.action.kind, match.action.name, match.action.method) == ("iot", "Speaker", "SetVolume")


def test_volume_without_any_control_says_so(matcher: IntentMatcher) -> None:
    match = matcher.match("set the volume to 20", DeviceCapabilities())
    assert match is not None and match.action is None and "no volume control" in match.say


def test_brightness_and_theme(matcher: IntentMatcher) -> None:
    caps = DeviceCapabilities(tools=dict(TOOLS))
    b = matcher.match("set brightness to 10", caps)
    assert b is not None and b.action is not None and b.action.arguments == {"brightness": 10}
    t = matcher.match("switch to dark mode", caps)
    assert t is not None and t.action is not None and t.action.arguments == {"theme": "dark"}


def test_generic_tool_by_name_words(matcher: IntentMatcher) -> None:
    caps = DeviceCapabilities(tools=dict(TOOLS))
    m = matcher.match("please turn on the light", caps)
    assert m is not None and m.action is not None and m.action.name == "self.light.turn_on"


@pytest.mark.parametrize("text", ["What time is it?", "what's the time", "Tell me what time it is."])
def test_time(matcher: IntentMatcher, text: str) -> None:
    m = matcher.match(text, DeviceCapabilities())
    assert m is not None and m.intent == "time"
    assert re.search(r"\d{1,2}:\d{2} (AM|PM)", m.say)


def test_date_and_greeting(matcher: IntentMatcher) -> None:
    d = matcher.match("What's the date today?", DeviceCapabilities())
    assert d is not None and d.intent == "date" and str(matcher.now().year) in d.say
    g = matcher.match("Hello Xiaozhi!", DeviceCapabilities())
    assert g is not None and g.intent == "greeting"


@pytest.mark.parametrize("text", ["What is the capital of France?", "Tell me a story", "", "   "])
def test_open_questions_are_left_to_the_llm(matcher: IntentMatcher, text: str) -> None:
    assert matcher.match(text, DeviceCapabilities(tools=dict(TOOLS))) is None


# -- Chinese ----------------------------------------------------------------------------------------


@pytest.fixture
def bilingual() -> IntentMatcher:
    return IntentMatcher(["hello xiaozhi", "你好小智"], timezone_offset_min=8 * 60)


@pytest.mark.parametrize(
    ("text", "volume"),
    [
        ("音量调到三十。", 30),
        ("把音量设为50", 50),
        ("音量百分之五十五", 55),
        ("声音调到八十", 80),
        ("声音大一点", 70),  # 一点 is "a bit", not the number one
        ("音量调高", 70),
        ("小声点", 30),
        ("静音", 0),
        ("音量調到三十", 30),  # Whisper sometimes writes traditional characters
        ("音量 调到 一百五十", 100),
    ],
)
def test_chinese_volume_commands(bilingual: IntentMatcher, text: str, volume: int) -> None:
    caps = DeviceCapabilities(tools=dict(TOOLS), state={"volume": 50})
    match = bilingual.match(text, caps, "zh")
    assert match is not None and match.action is not None, text
    assert match.action.name == "self.audio_speaker.set_volume"
    assert match.action.arguments == {"volume": volume}
    assert "音量" in match.say and re.search(r"[\u4e00-\u9fff]", match.say)


def test_chinese_brightness_theme_and_missing_controls(bilingual: IntentMatcher) -> None:
    caps = DeviceCapabilities(tools=dict(TOOLS), state={"brightness": 50})
    bright = bilingual.match("亮度百分之五十", caps, "zh")
    assert bright is not None and bright.action is not None and bright.action.arguments == {"brightness": 50}
    dimmer = bilingual.match("屏幕暗一点", caps, "zh")
    assert dimmer is not None and dimmer.action is not None and dimmer.action.arguments == {"brightness": 30}
    theme = bilingual.match("切换到深色模式", caps, "zh")
    assert theme is not None and theme.action is not None and theme.action.arguments == {"theme": "dark"}
    assert "深色" in theme.say
    bare = bilingual.match("音量调到三十", DeviceCapabilities(), "zh")
    assert bare is not None and bare.action is None and bare.emotion == "sad" and "音量" in bare.say


def test_chinese_time_date_and_greeting(bilingual: IntentMatcher) -> None:
    caps = DeviceCapabilities()
    time_match = bilingual.match("现在几点了？", caps, "zh")
    assert time_match is not None and time_match.intent == "time"
    spoken_time = r"现在是(凌晨|上午|中午|下午|晚上)[一二三四五六七八九十两]+点.*。"
    assert re.fullmatch(spoken_time, time_match.say), time_match.say
    assert not re.search(r"\d", time_match.say)  # read as Chinese numerals, not digits
    date = bilingual.match("今天几号", caps, "zh")
    assert date is not None and date.intent == "date" and "星期" in date.say and "月" in date.say
    for greeting in ("你好小智", "小智你好！", "你好，小智。"):
        match = bilingual.match(greeting, caps, "zh")
        assert match is not None and match.intent == "greeting" and match.say.startswith("你好"), greeting


def test_a_chinese_question_is_left_to_the_llm(bilingual: IntentMatcher) -> None:
    caps = DeviceCapabilities(tools=dict(TOOLS))
    for text in ("中国的首都是哪里？", "熊猫最喜欢吃什么？", "一年有几个月？"):
        assert bilingual.match(text, caps, "zh") is None, text


def test_english_replies_are_unchanged_by_the_phrase_table(matcher: IntentMatcher) -> None:
    """The English wording predates the phrase table; a device fleet's users hear the same words."""
    caps = DeviceCapabilities(tools=dict(TOOLS), state={"volume": 50})
    volume = matcher.match("set the volume to 20", caps)
    assert volume is not None and volume.say == "Okay, volume set to 20."
    greeting = matcher.match("Hello Xiaozhi!", caps)
    assert greeting is not None and greeting.say == "Hi! How can I help you?"
    missing = matcher.match("set the volume to 20", DeviceCapabilities())
    assert missing is not None and missing.say == "Sorry, this device has no volume control I can reach."


def test_a_chinese_command_may_need_the_devices_tools(bilingual: IntentMatcher) -> None:
    assert bilingual.may_need_device("音量调到三十")
    assert not bilingual.may_need_device("你好小智")
    assert not bilingual.may_need_device("现在几点了")


def test_arithmetic_is_a_rule_in_both_languages(bilingual: IntentMatcher) -> None:
    """Sums are computed, never asked of the model; the device's state is not touched."""
    caps = DeviceCapabilities(tools={"self.audio_speaker.set_volume": {}}, state={"volume": 50})
    en = bilingual.match("What is two plus three?", caps)
    assert en is not None and en.intent == "arithmetic" and en.say == "2 plus 3 is 5." and en.action is None
    zh = bilingual.match("十减四等于几？", caps, "zh")
    assert zh is not None and zh.intent == "arithmetic" and zh.say == "10减4等于6。" and zh.action is None
    decimals = bilingual.match("What is 2.5 plus 1.25?", caps)
    assert decimals is not None and decimals.say == "2.5 plus 1.25 is 3.75."
    # Commands with numbers stay commands.
    volume = bilingual.match("Set the volume to 40.", caps)
    assert volume is not None and volume.intent != "arithmetic"
    volume_zh = bilingual.match("音量调到三十", caps, "zh")
    assert volume_zh is not None and volume_zh.intent != "arithmetic"


def test_the_time_later_is_not_the_time_now(bilingual: IntentMatcher) -> None:
    """ "What time will it be in 20 minutes" used to be answered with the time now."""
    from datetime import UTC, datetime

    bilingual.now = lambda: datetime(2026, 12, 4, 14, 50, tzinfo=UTC)  # type: ignore[method-assign]
    caps = DeviceCapabilities()
    cases = {
        "What time will it be in 20 minutes?": "In 20 minutes it will be 3:10 PM.",
        "what time will it be in an hour": "In an hour it will be 3:50 PM.",
        "What time is it 45 minutes from now?": "In 45 minutes it will be 3:35 PM.",
        "What time is it?": "It's 2:50 PM.",
    }
    for question, answer in cases.items():
        found = bilingual.match(question, caps)
        assert found is not None and found.say == answer, (question, found)
    cases_zh = {
        "二十分钟后是几点？": "二十分钟后是下午三点十分。",
        "两个小时以后几点": "两个小时后是下午四点五十分。",
        "半小时后几点": "半小时后是下午三点二十分。",
    }
    for question, answer in cases_zh.items():
        found = bilingual.match(question, caps, "zh")
        assert found is not None and found.say == answer, (question, found)
