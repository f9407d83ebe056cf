"""The intent fast path: device commands and built-ins answered by rules, without the LLM.

The bundled LLM answers commands with nonsense (docs/models.md §4) and costs a second of CPU, while a
rule costs microseconds and is right. Rules cover volume, brightness and theme (mapped to the
device's MCP tools, or to legacy IoT things on old firmware), time and date, the wake greeting,
and any other MCP tool whose name words all appear in the utterance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

_UNITS = {
    "zero": 0,
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
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_STOP_WORDS = {"self", "set", "get", "the", "a", "an", "to", "of", "please", "my", "your"}


def normalise(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^\w\s%'-]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def find_number(text: str) -> int | None:
    """First number in the utterance, digits or English words ("fifty five" -> 55)."""
    digits = re.search(r"\b(\d{1,3})\b", text)
    if digits:
        return int(digits.group(1))
    words = text.replace("-", " ").split()
    for i, word in enumerate(words):
        if word in _TENS:
            value = _TENS[word]
            if i + 1 < len(words) and words[i + 1] in _UNITS and _UNITS[words[i + 1]] < 10:
                value += _UNITS[words[i + 1]]
            return value
        if word in _UNITS:
            return _UNITS[word]
        if word == "hundred":
            return 100
    return None


@dataclass(slots=True)
class DeviceAction:
    """One thing to do on the device: an MCP tool call or a legacy IoT command."""

    kind: Literal["mcp", "iot"]
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    method: str = ""  # IoT method


@dataclass(slots=True)
class IntentMatch:
    intent: str
    say: str
    emotion: str = "neutral"
    action: DeviceAction | None = None


@dataclass(slots=True)
class DeviceCapabilities:
    """What the device said it can do: MCP tools by name, legacy IoT things and their methods."""

    tools: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> inputSchema
    iot_methods: dict[str, set[str]] = field(default_factory=dict)  # thing -> methods
    state: dict[str, Any] = field(default_factory=dict)  # last known volume/brightness
    # The device announced MCP but its tools list has not arrived (yet, or ever): "no such control"
    # would then be a guess, so the answer says the device is not ready instead.
    tools_pending: bool = False


@dataclass(frozen=True, slots=True)
class _Setting:
    """A 0-100 device setting: how it is asked for and which tool (or IoT method) sets it."""

    key: str
    spoken: str
    trigger: str
    up: tuple[str, ...]
    down: tuple[str, ...]
    tool: str
    iot: tuple[str, str]


_VOLUME = _Setting(
    "volume",
    "volume control",
    r"\b(volume|louder|quieter|softer|mute|unmute)\b|音量",
    ("up", "louder", "increase", "raise", "大"),
    ("down", "quieter", "softer", "lower", "decrease", "小"),
    "self.audio_speaker.set_volume",
    ("Speaker", "SetVolume"),
)
_BRIGHTNESS = _Setting(
    "brightness",
    "screen brightness control",
    r"\b(brightness|brighter|dimmer|dim)\b|亮度",
    ("up", "brighter", "increase", "raise"),
    ("down", "dimmer", "dim", "lower", "decrease"),
    "self.screen.set_brightness",
    ("Backlight", "SetBrightness"),
)
_THEME = r"\b(dark|light)\s+(mode|theme)\b"
# Words of a device command whose tool is known only from the device's list (the generic rule): on,
# off, open, close... Broad on purpose: a false hit only costs a turn mcp.tool_wait_s while a new
# device's tools list is still on its way.
_COMMAND = (
    r"\b(turn|switch|put)\b.*\b(on|off)\b|\b(open|close|enable|disable|lock|unlock|activate|"
    r"deactivate|start|stop|play|pause|resume|mute|unmute|reboot|restart)\b|打开|关闭|开灯|关灯"
)


class IntentMatcher:
    def __init__(self, wake_words: list[str], timezone_offset_min: int | None = None) -> None:
        self._wake = {normalise(w) for w in wake_words}
        self._tz_offset = timezone_offset_min

    def now(self) -> datetime:
        if self._tz_offset is None:
            return datetime.now().astimezone()
        return datetime.now(timezone(timedelta(minutes=self._tz_offset)))

    def may_need_device(self, text: str) -> bool:
        """Could ``text`` be a command for one of the device's own tools? Decides whether a turn
        waits (briefly) for a tools list still on its way: the time, the date, a greeting, a
        cached answer or an LLM question never do."""
        t = normalise(text)
        if not t or t in self._wake or t.rstrip("!.?") in self._wake:
            return False
        return any(re.search(pattern, t) for pattern in (_VOLUME.trigger, _BRIGHTNESS.trigger, _THEME, _COMMAND))

    def match(self, text: str, caps: DeviceCapabilities) -> IntentMatch | None:
        t = normalise(text)
        if not t:
            return None
        if t in self._wake or t.rstrip("!.?") in self._wake:
            return IntentMatch("greeting", "Hi! How can I help you?", "happy")
        for rule in (self._volume, self._brightness, self._theme, self._time, self._date, self._generic_tool):
            found = rule(t, caps)
            if found is not None:
                return found
        return None

    # -- device settings -------------------------------------------------------------------
    def _level(self, t: str, current: int, up: tuple[str, ...], down: tuple[str, ...]) -> int | None:
        number = find_number(t)
        if number is not None:
            return max(0, min(100, number))
        if any(w in t for w in up):
            return min(100, current + 20)
        if any(w in t for w in down):
            return max(0, current - 20)
        return None

    def _setting(self, t: str, caps: DeviceCapabilities, setting: _Setting) -> IntentMatch | None:
        if not re.search(setting.trigger, t):
            return None
        current = int(caps.state.get(setting.key, 50))
        level: int | None
        if setting.key == "volume" and re.search(r"\bunmute\b", t):
            level = max(current, 50)
        elif setting.key == "volume" and re.search(r"\bmute\b", t):
            level = 0
        else:
            level = self._level(t, current, setting.up, setting.down)
        if level is None:
            return None
        action = self._device_action(caps, setting.tool, {setting.key: level}, setting.iot)
        if action is None:
            if caps.tools_pending:
                return IntentMatch(
                    setting.key, f"Sorry, I can't reach the {setting.spoken} yet. Please try again.", "sad"
                )
            return IntentMatch(setting.key, f"Sorry, this device has no {setting.spoken} I can reach.", "sad")
        caps.state[setting.key] = level
        return IntentMatch(setting.key, f"Okay, {setting.key} set to {level}.", "happy", action)

    def _volume(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        return self._setting(t, caps, _VOLUME)

    def _brightness(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        return self._setting(t, caps, _BRIGHTNESS)

    def _theme(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        found = re.search(_THEME, t)
        if not found or "self.screen.set_theme" not in caps.tools:
            return None
        theme = found.group(1)
        action = DeviceAction("mcp", "self.screen.set_theme", {"theme": theme})
        return IntentMatch("theme", f"Okay, switched to the {theme} theme.", "happy", action)

    def _device_action(
        self, caps: DeviceCapabilities, tool: str, args: dict[str, Any], iot: tuple[str, str]
    ) -> DeviceAction | None:
        if tool in caps.tools:
            return DeviceAction("mcp", tool, args)
        thing, method = iot
        if method in caps.iot_methods.get(thing, set()):
            return DeviceAction("iot", thing, args, method)
        return None

    # -- built-ins ---------------------------------------------------------------------------
    def _time(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        if not re.search(r"\bwhat('s| is)? (the )?time\b|\bwhat time\b|\btime is it\b|几点", t):
            return None
        now = self.now()
        spoken = now.strftime("%I:%M %p").lstrip("0")
        return IntentMatch("time", f"It's {spoken}.", "neutral")

    def _date(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        if not re.search(r"\b(what('s| is)? (the |today's )?date|what day is it|which day is it)\b|几号|星期几", t):
            return None
        now = self.now()
        return IntentMatch("date", f"Today is {now.strftime('%A, %B')} {now.day}, {now.year}.", "neutral")

    def _generic_tool(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        """Any device tool whose name words all occur in the utterance (e.g. self.light.turn_on)."""
        words = set(t.split())
        best: tuple[int, str] | None = None
        for name, schema in caps.tools.items():
            parts = {p for p in re.split(r"[._\-]", name.lower()) if p and p not in _STOP_WORDS}
            if not parts or not parts <= words:
                continue
            required = (schema or {}).get("required") or []
            if required:
                continue  # arguments we cannot fill by rule: leave it to a smarter route
            if best is None or len(parts) > best[0]:
                best = (len(parts), name)
        if best is None:
            return None
        spoken = " ".join(p for p in re.split(r"[._\-]", best[1]) if p and p != "self")
        return IntentMatch("device_tool", f"Okay, done: {spoken}.", "happy", DeviceAction("mcp", best[1], {}))
