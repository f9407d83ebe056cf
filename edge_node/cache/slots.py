"""What a question is about, reduced to the words that change its answer: the semantic cache's guard.

A sentence embedding rates "how far is the moon" and "what's the distance to the moon" alike (0.98),
and also "which animals can fly" and "which animals cannot fly" (0.98), "two plus two" and "two plus
three" (0.98), "一米等于多少厘米" and "...毫米" (0.99). No similarity threshold separates them, so a
semantic hit also needs the two questions' *slots* to agree:

- ``concepts``: every content word, reduced to a concept ("far", "distance" -> DISTANCE; "largest",
  "biggest" -> LARGEST; "spiders" -> spider), with the words that only frame a question ("what",
  "tell me", "exactly", 的, 是, 请问...) left out. Names, things, attributes (big / hot / far / old),
  opposites (on / off, largest / smallest), units and seasons are all concepts, so a question about
  another one never matches. Negation is the concept NOT ("cannot" is can + NOT, 不会 is 会 + NOT).
- ``numbers``: the numbers in order, digits or words ("two", 十五, "second" as an ordinal), so 15 × 4
  is not 15 × 5 and 2 − 3 is not 3 − 2.

The sets must be equal. This is deliberately strict: a paraphrase that uses a word the lists do not
know ("Brazilians" for "Brazil") is a miss and costs one model turn; a near-miss that slipped
through would give a device a wrong answer for a week. The word lists are small and English /
Chinese only; ``bench/banks/paraphrases-*.yaml`` and ``near-misses-*.yaml`` measure them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from edge_node.language.numbers_en import SCALES, TENS, UNITS
from edge_node.language.numbers_zh import parse_numeral_zh as zh_to_int

# -- English ----------------------------------------------------------------------------------------
# Words that frame a question without changing what it asks. Question words that do change it (why,
# where, when, who) are concepts; "what", "which" and "how" are not ("how far" says DISTANCE).
_EN_FRAME = frozenset(
    """
    a an the is are was were be been being am do does did done to of in on at for from by with about as
    into onto over than then so very really exactly actually approximately roughly about just please
    what whats which how hows can could would should will shall may might must you your tell me give show
    share explain describe know let say
    there theres thing things kind type sort called name named mean means meaning definition
    many much number amount total lot lots some any all average usually typically normally generally
    look looks like take takes away world earth people someone something anyone anything one
    chemical city artist funny
    hey hi hello okay ok um uh erm hmm well excuse sorry
    """.split()
)
# Words with the same meaning here, by concept. Only for meanings where the answer cannot differ.
_EN_CONCEPTS: dict[str, str] = {}
for _concept, _words in {
    "DISTANCE": "far distance distant",
    "SIZE": "big size large huge",
    "HEIGHT": "tall height high",
    "TEMPERATURE": "hot temperature warm",
    "SPEED": "fast speed quick quickly travel travels",
    "AGE": "old age",
    "WEIGHT": "heavy weigh weighs weight",
    "LENGTH": "long length",
    "LARGEST": "largest biggest",
    "EAT": "eat eats eating ate food foods diet",
    "WRITE": "wrote write writes written author writer",
    "PAINT": "paint painted paints painter",
    "SPEAK": "speak speaks spoke spoken",
    "MAKE": "make makes made produce produces",
    "BOIL": "boil boils boiling",
    "FREEZE": "freeze freezes freezing frozen",
    "LIVE": "live lives living",
    "HAVE": "have has had",
    "JOKE": "joke jokes",
}.items():
    for _w in _words.split():
        _EN_CONCEPTS[_w] = _concept
# "have" frames "how many X does Y have" / "how many X are in Y": both say the same.
_EN_FRAME_CONCEPTS = frozenset({"HAVE", "MAKE"})
_EN_NEGATIONS = frozenset("not no never none nothing nobody neither nor without".split())
# Contractions after the apostrophe is dropped (normalisation): the verb, then NOT.
_EN_NEGATED = {
    "cannot": "can",
    "cant": "can",
    "dont": "do",
    "doesnt": "does",
    "didnt": "did",
    "isnt": "is",
    "arent": "are",
    "wasnt": "was",
    "werent": "were",
    "wont": "will",
    "wouldnt": "would",
    "shouldnt": "should",
    "couldnt": "could",
    "hasnt": "has",
    "havent": "have",
    "hadnt": "had",
    "mustnt": "must",
}
_EN_QUESTION_CONCEPTS = {"why": "WHY", "where": "WHERE", "when": "WHEN", "who": "WHO", "whom": "WHO", "whose": "WHO"}
# Number words, each read alone: "fifty five" is two numbers here, and two questions that say the
# same words agree ("oh" is not read as zero in a question).
_EN_UNITS: dict[str, float] = {
    **{word: value for word, value in UNITS.items() if word != "oh"},
    **TENS,
    **SCALES,
    "billion": 1_000_000_000,
    "half": 0.5,
    "twice": 2,
    "double": 2,
    "triple": 3,
}
_EN_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "last": -1,
}
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def _en_lemma(word: str) -> str:
    """Plural and third-person -s off a word ("spiders" -> "spider", "bones" -> "bone"); short words
    and words in -ss / -us / -is are kept ("gas", "glass", "virus", "axis")."""
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _en_slots(norm: str) -> tuple[frozenset[str], tuple[float, ...]]:
    concepts: set[str] = set()
    numbers: list[float] = []
    for word in norm.split():
        if _NUMBER_RE.fullmatch(word):
            numbers.append(float(word))
            continue
        if word in _EN_UNITS:
            numbers.append(float(_EN_UNITS[word]))
            continue
        if word in _EN_ORDINALS:
            numbers.append(float(_EN_ORDINALS[word]) + 0.001)  # "second" is not "two"
            continue
        if word in _EN_NEGATIONS:
            concepts.add("NOT")
            continue
        if word in _EN_NEGATED:
            concepts.add("NOT")
            word = _EN_NEGATED[word]
        if word in _EN_QUESTION_CONCEPTS:
            concepts.add(_EN_QUESTION_CONCEPTS[word])
            continue
        concept = _EN_CONCEPTS.get(word) or _EN_CONCEPTS.get(_en_lemma(word))
        if concept is not None:
            if concept not in _EN_FRAME_CONCEPTS:
                concepts.add(concept)
            continue
        if word in _EN_FRAME or _en_lemma(word) in _EN_FRAME:
            continue
        concepts.add(_en_lemma(word))
    return frozenset(concepts), tuple(numbers)


# -- Chinese ----------------------------------------------------------------------------------------
# Words first (longest match), then single characters. A word maps to a concept ("" = frames the
# question only); a character not listed is its own concept (熊, 猫, 法, 国...).
_ZH_WORDS: dict[str, str] = {
    "为什么": "WHY",
    "为何": "WHY",
    "怎么": "",
    "怎样": "",
    "如何": "",
    "什么": "",
    "多少": "",
    "哪个": "",
    "哪一个": "",
    "哪一颗": "",
    "哪颗": "",
    "哪条": "",
    "哪座": "",
    "哪种": "",
    "是哪里": "",
    "在哪里": "WHERE",
    "在哪儿": "WHERE",
    "在哪": "WHERE",
    "住在": "LIVE",
    "哪里": "WHERE",
    "请问": "",
    "你好": "",
    "嗨": "",
    "喂": "",
    "那个": "",
    "我想": "",
    "想问": "",
    "问一下": "",
    "好奇": "",
    "请": "",
    "一下": "",
    "一共": "",
    "总共": "",
    "平时": "",
    "通常": "",
    "一般": "",
    "大概": "",
    "大约": "",
    "东西": "",
    "解释": "",
    "意思": "",
    "告诉": "",
    "知道": "",
    "看起来": "",
    "起来": "",
    "出来": "",
    "做出来": "MAKE",
    "世界上": "",
    "陆地上": "陆地",
    "哪个城市": "",
    "距离": "DISTANCE",
    "多远": "DISTANCE",
    "离": "DISTANCE",
    "远": "DISTANCE",
    "高度": "HEIGHT",
    "多高": "HEIGHT",
    "长度": "LENGTH",
    "多长": "LENGTH",
    "速度": "SPEED",
    "光速": "光SPEED",
    "每秒走多远": "SPEED",
    "多大": "SIZE",
    "大小": "SIZE",
    "沸点": "BOIL",
    "沸腾": "BOIL",
    "烧开": "BOIL",
    "会开": "BOIL",
    "冰点": "FREEZE",
    "结冰": "FREEZE",
    "月球": "MOON",
    "月亮": "MOON",
    "珠穆朗玛峰": "EVEREST",
    "珠峰": "EVEREST",
    "万里长城": "长城",
    "大熊猫": "熊猫",
    "熊猫": "熊猫",
    "海洋": "OCEAN",
    "洋": "OCEAN",
    "化学式": "FORMULA",
    "分子式": "FORMULA",
    "酿蜜": "MAKE蜜",
    "酿蜂蜜": "MAKE蜜",
    "蜂蜜": "蜜",
    "酿": "MAKE",
    "笑话": "JOKE",
    "作者": "PAINT",
    "画": "PAINT",
    "成年人": "人",
    "人身上": "人体",
    "人体": "人体",
    "喜欢吃": "吃",
    "跑得": "",
    "不": "NOT",
    "没": "NOT",
    "没有": "NOT",
    "别": "NOT",
    "无": "NOT",
    "非": "NOT",
}
# Characters that only frame a question or a sentence.
_ZH_FRAME = frozenset("的是有吗呢吧啊呀了着过和与到在会几么哪个只条颗块张位种座怎样里儿等于能要来给大家讲说写会谁")
_ZH_CONCEPT_CHARS = {"谁": "WHO"}
_ZH_WORD_LEN = max(len(w) for w in _ZH_WORDS)
_ZH_NUMERAL = re.compile(r"[零〇两二三四五六七八九十百千万亿]+|一(?=[十百千万亿])")
# 一 alone reads as "a" (一只蜘蛛, 一年) far more often than as the number; in sums it is the number.
_ZH_ARITHMETIC = re.compile(r"[加减乘除]")
_ZH_ORDINAL = re.compile(r"第([零一两二三四五六七八九十百]+|\d+)")


def _zh_slots(norm: str) -> tuple[frozenset[str], tuple[float, ...]]:
    concepts: set[str] = set()
    numbers: list[float] = []
    text = norm
    arithmetic = bool(_ZH_ARITHMETIC.search(text))

    def ordinal(m: re.Match[str]) -> str:
        value = zh_to_int(m.group(1)) if not m.group(1).isdigit() else int(m.group(1))
        numbers.append(float(value or 0) + 0.001)
        return " "

    text = _ZH_ORDINAL.sub(ordinal, text)
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch.isdigit():
            m = _NUMBER_RE.match(text, i)
            assert m is not None
            numbers.append(float(m.group()))
            i = m.end()
            continue
        size = next((n for n in range(min(_ZH_WORD_LEN, len(text) - i), 1, -1) if text[i : i + n] in _ZH_WORDS), 0)
        if size:  # a word first: 万里长城 is the Great Wall, not ten thousand
            concepts.update(_split_concept(_ZH_WORDS[text[i : i + size]]))
            i += size
            continue
        m = _ZH_NUMERAL.match(text, i)
        if m is not None or (arithmetic and ch == "一"):
            run = m.group() if m is not None else "一"
            end = i + len(run)
            while end < len(text) and text[end] in "零〇一两二三四五六七八九十百千万亿":
                end += 1
            run = text[i:end]
            value = zh_to_int(run)
            if value is not None:
                numbers.append(float(value))
            i = end
            continue
        if ch in _ZH_WORDS:
            concepts.update(_split_concept(_ZH_WORDS[ch]))
        elif ch in _ZH_CONCEPT_CHARS:
            concepts.add(_ZH_CONCEPT_CHARS[ch])
        elif ch not in _ZH_FRAME and ch != "一":
            concepts.add(ch)
        i += 1
    return frozenset(concepts), tuple(numbers)


def _split_concept(concept: str) -> list[str]:
    """ "光SPEED" -> ["光", "SPEED"]: a word that stands for a thing and an attribute at once."""
    return re.findall(r"[A-Z]+|[^A-Z]", concept) if concept else []


@dataclass(frozen=True, slots=True)
class Slots:
    concepts: frozenset[str]
    numbers: tuple[float, ...]

    def agrees(self, other: Slots) -> bool:
        return self.concepts == other.concepts and self.numbers == other.numbers


_PUNCT_RE = re.compile(r"[^\w\s]", re.UNICODE)
_HAN_RE = re.compile(r"[\u3400-\u9fff]")


def question_slots(text: str) -> Slots:
    """The slots of ``text``, in its own script (Chinese when it has Han characters)."""
    text = unicodedata.normalize("NFKC", text).lower()
    for ch in "'\u2019\u2018`":
        text = text.replace(ch, "")
    if _HAN_RE.search(text):
        concepts, numbers = _zh_slots(_PUNCT_RE.sub("", text))
    else:
        concepts, numbers = _en_slots(_PUNCT_RE.sub(" ", text))
    return Slots(concepts, numbers)
