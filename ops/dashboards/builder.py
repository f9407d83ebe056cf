"""Turns a :class:`~ops.dashboards.spec.Dashboard` into Grafana's JSON.

Everything Grafana needs but a reader of a dashboard does not lives here once: the data source
(always the ``${datasource}`` variable, never a UID, so one file works in every Grafana), field and
option defaults per panel kind, refIds, panel ids, the grid layout, the alerts annotation and the
links between the xiaozhi dashboards. The key order of each object is part of the output: the
committed JSON is compared byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ops.dashboards.spec import Dashboard, Heatmap, Panel, Query, Row, Stat, StateTimeline, Table, TimeSeries, Variable

Json = dict[str, Any]

DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
GRID_WIDTH = 24

UP_DOWN = [
    {
        "type": "value",
        "options": {
            "0": {"color": "red", "index": 0, "text": "down"},
            "1": {"color": "green", "index": 1, "text": "up"},
        },
    }
]


# -- targets and panels -----------------------------------------------------------------------------
def _target(query: Query, *, instant: bool = False, fmt: str = "time_series") -> Json:
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": query.expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": query.legend or "__auto",
        "range": not instant,
        "refId": "",  # set by _with_ref_ids, keeping the key's place
    }


def _with_ref_ids(targets: list[Json]) -> list[Json]:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return targets


def _thresholds(steps: list[tuple[str, float | None]]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def _limit_steps(limit: float | None) -> list[tuple[str, float | None]]:
    return [("green", None)] if limit is None else [("green", None), ("red", limit)]


def _head(kind: str, panel: Panel, targets: list[Json]) -> Json:
    return {
        "type": kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DS,
        "targets": _with_ref_ids(targets),
    }


def _timeseries(p: TimeSeries) -> Json:
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [
                {"id": "custom.stacking", "value": {"group": "A", "mode": "none"}},
                {"id": "custom.fillOpacity", "value": 0},
                {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
            ],
        }
        for name in p.unstacked
    ]
    custom: Json = {
        "drawStyle": "line",
        "fillOpacity": 30 if p.stack else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if p.stack else "none"},
        "thresholdsStyle": {"mode": "off" if p.limit is None else "line"},
    }
    if p.soft_max is not None:
        custom["axisSoftMax"] = p.soft_max
    defaults = {
        "color": {"mode": "palette-classic"},
        "custom": custom,
        "min": 0,
        "thresholds": _thresholds(_limit_steps(p.limit)),
        "unit": p.unit,
    }
    return {
        **_head("timeseries", p, [_target(q) for q in p.queries]),
        "fieldConfig": {"defaults": defaults, "overrides": overrides},
        "options": {
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _stat(p: Stat) -> Json:
    defaults = {
        "color": {"mode": "thresholds"},
        "mappings": UP_DOWN if p.up_down else [],
        "thresholds": _thresholds(_limit_steps(p.limit)),
        "unit": p.unit,
    }
    return {
        **_head("stat", p, [_target(Query(p.expr, p.legend))]),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "value",
            "graphMode": "area" if p.text == "auto" else "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": p.text,
        },
    }


def _heatmap(p: Heatmap) -> Json:
    return {
        **_head("heatmap", p, [_target(Query(p.expr, "{{le}}"), fmt="heatmap")]),
        "fieldConfig": {"defaults": {"custom": {"scaleDistribution": {"type": "linear"}}}, "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"exponent": 0.5, "mode": "scheme", "scheme": "Oranges", "steps": 64},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"show": True, "yHistogram": False},
            "yAxis": {"axisPlacement": "left", "unit": p.unit},
        },
    }


def _state_timeline(p: StateTimeline) -> Json:
    return {
        **_head("state-timeline", p, [_target(Query(p.expr, p.legend))]),
        "fieldConfig": {
            "defaults": {
                "color": {"mode": "thresholds"},
                "custom": {"fillOpacity": 80, "lineWidth": 0},
                "mappings": UP_DOWN,
                "thresholds": _thresholds([("red", None), ("green", 1)]),
            },
            "overrides": [],
        },
        "options": {
            "alignValue": "left",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
            "mergeValues": True,
            "rowHeight": 0.9,
            "showValue": "never",
            "tooltip": {"mode": "single", "sort": "none"},
        },
    }


def _table(p: Table) -> Json:
    hidden = {name: True for name in ("Time", "Value", "__name__", *p.hide)}
    return {
        **_head("table", p, [_target(Query(p.expr), instant=True, fmt="table")]),
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"cellHeight": "sm", "showHeader": True},
        "transformations": [{"id": "organize", "options": {"excludeByName": hidden}}],
    }


_KINDS: dict[type, Callable[[Any], Json]] = {
    Stat: _stat,
    TimeSeries: _timeseries,
    Heatmap: _heatmap,
    StateTimeline: _state_timeline,
    Table: _table,
}


def panel_json(panel: Panel) -> Json:
    """The panel without its place on the grid and its id."""
    kind = _KINDS.get(type(panel))
    if kind is None:
        raise TypeError(f"no Grafana panel for {type(panel).__name__}")
    return kind(panel)


# -- layout -------------------------------------------------------------------------------------------
def layout(rows: Sequence[Row]) -> list[Json]:
    """Every row and panel with its ``gridPos`` and ``id``, in reading order.

    Panels go left to right and wrap when the next would pass column 24; a row starts on a line of
    its own. Ids number rows and panels together from 1, as Grafana shows them.
    """
    out: list[Json] = []
    x = y = line_h = 0
    for row in rows:
        if x:
            y += line_h
        x = line_h = 0
        out.append({"type": "row", "title": row.title, "collapsed": False, "panels": [], "gridPos": _full_line(y)})
        y += 1
        for panel in row.panels:
            w, h = panel.w or row.w, panel.h or row.h
            if x + w > GRID_WIDTH:
                y += line_h
                x = line_h = 0
            out.append({**panel_json(panel), "gridPos": _grid(w, h, x, y)})
            x += w
            line_h = max(line_h, h)
    for i, panel in enumerate(out, start=1):
        panel["id"] = i
    return out


def _grid(w: int, h: int, x: int, y: int) -> Json:
    return {"h": h, "w": w, "x": x, "y": y}


def _full_line(y: int) -> Json:
    return _grid(GRID_WIDTH, 1, 0, y)


# -- the dashboard ------------------------------------------------------------------------------------
def _datasource_variable() -> Json:
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "type": "datasource",
    }


def _variable(v: Variable) -> Json:
    var: Json = {
        "current": {},
        "datasource": DS,
        "definition": v.query,
        "hide": 0,
        "includeAll": v.multi,
        "label": v.label,
        "multi": v.multi,
        "name": v.name,
        "options": [],
        "query": {"qryType": 1, "query": v.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }
    if v.multi:
        var["allValue"] = ".*"
    return var


# Firing xiaozhi alerts marked on every time axis, so a dip lines up with what paged.
ALERTS_ANNOTATION = {
    "datasource": DS,
    "enable": True,
    "expr": 'ALERTS{alertstate="firing", alertname=~"Xiaozhi.*"}',
    "iconColor": "red",
    "name": "Xiaozhi alerts firing",
    "step": "60s",
    "tagKeys": "severity",
    "textFormat": "{{instance}} {{route}} {{role}}",
    "titleFormat": "{{alertname}}",
}

# A drop-down of every dashboard tagged xiaozhi, keeping the time range.
LINKS = [
    {
        "asDropdown": False,
        "icon": "external link",
        "includeVars": False,
        "keepTime": True,
        "tags": ["xiaozhi"],
        "targetBlank": False,
        "title": "Xiaozhi",
        "type": "dashboards",
    }
]


def build(dashboard: Dashboard) -> Json:
    return {
        "annotations": {"list": [ALERTS_ANNOTATION]},
        "description": dashboard.description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": LINKS,
        "panels": layout(dashboard.rows),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["xiaozhi"],
        "templating": {"list": [_datasource_variable(), *(_variable(v) for v in dashboard.variables)]},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": dashboard.title,
        "uid": dashboard.uid,
        "version": 1,
    }


def render(dashboard: Dashboard) -> str:
    """The file's text, exactly as committed."""
    return json.dumps(build(dashboard), indent=2, ensure_ascii=False) + "\n"
