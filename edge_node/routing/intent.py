"""The intent fast path: device commands and built-ins answered by rules, without the LLM.

The bundled LLM answers commands with nonsense (docs/models.md §4) and costs a second of CPU, while a
rule costs microseconds and is right. Rules cover volume, brightness and theme (mapped to the
device's MCP tools, or to legacy IoT things on old firmware), time and date, the wake greeting,
arithmetic on two numbers and unit conversions (``routing/arithmetic.py``, ``routing/units.py``: small
models get sums wrong), and any other MCP
tool whose name words all appear in the utterance.

Chinese turns (``language="zh"``) have rules of their own: Mandarin has no spaces and says numbers as
numerals (音量调到三十, 亮度百分之五十) and relative changes as 大一点 / 调低; Whisper may write a few of
these words in traditional characters, which are folded to simplified ones first. Replies come from the
language's phrase table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

from edge_node.language.numbers_en import find_number_en, parse_number_en
from edge_node.language.numbers_zh import find_number_zh, parse_numeral_zh
from edge_node.language.phrases import SETTING_NAMES, THEME_NAMES, WEEKDAYS_ZH, say
from edge_node.routing.arithmetic import solve
from edge_node.routing.units import convert

_STOP_WORDS = {"self", "set", "get", "the", "a", "an", "to", "of", "please", "my", "your"}


def normalise(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"[^\w\s%'-]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


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
    descriptions: dict[str, str] = field(default_factory=dict)  # MCP tool name -> its description


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


# -- Chinese -------------------------------------------------------------------------------------
# Traditional forms Whisper sometimes writes for the words the rules look for.
_TRAD = str.maketrans("調聲幾點號時間亮關開網燈門響體", "调声几点号时间亮关开网灯门响体")
_ZH_DROP = re.compile(r"[\s，。？！、；：,.?!;:\"'“”‘’（）()]+")
_ZH_VOLUME = re.compile(r"音量|声音|大声|小声|大点声|小点声|静音")
_ZH_BRIGHTNESS = re.compile(r"亮度|调亮|调暗|亮一点|暗一点|亮一些|暗一些|屏幕亮|太亮|太暗")
_ZH_VOLUME_UP = re.compile(r"大一点|大一些|大点|调大|调高|提高|增大|加大|高一点|大声|响一点")
_ZH_VOLUME_DOWN = re.compile(r"小一点|小一些|小点|调小|调低|降低|减小|低一点|小声|轻一点")
_ZH_BRIGHT_UP = re.compile(r"亮一点|亮一些|调亮|调高|提高|增加|高一点|太暗|大一点")
_ZH_BRIGHT_DOWN = re.compile(r"暗一点|暗一些|调暗|调低|降低|减少|低一点|太亮|小一点")
_ZH_UNMUTE = re.compile(r"取消静音|关闭静音|解除静音")
_ZH_THEME = re.compile(r"(深色|暗色|黑色|夜间|暗黑|浅色|亮色|白色|日间)(模式|主题)")
# "what time will it be in 20 minutes", "what time is it going to be in an hour", "... 2 hours from now"
_TIME_LATER_EN = re.compile(
    r"\b(?:in (?P<n>\d+|[a-z][a-z -]*?) (?P<unit>minutes?|hours?)\b(?! ago)|"
    r"(?P<n2>\d+|[a-z][a-z -]*?) (?P<unit2>minutes?|hours?) from now)"
)
# 二十分钟后是几点, 两个小时以后几点, 半小时后几点
_TIME_LATER_ZH = re.compile(r"(?P<n>\d+|[零一二两三四五六七八九十百]+|半)个?(?P<unit>分钟|小时|钟头)(?:以后|之后|后)")
_ZH_TIME = re.compile(r"几点|什么时间|现在时间|多少点")
_ZH_DATE = re.compile(r"几号|星期几|礼拜几|周几|几月几|什么日子|今天日期|哪一天")
_ZH_DEVICE = re.compile(f"{_ZH_VOLUME.pattern}|{_ZH_BRIGHTNESS.pattern}|{_ZH_THEME.pattern}|打开|关闭|开灯|关灯")
# "一点" / "一些" mean "a bit" in 大一点, not the number one.
_ZH_A_BIT = re.compile(r"[一]?点儿?|一些")


def fold_zh(text: str) -> str:
    """A Chinese utterance as the rules read it: simplified forms, no spaces or punctuation."""
    return _ZH_DROP.sub("", text.translate(_TRAD))


def _clock_zh(hour: int, minute: int) -> tuple[str, str]:
    """(period, clock) as a Mandarin speaker says the time: ("下午", "三点二十分")."""
    from edge_node.language.numbers_zh import read_number_zh

    if hour < 6:
        period = "凌晨"
    elif hour < 12:
        period = "上午"
    elif hour < 13:
        period = "中午"
    elif hour < 18:
        period = "下午"
    else:
        period = "晚上"
    twelve = hour % 12 or 12
    spoken = "两" if twelve == 2 else read_number_zh(twelve)
    if minute == 0:
        return period, f"{spoken}点整"
    minutes = read_number_zh(minute) if minute >= 10 else "零" + read_number_zh(minute)
    return period, f"{spoken}点{minutes}分"


class IntentMatcher:
    def __init__(self, wake_words: list[str], timezone_offset_min: int | None = None) -> None:
        self._wake = {normalise(w) for w in wake_words}
        # Chinese wake words, and the same greeting in the order people also say it (小智你好).
        self._wake_zh = {fold_zh(w) for w in wake_words if re.search(r"[\u4e00-\u9fff]", w)}
        self._wake_zh |= {w[2:] + w[:2] for w in self._wake_zh if w.startswith("你好") and len(w) > 2}
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
        if not t or t in self._wake or t.rstrip("!.?") in self._wake or fold_zh(text) in self._wake_zh:
            return False
        if _ZH_DEVICE.search(fold_zh(text)):
            return True
        return any(re.search(pattern, t) for pattern in (_VOLUME.trigger, _BRIGHTNESS.trigger, _THEME, _COMMAND))

    def match(self, text: str, caps: DeviceCapabilities, language: str = "en") -> IntentMatch | None:
        """The rule that answers ``text`` (a turn in ``language``), or None: the turn needs an LLM."""
        if language == "zh":
            return self._match_zh(text, caps)
        t = normalise(text)
        if not t:
            return None
        if t in self._wake or t.rstrip("!.?") in self._wake:
            return IntentMatch("greeting", say("en", "greeting"), "happy")
        computed = solve(text, "en") or convert(text, "en")  # the raw text: normalise() drops "." and "+"
        if computed is not None:
            return IntentMatch("arithmetic", computed.text, "neutral")
        for rule in (self._volume, self._brightness, self._theme, self._time, self._date, self._generic_tool):
            found = rule(t, caps)
            if found is not None:
                return found
        return None

    # -- device settings -------------------------------------------------------------------
    def _level(self, t: str, current: int, up: tuple[str, ...], down: tuple[str, ...]) -> int | None:
        number = find_number_en(t)
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
        return self._set(caps, setting, level, "en")

    def _set(self, caps: DeviceCapabilities, setting: _Setting, level: int, language: str) -> IntentMatch:
        """Set ``setting`` to ``level`` on the device, or say why it cannot be."""
        names = {"spoken": setting.spoken, "key": setting.key, "level": level}
        names["name"] = SETTING_NAMES.get(language, {}).get(setting.key, setting.key)
        action = self._device_action(caps, setting.tool, {setting.key: level}, setting.iot)
        if action is None:
            missing = "setting_pending" if caps.tools_pending else "setting_missing"
            return IntentMatch(setting.key, say(language, missing, **names), "sad")
        caps.state[setting.key] = level
        return IntentMatch(setting.key, say(language, "setting_set", **names), "happy", action)

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
        return IntentMatch("theme", say("en", "theme_set", theme=theme), "happy", action)

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
        later = _TIME_LATER_EN.search(t)
        if later is not None:  # "what time will it be in 20 minutes": not the time now
            raw = (later["n"] or later["n2"]).strip()
            unit_word = later["unit"] or later["unit2"]
            amount = Decimal(1) if raw in ("a", "an", "one") else parse_number_en(raw)
            if amount is None or amount <= 0 or amount > 48 * 60:
                return None
            minutes = int(amount * (60 if unit_word.startswith("hour") else 1))
            at = (self.now() + timedelta(minutes=minutes)).strftime("%I:%M %p").lstrip("0")
            unit = unit_word if amount != 1 else unit_word.rstrip("s")
            return IntentMatch("time", say("en", "time_later", amount=f"{raw} {unit}", clock=at), "neutral")
        now = self.now()
        spoken = now.strftime("%I:%M %p").lstrip("0")
        return IntentMatch("time", say("en", "time", clock=spoken), "neutral")

    def _date(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        if not re.search(r"\b(what('s| is)? (the |today's )?date|what day is it|which day is it)\b|几号|星期几", t):
            return None
        now = self.now()
        fields = {"weekday": now.strftime("%A"), "month_name": now.strftime("%B"), "day": now.day, "year": now.year}
        return IntentMatch("date", say("en", "date", **fields), "neutral")

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
        return IntentMatch(
            "device_tool", say("en", "device_tool", spoken=spoken), "happy", DeviceAction("mcp", best[1], {})
        )

    # -- Chinese -----------------------------------------------------------------------------
    def _match_zh(self, text: str, caps: DeviceCapabilities) -> IntentMatch | None:
        t = fold_zh(text)
        if not t:
            return None
        if t in self._wake_zh or t in ("你好", "您好", "嗨"):
            return IntentMatch("greeting", say("zh", "greeting"), "happy")
        computed = solve(text, "zh") or convert(text, "zh")
        if computed is not None:
            return IntentMatch("arithmetic", computed.text, "neutral")
        for rule in (self._volume_zh, self._brightness_zh, self._theme_zh, self._time_zh, self._date_zh):
            found = rule(t, caps)
            if found is not None:
                return found
        return None

    @staticmethod
    def _level_zh(t: str, current: int, up: re.Pattern[str], down: re.Pattern[str]) -> int | None:
        """An absolute level (三十, 百分之五十, 50) or a relative step (大一点: +20, as in English)."""
        number = find_number_zh(_ZH_A_BIT.sub("", t))
        if number is not None:
            return max(0, min(100, number))
        if up.search(t):
            return min(100, current + 20)
        if down.search(t):
            return max(0, current - 20)
        return None

    def _volume_zh(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        if not _ZH_VOLUME.search(t):
            return None
        current = int(caps.state.get("volume", 50))
        level: int | None
        if _ZH_UNMUTE.search(t):
            level = max(current, 50)
        elif "静音" in t:
            level = 0
        else:
            level = self._level_zh(t, current, _ZH_VOLUME_UP, _ZH_VOLUME_DOWN)
        return None if level is None else self._set(caps, _VOLUME, level, "zh")

    def _brightness_zh(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        if not _ZH_BRIGHTNESS.search(t):
            return None
        level = self._level_zh(t, int(caps.state.get("brightness", 50)), _ZH_BRIGHT_UP, _ZH_BRIGHT_DOWN)
        return None if level is None else self._set(caps, _BRIGHTNESS, level, "zh")

    def _theme_zh(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        found = _ZH_THEME.search(t)
        if not found or "self.screen.set_theme" not in caps.tools:
            return None
        theme = "light" if found.group(1) in ("浅色", "亮色", "白色", "日间") else "dark"
        action = DeviceAction("mcp", "self.screen.set_theme", {"theme": theme})
        return IntentMatch("theme", say("zh", "theme_set", theme_name=THEME_NAMES["zh"][theme]), "happy", action)

    def _time_zh(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        if not _ZH_TIME.search(t):
            return None
        later = _TIME_LATER_ZH.search(t)
        if later is not None:  # 二十分钟后是几点: not the time now
            n, unit = later["n"], later["unit"]
            count = 0.5 if n == "半" else (int(n) if n.isdigit() else parse_numeral_zh(n))
            if not count or count > 48 * 60:
                return None
            minutes = int(count * (1 if unit == "分钟" else 60))
            at = self.now() + timedelta(minutes=minutes)
            period, clock = _clock_zh(at.hour, at.minute)
            amount = f"{n}个{unit}" if unit != "分钟" and n != "半" else f"{n}{unit}"
            return IntentMatch("time", say("zh", "time_later", amount=amount, period=period, clock=clock), "neutral")
        now = self.now()
        period, clock = _clock_zh(now.hour, now.minute)
        return IntentMatch("time", say("zh", "time", period=period, clock=clock), "neutral")

    def _date_zh(self, t: str, caps: DeviceCapabilities) -> IntentMatch | None:
        if not _ZH_DATE.search(t):
            return None
        now = self.now()
        fields = {"year": now.year, "month": now.month, "day": now.day, "weekday": WEEKDAYS_ZH[now.weekday()]}
        return IntentMatch("date", say("zh", "date", **fields), "neutral")
