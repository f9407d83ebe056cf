"""What a dashboard is made of, in the terms an operator reads it in: rows of panels, each a title,
the PromQL it plots and how to read it (unit, red line, stacking), and its size.

Nothing here knows Grafana's JSON, so a dashboard module stays a list of these and the builder
alone decides how each becomes a panel. Sizes left out come from the row, since panels on one row
are mostly alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass


@dataclass(frozen=True)
class Query:
    """One series request of a panel; an empty legend lets Grafana name the series."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """What every panel kind has; ``w`` and ``h`` (grid columns of 24, rows) default to the row's."""

    title: str
    _: KW_ONLY
    description: str = ""
    w: int | None = None
    h: int | None = None


@dataclass(frozen=True)
class Stat(Panel):
    """One number, the last value. ``text`` is Grafana's text mode: "auto" (value and sparkline),
    "value" (the value alone, for ``up_down`` states) or "name" (the legend, for build info)."""

    expr: str
    _: KW_ONLY
    unit: str = "short"
    limit: float | None = None  # turns red from here
    legend: str = ""
    up_down: bool = False  # a 0/1 gauge shown as down/up
    text: str = "auto"


@dataclass(frozen=True)
class TimeSeries(Panel):
    """A line chart. ``limit`` draws a red threshold line; ``unstacked`` names series (by legend)
    drawn as dashed lines over a stacked chart, such as a total."""

    queries: Sequence[Query]
    _: KW_ONLY
    unit: str = "short"
    stack: bool = False
    limit: float | None = None
    soft_max: float | None = None  # the y axis reaches at least this, so a ratio reads against 100 %
    unstacked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Heatmap(Panel):
    """A histogram's buckets over time; ``expr`` must keep only ``le``."""

    expr: str
    _: KW_ONLY
    unit: str = "s"


@dataclass(frozen=True)
class StateTimeline(Panel):
    """Up/down over time, one lane per series of a 0/1 gauge."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Table(Panel):
    """The labels of an info-style series (value 1), one row per series; ``hide`` drops columns
    that say nothing on this dashboard."""

    expr: str
    _: KW_ONLY
    hide: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """A titled band of panels, placed left to right and wrapping at 24 columns; ``w`` and ``h``
    are the size of its panels that set none."""

    title: str
    panels: Sequence[Panel]
    _: KW_ONLY
    w: int = 12
    h: int = 8


@dataclass(frozen=True)
class Variable:
    """A dashboard variable whose values are a label's values (``query`` is ``label_values(...)``);
    ``multi`` allows several and "All"."""

    name: str
    label: str
    query: str
    _: KW_ONLY
    multi: bool = False


@dataclass(frozen=True)
class Dashboard:
    """A whole dashboard; the data source variable, alerts annotation and links are the builder's."""

    uid: str
    title: str
    description: str
    rows: Sequence[Row]
    _: KW_ONLY
    variables: Sequence[Variable] = ()
