"""Every sentence the node says on its own, in each language it serves.

The LLM answers in the turn's language by its prompt; what the node says without it (a greeting, the
time, a device command's confirmation, busy, an apology) comes from this table, so a Mandarin speaker
never hears an English canned phrase. Templates take keyword fields (``str.format``; a template
ignores the fields it does not use, so callers pass every language's fields at once). English is the
fallback for a language without a table.
"""

from __future__ import annotations

from typing import Any

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "greeting": "Hi! How can I help you?",
        "busy": "Sorry, I'm busy right now. Please ask me again in a moment.",
        "filler": "One moment.",
        "slow_down": "You're asking very quickly. Please wait a moment before the next question.",
        "apology": "Sorry, I can't answer that right now.",
        "cut_off": "Sorry, I lost the rest of that answer.",
        "device_no_response": "Sorry, the device did not respond.",
        "setting_set": "Okay, {key} set to {level}.",
        "setting_pending": "Sorry, I can't reach the {spoken} yet. Please try again.",
        "setting_missing": "Sorry, this device has no {spoken} I can reach.",
        "theme_set": "Okay, switched to the {theme} theme.",
        "time": "It's {clock}.",
        "time_later": "In {amount} it will be {clock}.",
        "date": "Today is {weekday}, {month_name} {day}, {year}.",
        "device_tool": "Okay, done: {spoken}.",
        "tool_done": "Okay, done.",
        "tool_failed": "Sorry, that didn't work.",
        "calc_result": "That's {value}.",
        "timer_set": "Okay, I'll remind you in {amount}.",
        "timer_due": "Time's up!",
        "timer_due_with": "Reminder: {message}",
    },
    "zh": {
        "greeting": "你好！有什么可以帮你的吗？",
        "busy": "抱歉，我现在有点忙，请稍后再问我。",
        "filler": "稍等一下。",
        "slow_down": "你问得太快了，请稍等一下再问下一个问题。",
        "apology": "抱歉，我现在无法回答这个问题。",
        "cut_off": "抱歉，后面的回答丢失了。",
        "device_no_response": "抱歉，设备没有响应。",
        "setting_set": "好的，{name}已调到{level}。",
        "setting_pending": "抱歉，暂时还无法调节{name}，请稍后再试。",
        "setting_missing": "抱歉，这个设备没有我能调节的{name}。",
        "theme_set": "好的，已切换到{theme_name}模式。",
        "time": "现在是{period}{clock}。",
        "time_later": "{amount}后是{period}{clock}。",
        "date": "今天是{year}年{month}月{day}日，{weekday}。",
        "device_tool": "好的，已经完成了。",
        "tool_done": "好的，已经完成了。",
        "tool_failed": "抱歉，没有办成。",
        "calc_result": "结果是{value}。",
        "timer_set": "好的，{amount}后提醒你。",
        "timer_due": "时间到了！",
        "timer_due_with": "提醒：{message}",
    },
}

# Names of the settings and themes in each language, for the templates' {name} and {theme_name}.
SETTING_NAMES: dict[str, dict[str, str]] = {
    "zh": {"volume": "音量", "brightness": "亮度"},
}
THEME_NAMES: dict[str, dict[str, str]] = {"zh": {"dark": "深色", "light": "浅色"}}
WEEKDAYS_ZH = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")


def languages() -> list[str]:
    """The languages with a phrase table."""
    return list(PHRASES)


def say(language: str, key: str, /, **fields: Any) -> str:
    """The phrase ``key`` in ``language`` (English when the language has no table), filled with ``fields``.

    An unknown key is a programming error and raises KeyError: a missing translation must not pass
    silently as English."""
    table = PHRASES.get(language, PHRASES["en"])
    return table[key].format(**fields)
