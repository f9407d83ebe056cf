"""Which questions may be answered from the answer cache.

A cached answer is replayed to a different device, in a different conversation, days later. That
is only right for a question whose answer depends on nothing but its own words. The rules below
are deliberately conservative: a wrongly refused question costs one LLM turn, a wrongly cached
one gives a device a wrong answer for a week. A question is reusable only when all of these hold:

1. It is English text of 3 to 25 words (Chinese: below). The word rules below are English; a fragment ("Why?",
   "Paris?") is almost always a follow-up; a monologue is not a question worth caching.
2. No word points back at earlier turns or at something only the speaker can see: pronouns
   and deictics (it, that, this, they, he, she, them, those, there is fine), "again", "more",
   "another", "else", "same", "why not", "go on" -- "Tell me more about it" means nothing alone.
3. It does not start with a connective that continues a conversation ("and", "but", "so",
   "what about", "how about"): "And Germany?" has no pronoun but is still a follow-up.
4. No word makes the answer depend on when or where it is asked: time, date, now, today,
   tomorrow, yesterday, weather, news, latest, current, price, here, nearby... ("what time is
   it" is answered by the intent path anyway, but must never be replayed from a cache).
5. No personal context: I, my, me, we, our... ("What should I eat?" depends on who asks). The
   one exception is "me" as the listener of a request ("tell me a joke", "give me a fun fact"):
   that names who hears the answer, not what it depends on.
6. Nothing about the device's own state (volume, battery, brightness): the LLM cannot know it.

Chinese questions (any Han character) follow the same six rules with Chinese words, matched as
substrings since Chinese is written without spaces: 4 to 40 characters of Han text (no Latin
letters: a mixed question is rare and its words would escape both lists); no 它/这/那/刚才/再/还有
(rule 2, 3); no 今天/现在/天气/新闻/价格/这里/附近... (rule 4); no 我/你/咱 (rule 5: 你 as well,
since "你喜欢什么" asks about this assistant's persona, which may differ per device); nothing
about 音量/亮度/电量/屏幕 (rule 6). "我们" is personal too: "我们呼吸需要什么" is general, but
"我们几点出发" is not, and the rules cannot tell them apart.

``history_len`` is the number of earlier messages in the session. A question that passes the
rules does not refer to them, so it may be looked up whatever the history. Storing is stricter:
the router marks an LLM answer cacheable only when the LLM saw no history, so that no
conversation ("let's talk about snakes" ... "what is python?") leaks into a shared answer.
"""

from __future__ import annotations

import re

from edge_node.cache.keys import normalize_question

MIN_WORDS = 3
MAX_WORDS = 25

# Rule 2: references to earlier turns or to what the speaker points at.
_REFERENCE_WORDS = frozenset(
    """
    it its itself that this these those they them their theirs themselves he him his himself she
    her hers herself again more another else same previous former latter above aforementioned
    continue repeat elaborate
    """.split()
)
_REFERENCE_PHRASES = ("why not", "go on", "keep going", "what about", "how about", "which one", "other one")

# Rule 3: openings that continue an earlier turn.
_CONTINUATIONS = frozenset("and but so or also then plus because too".split())

# Rule 4: answers that change with the time or place of asking.
_TIME_PLACE_WORDS = frozenset(
    """
    time clock date today tonight tomorrow yesterday now currently current latest recent recently
    news weather forecast temperature raining snowing sunny outside weekend morning afternoon evening
    ago next last soon yet still anymore
    price prices cost costs stock stocks score scores rates exchange traffic
    president minister ceo champion leader mayor
    here nearby near local location
    """.split()
)

# Rule 5: personal context.
_PERSONAL_WORDS = frozenset("i im ive id me my mine myself we weve our ours us ourselves".split())
_REQUEST_VERBS = frozenset("tell give show teach".split())

# Rule 6: the device's own state.
_DEVICE_WORDS = frozenset("volume battery brightness theme screen device speaker wifi".split())


# The same rules in Chinese (matched as substrings: no spaces between words).
_ZH_CONTINUATIONS = tuple("那 还有 然后 所以 但是 可是 而且 另外 那么 和 或者 也".split())
_ZH_BANNED = tuple(
    """
    它 他 她 这 那 刚才 上面 之前 前面 再 继续 重复 别的 其他 同样 哪一个 另一个 为什么不
    时间 几点 日期 几号 星期几 今天 今晚 明天 昨天 后天 前天 现在 目前 当前 最近 最新 新闻 天气 气温
    下雨 下雪 预报 周末 早上 上午 中午 下午 晚上 今年 去年 明年 本周 下周 上周 价格 多少钱 股票 股价
    汇率 比分 交通 堵车 总统 主席 总理 首相 冠军 市长 这里 附近 本地 当地 位置 在哪儿
    我 你 咱 您
    音量 声音 亮度 电量 电池 屏幕 主题 设备 音箱 喇叭 网络
    """.split()
)  # lines: rule 2 (references), rule 4 (time and place), rule 5 (personal), rule 6 (the device)
_HAN = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")
ZH_MIN_CHARS = 4
ZH_MAX_CHARS = 40


def _is_reusable_zh(text: str) -> bool:
    han = len(_HAN.findall(text))
    if not ZH_MIN_CHARS <= han <= ZH_MAX_CHARS or _LATIN.search(text):
        return False
    norm = normalize_question(text)
    if norm.startswith(_ZH_CONTINUATIONS):
        return False
    return not any(word in norm for word in _ZH_BANNED)


def _is_english(text: str) -> bool:
    return all(ord(ch) < 0x250 for ch in text)  # Latin letters, digits, punctuation


def is_reusable_question(text: str, history_len: int = 0) -> bool:
    """True when the answer to ``text`` may be shared across devices and sessions (see module doc)."""
    del history_len  # the rules alone decide lookups; storing also needs an empty history (router)
    if not text:
        return False
    if _HAN.search(text):
        return _is_reusable_zh(text)
    if not _is_english(text):
        return False
    norm = normalize_question(text)
    words = norm.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if words[0] in _CONTINUATIONS:
        return False
    padded = f" {norm} "
    if any(f" {phrase} " in padded for phrase in _REFERENCE_PHRASES):
        return False
    banned = _REFERENCE_WORDS | _TIME_PLACE_WORDS | _PERSONAL_WORDS | _DEVICE_WORDS
    for i, word in enumerate(words):
        if word == "me" and i > 0 and words[i - 1] in _REQUEST_VERBS:
            continue
        if word in banned:
            return False
    return True
