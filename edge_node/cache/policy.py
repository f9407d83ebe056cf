"""Which questions may be answered from the answer cache.

A cached answer is replayed to a different device, in a different conversation, days later. That
is only right for a question whose answer depends on nothing but its own words. The rules below
are deliberately conservative: a wrongly refused question costs one LLM turn, a wrongly cached
one gives a device a wrong answer for a week. A question is reusable only when all of these hold:

1. It is English text of 3 to 25 words. The word rules below are English; a fragment ("Why?",
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

``history_len`` is the number of earlier messages in the session. A question that passes the
rules does not refer to them, so it may be looked up whatever the history. Storing is stricter:
the router marks an LLM answer cacheable only when the LLM saw no history, so that no
conversation ("let's talk about snakes" ... "what is python?") leaks into a shared answer.
"""

from __future__ import annotations

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


def _is_english(text: str) -> bool:
    return all(ord(ch) < 0x250 for ch in text)  # Latin letters, digits, punctuation


def is_reusable_question(text: str, history_len: int = 0) -> bool:
    """True when the answer to ``text`` may be shared across devices and sessions (see module doc)."""
    del history_len  # the rules alone decide lookups; storing also needs an empty history (router)
    if not text or not _is_english(text):
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
