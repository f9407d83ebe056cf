"""The intent fast path: rules that answer commands and built-ins without the LLM."""

from __future__ import annotations

import re

import pytest

from edge_node.routing.intent import DeviceCapabilities, IntentMatcher, find_number

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
