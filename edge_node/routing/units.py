"""Unit conversions by rule: "how many minutes are in three hours", "一天有多少个小时", "三公里是多少米".

Like sums (``routing/arithmetic.py``), conversions have one right answer that a small model often
misses ("One minute is equal to 10 minutes"). Only a whole utterance that asks to convert a quantity of
one unit into another unit of the same kind (time, length, mass, volume) matches; everything else goes
on to the other rules and the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from edge_node.language.numbers_en import parse_number_en
from edge_node.language.numbers_zh import parse_numeral_zh
from edge_node.routing.arithmetic import format_number

__all__ = ["Conversion", "convert"]


@dataclass(frozen=True, slots=True)
class _Unit:
    kind: str  # what can be converted into what: time, length, mass, volume
    size: Decimal  # in the kind's base unit (second, metre, gram, litre)
    singular: str
    plural: str


def _en(kind: str, size: str, singular: str, plural: str, *aliases: str) -> dict[str, _Unit]:
    unit = _Unit(kind, Decimal(size), singular, plural)
    return dict.fromkeys((singular, plural, *aliases), unit)


_UNITS_EN: dict[str, _Unit] = {
    **_en("time", "1", "second", "seconds"),
    **_en("time", "60", "minute", "minutes"),
    **_en("time", "3600", "hour", "hours"),
    **_en("time", "86400", "day", "days"),
    **_en("time", "604800", "week", "weeks"),
    **_en("length", "0.001", "millimetre", "millimetres", "millimeter", "millimeters"),
    **_en("length", "0.01", "centimetre", "centimetres", "centimeter", "centimeters"),
    **_en("length", "1", "metre", "metres", "meter", "meters"),
    **_en("length", "1000", "kilometre", "kilometres", "kilometer", "kilometers"),
    **_en("mass", "1", "gram", "grams"),
    **_en("mass", "1000", "kilogram", "kilograms", "kilo", "kilos"),
    **_en("volume", "0.001", "millilitre", "millilitres", "milliliter", "milliliters"),
    **_en("volume", "1", "litre", "litres", "liter", "liters"),
}
# Chinese units, longest first in the pattern (分钟 before 分 is not needed: 分 alone is not a unit here).
_UNITS_ZH: dict[str, _Unit] = {
    name: _Unit(kind, Decimal(size), name, name)
    for names, kind, size in (
        (("秒", "秒钟"), "time", "1"),
        (("分钟",), "time", "60"),
        (("小时", "钟头"), "time", "3600"),
        (("天",), "time", "86400"),
        (("星期", "周"), "time", "604800"),
        (("毫米",), "length", "0.001"),
        (("厘米",), "length", "0.01"),
        (("米",), "length", "1"),
        (("公里", "千米"), "length", "1000"),
        (("克",), "mass", "1"),
        (("千克", "公斤"), "mass", "1000"),
        (("毫升",), "volume", "0.001"),
        (("升",), "volume", "1"),
    )
    for name in names
}

_UNIT_EN = "|".join(sorted(_UNITS_EN, key=len, reverse=True))
_NUM_EN = r"-?\d+(?:\.\d+)?|[a-z][a-z -]*?"
_EN_FORMS = (
    # how many minutes are there in three hours / in an hour
    re.compile(rf"^how many (?P<to>{_UNIT_EN}) (?:are )?(?:there )?in (?P<n>{_NUM_EN}) ?(?P<from>{_UNIT_EN})$"),
    # how many minutes is / are three hours
    re.compile(rf"^how many (?P<to>{_UNIT_EN}) (?:is|are) (?P<n>{_NUM_EN}) ?(?P<from>{_UNIT_EN})$"),
    # convert three hours to minutes; what is 5 kilometres in metres
    re.compile(
        rf"^(?:convert|what is|what's|whats) (?P<n>{_NUM_EN}) ?(?P<from>{_UNIT_EN}) (?:to|in|into) (?P<to>{_UNIT_EN})$"
    ),
)
_UNIT_ZH = "|".join(sorted(_UNITS_ZH, key=len, reverse=True))
# Lazy: 两千克 is two kilograms (两 + 千克) before it is two thousand grams.
_NUM_ZH = r"\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百千万]+?(?:点[零〇一二三四五六七八九]+)?"
_ZH_FORM = re.compile(
    rf"^(?:请问)?(?P<n>{_NUM_ZH})?个?(?P<from>{_UNIT_ZH})(?:有|是|等于|合)(?:多少|几)个?(?P<to>{_UNIT_ZH})(?:呢|呀|啊)?$"
)
_ZH_PUNCT = re.compile(r"[\s，。？！、；：,?!;:\"'“”‘’（）()]+")


@dataclass(frozen=True, slots=True)
class Conversion:
    """What to say, and the converted value."""

    text: str
    value: Decimal


def _number_zh(raw: str | None) -> Decimal | None:
    if not raw:
        return Decimal(1)  # 一天有多少小时: "a day"
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        return Decimal(raw)
    whole, _, frac = raw.partition("点")
    value = parse_numeral_zh(whole.replace("〇", "零"))
    if value is None:
        return None
    if frac:
        digits = "".join("0123456789"["零一二三四五六七八九".index(c)] for c in frac.replace("〇", "零"))
        return Decimal(f"{value}.{digits}")
    return Decimal(value)


def _convert(n: Decimal, source: _Unit, target: _Unit) -> Decimal | None:
    if source.kind != target.kind or source is target:
        return None
    value = n * source.size / target.size
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) if value != value.to_integral() else value


def convert(text: str, language: str = "en") -> Conversion | None:
    """The answer to ``text`` when it asks to convert a quantity between two units of one kind, else None."""
    if language == "zh":
        t = _ZH_PUNCT.sub("", text)
        match = _ZH_FORM.match(t)
        if match is None:
            return None
        n = _number_zh(match["n"])
        source, target = _UNITS_ZH[match["from"]], _UNITS_ZH[match["to"]]
        value = _convert(n, source, target) if n is not None else None
        if n is None or value is None:
            return None
        return Conversion(f"{format_number(n)}{source.singular}等于{format_number(value)}{target.singular}。", value)
    t = re.sub(r"[^\w\s.'-]", " ", text.lower().replace("’", "'"))
    t = re.sub(r"\s+", " ", t).strip().rstrip(".").strip()
    for form in _EN_FORMS:
        match = form.match(t)
        if match is None:
            continue
        raw = match["n"].strip()
        n = Decimal(1) if raw in ("a", "an", "one") else parse_number_en(raw)
        source, target = _UNITS_EN[match["from"]], _UNITS_EN[match["to"]]
        value = _convert(n, source, target) if n is not None else None
        if n is None or value is None:
            return None
        source_name = source.singular if n == 1 else source.plural
        target_name = target.singular if value == 1 else target.plural
        return Conversion(f"{format_number(n)} {source_name} is {format_number(value)} {target_name}.", value)
    return None
