"""Arithmetic by rule: "what is two plus three", "二十除以五等于几" answered exactly, no LLM asked.

Small models get sums wrong ("ten minus four is equal to 10 - 4 = 8") and a wrong sum is worse than no
answer, so the four operations on two numbers are computed here. The rule matches only a whole
utterance that is one such question (an optional "what is" / "请问" before it, an optional "equals" /
"等于几" after it): "set the volume to forty", "what is the capital of France" and "三个人加起来多大"
are not arithmetic and go on to the next rule or the model.

Numbers are digits (with decimals, as an ASR writes them) or words: English up to the millions
("one hundred and five", "twenty-one"), Chinese numerals (三十, 一百零五, 两千, 三点五).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, DivisionByZero, InvalidOperation

from edge_node.language.numbers_en import parse_number_en
from edge_node.language.numbers_zh import parse_numeral_zh

__all__ = ["Sum", "solve"]


# The symbols an ASR may write for the operators, in either language ("3+5", "10 ÷ 2").
_SYMBOLS = {"+": "+", "-": "-", "*": "*", "×": "*", "/": "/", "÷": "/"}
# Operator words; the patterns try the longest first, so "multiplied by" wins over a bare "by".
_OPS_EN: dict[str, str] = {
    "multiplied by": "*",
    "divided by": "/",
    "take away": "-",
    "plus": "+",
    "minus": "-",
    "times": "*",
    "over": "/",
    "x": "*",
    **_SYMBOLS,
}
_OP_WORDS_EN = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}
_OPS_ZH: dict[str, str] = {
    "加上": "+",
    "加": "+",
    "减去": "-",
    "减": "-",
    "乘以": "*",
    "乘": "*",
    "除以": "/",
    **_SYMBOLS,
}
_OP_WORDS_ZH = {"+": "加", "-": "减", "*": "乘以", "/": "除以"}

_NUM_EN = r"-?\d+(?:\.\d+)?|[a-z][a-z -]*?"
_PREFIX_EN = re.compile(
    r"^(?:(?:what is|what's|whats|how much is|calculate|compute|tell me|please|can you tell me|what does)\s+)*"
)
_SUFFIX_EN = re.compile(r"(?:\s+(?:equal|equals|make|makes|come to|is))?(?:\s+what)?$")
# An operator word is a whole word; a symbol may touch its numbers ("10-4", "3*4").
_OP_EN = re.compile(r"(?<![a-z])(multiplied by|divided by|take away|plus|minus|times|over|x)(?![a-z])|[+\-*/×÷]")
# "add 3 and 4", "subtract 4 from 10", "multiply 3 by 4", "divide 20 by 5"
_VERB_EN = re.compile(
    r"^(?:(?:what is|what's|whats|please|can you)\s+)*"
    rf"(?P<verb>add|subtract|multiply|divide)\s+(?P<a>{_NUM_EN})\s+(?P<prep>and|to|from|by)\s+(?P<b>{_NUM_EN})$"
)
_NUM_ZH = r"-?\d+(?:\.\d+)?|负?[零〇一二两三四五六七八九十百千万亿]+(?:点[零〇一二三四五六七八九]+)?"
_OP_ZH = "|".join(re.escape(op) for op in sorted(_OPS_ZH, key=len, reverse=True))
_QUESTION_ZH = re.compile(
    r"^(?:请问|请|帮我算一下|帮我算算|算一下|算算|你知道)*"
    rf"(?P<a>{_NUM_ZH})\s*(?P<op>{_OP_ZH})\s*(?P<b>{_NUM_ZH})"
    r"(?:等于|是)?(?:几|多少|什么)?(?:呀|啊|呢|吗)?$"
)
_ZH_PUNCT = re.compile(r"[\s，。？！、；：,?!;:\"'“”‘’（）()=]+")
_EN_PUNCT = re.compile(r"[^\w\s.+\-*/×÷']")


@dataclass(frozen=True, slots=True)
class Sum:
    """A computed question: what to say, and the exact value (None: division by zero)."""

    text: str
    value: Decimal | None


def _parse_zh(raw: str) -> Decimal | None:
    if re.fullmatch(r"-?\d+(?:\.\d+)?", raw):
        return Decimal(raw)
    negative = raw.startswith("负")
    raw = raw.removeprefix("负")
    whole, _, frac = raw.partition("点")
    value = parse_numeral_zh(whole.replace("〇", "零"))
    if value is None:
        return None
    number = Decimal(value)
    if frac:
        digits = parse_numeral_zh(frac.replace("〇", "零"))
        if digits is None or not all(c in "零〇一二三四五六七八九" for c in frac):
            return None
        number += Decimal(f"0.{str(digits).zfill(len(frac))}")
    return -number if negative else number


def _compute(a: Decimal, op: str, b: Decimal) -> tuple[Decimal | None, bool]:
    """(value, exact): the value rounded to two decimals when it is not exact; None on division by zero."""
    try:
        value = {"+": a + b, "-": a - b, "*": a * b}[op] if op != "/" else a / b
    except (DivisionByZero, InvalidOperation):
        return None, True
    rounded = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return rounded, rounded == value


def format_number(value: Decimal) -> str:
    """12, 2.5, -3: no trailing zeros, no exponent."""
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def solve(text: str, language: str = "en") -> Sum | None:
    """The answer to ``text`` when it is one arithmetic question on two numbers, else None."""
    if language == "zh":
        return _solve_zh(text)
    t = _EN_PUNCT.sub(" ", text.lower().replace("’", "'")).strip().rstrip(".").strip()
    t = re.sub(r"\s+", " ", t)
    found = _two_numbers_en(t)
    if found is not None:
        a, op, b = found
    else:
        match = _VERB_EN.match(t)
        if match is None:
            return None
        verb, prep = match["verb"], match["prep"]
        allowed = {"add": ("and", "to"), "subtract": ("from",), "multiply": ("by", "and"), "divide": ("by",)}
        if prep not in allowed[verb]:
            return None
        a, b = parse_number_en(match["a"]), parse_number_en(match["b"])
        op = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}[verb]
        if verb == "subtract":
            a, b = b, a  # subtract 4 from 10 = 10 - 4
    if a is None or b is None:
        return None
    value, exact = _compute(a, op, b)
    if value is None:
        return Sum("You can't divide by zero.", None)
    about = "" if exact else "about "
    return Sum(f"{format_number(a)} {_OP_WORDS_EN[op]} {format_number(b)} is {about}{format_number(value)}.", value)


def _two_numbers_en(t: str) -> tuple[Decimal, str, Decimal] | None:
    """(a, op, b) when the whole question, less its "what is" and "equals", is number, operator, number.

    Every operator in it is tried as the split ("twenty-one plus two": the hyphen first, then "plus")."""
    body = _SUFFIX_EN.sub("", _PREFIX_EN.sub("", t)).strip()
    for op in _OP_EN.finditer(body):
        a = parse_number_en(body[: op.start()])
        b = parse_number_en(body[op.end() :])
        if a is not None and b is not None:
            return a, _OPS_EN[op.group().strip()], b
    return None


# Whisper base hears a sum's operator and "等于几" as homophones (三加五等于几 came back as 三家五等余景).
# Between two numbers these characters can only be the operator; after 等于 only 几 makes a question.
_NUMERAL = r"[\d零〇一二两三四五六七八九十百千万]"
_HEARD_AS_ZH = (
    (re.compile(rf"(?<={_NUMERAL})[家佳嘉夹](?={_NUMERAL})"), "加"),
    (re.compile(rf"(?<={_NUMERAL})[剪简检](?={_NUMERAL})"), "减"),
    (re.compile(rf"(?<={_NUMERAL})[成城程]以(?={_NUMERAL})"), "乘以"),
    (re.compile(rf"(?<={_NUMERAL})[出初]以(?={_NUMERAL})"), "除以"),
    (re.compile(r"(?<=" + _NUMERAL + r")(?:等余|等鱼|等与|登于)"), "等于"),
    (re.compile(r"(?<=等于)[景己鸡机吉挤](?=$|[呀啊呢吗])"), "几"),
)


def _solve_zh(text: str) -> Sum | None:
    t = _ZH_PUNCT.sub("", text)
    for heard, meant in _HEARD_AS_ZH:
        t = heard.sub(meant, t)
    match = _QUESTION_ZH.match(t)
    if match is None:
        return None
    a, b = _parse_zh(match["a"]), _parse_zh(match["b"])
    if a is None or b is None:
        return None
    op = _OPS_ZH[match["op"]]
    value, exact = _compute(a, op, b)
    if value is None:
        return Sum("不能除以零。", None)
    about = "" if exact else "约"
    return Sum(f"{format_number(a)}{_OP_WORDS_ZH[op]}{format_number(b)}{about}等于{format_number(value)}。", value)
