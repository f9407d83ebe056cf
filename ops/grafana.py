"""The Grafana dashboards of a xiaozhi fleet, generated so every panel follows the same rules.

    python -m ops.grafana --out deploy/grafana/dashboards          # write fleet, edge-node, cloud.json
    python -m ops.grafana --out deploy/grafana/dashboards --check  # exit 1 if the files differ

The committed JSON is this module's output (tests/deploy/test_dashboards.py checks that), so edit
here and regenerate rather than editing the JSON. The rules every dashboard follows:

- the data source is the ``${datasource}`` template variable (type datasource, Prometheus), never
  a UID, so the same file works in every Grafana;
- rates use ``$__rate_interval``; latencies come from the histograms with ``histogram_quantile``;
- the job names are the ones deploy/prometheus/prometheus.yml gives: ``xiaozhi-edge`` and
  ``xiaozhi-cloud-worker``; per-node breakdowns use the ``instance`` label, which every target has.

Metric names are those of edge_node/metrics.py, shared/metrics.py and edge_node/cpu_roles.py;
the test checks every name and label used here exists in the code's registry.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39
EDGE = 'job="xiaozhi-edge"'
WORKER = 'job="xiaozhi-cloud-worker"'
RI = "$__rate_interval"

# Targets from docs/performance.md: first audio p95 <= 0.5 s for intent and cache, <= 1.2 s for LLM turns.
FAST_ROUTES = "intent|cache"
LLM_ROUTES = "local_llm|cloud"

Json = dict[str, Any]


# -- targets and panels -----------------------------------------------------------------------------
def target(expr: str, legend: str = "", *, instant: bool = False, fmt: str = "time_series") -> Json:
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "refId": "",  # set when the panel is added
    }


def _thresholds(steps: list[tuple[str, float | None]]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def _limit_steps(limit: float | None) -> list[tuple[str, float | None]]:
    return [("green", None)] if limit is None else [("green", None), ("red", limit)]


def timeseries(
    title: str,
    targets: list[Json],
    *,
    unit: str = "short",
    description: str = "",
    stack: bool = False,
    limit: float | None = None,
    soft_max: float | None = None,
    unstacked: tuple[str, ...] = (),
) -> Json:
    """A line chart. ``limit`` draws a red threshold line; ``unstacked`` names series (by legend)
    drawn as lines over a stacked chart."""
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [
                {"id": "custom.stacking", "value": {"group": "A", "mode": "none"}},
                {"id": "custom.fillOpacity", "value": 0},
                {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
            ],
        }
        for name in unstacked
    ]
    defaults: Json = {
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "line",
            "fillOpacity": 30 if stack else 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if stack else "none"},
            "thresholdsStyle": {"mode": "off" if limit is None else "line"},
        },
        "min": 0,
        "thresholds": _thresholds(_limit_steps(limit)),
        "unit": unit,
    }
    if soft_max is not None:
        defaults["custom"]["axisSoftMax"] = soft_max
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides},
        "options": {
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    expr: str,
    *,
    unit: str = "short",
    description: str = "",
    limit: float | None = None,
    legend: str = "",
    mappings: list[Json] | None = None,
    text_mode: str = "auto",
    decimals: int | None = None,
) -> Json:
    """One number (the last value); turns red at ``limit``."""
    defaults: Json = {
        "color": {"mode": "thresholds"},
        "mappings": mappings or [],
        "thresholds": _thresholds(_limit_steps(limit)),
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, legend)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "value",
            "graphMode": "area" if text_mode == "auto" else "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": text_mode,
        },
    }


def heatmap(title: str, expr: str, *, description: str = "", unit: str = "s") -> Json:
    """A histogram's buckets over time (``expr`` must keep only ``le``)."""
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, "{{le}}", fmt="heatmap")],
        "fieldConfig": {"defaults": {"custom": {"scaleDistribution": {"type": "linear"}}}, "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"exponent": 0.5, "mode": "scheme", "scheme": "Oranges", "steps": 64},
            "filterValues": {"le": 1e-9},
            "legend": {"show": True},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"show": True, "yHistogram": False},
            "yAxis": {"axisPlacement": "left", "unit": unit},
        },
    }


UP_DOWN = [
    {
        "type": "value",
        "options": {
            "0": {"color": "red", "index": 0, "text": "down"},
            "1": {"color": "green", "index": 1, "text": "up"},
        },
    }
]


def state_timeline(title: str, expr: str, legend: str, *, description: str = "") -> Json:
    """Up/down per series (a 0/1 gauge)."""
    return {
        "type": "state-timeline",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, legend)],
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


def table(title: str, expr: str, *, description: str = "", hide: tuple[str, ...] = ()) -> Json:
    """The labels of an info-style series (value 1), one row per series."""
    hidden = {name: True for name in ("Time", "Value", "__name__", *hide)}
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, instant=True, fmt="table")],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"cellHeight": "sm", "showHeader": True},
        "transformations": [{"id": "organize", "options": {"excludeByName": hidden}}],
    }


# -- a dashboard and its layout ---------------------------------------------------------------------
def datasource_variable() -> Json:
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


def query_variable(name: str, label: str, query: str, *, multi: bool = False) -> Json:
    var: Json = {
        "current": {},
        "datasource": DS,
        "definition": query,
        "hide": 0,
        "includeAll": multi,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }
    if multi:
        var["allValue"] = ".*"
    return var


class Dashboard:
    """Panels placed left to right on Grafana's 24-column grid, wrapping to a new line."""

    def __init__(self, uid: str, title: str, description: str, variables: list[Json]) -> None:
        self.uid, self.title, self.description = uid, title, description
        self.variables = [datasource_variable(), *variables]
        self.panels: list[Json] = []
        self._x = self._y = self._line_h = 0

    def _newline(self) -> None:
        if self._x:
            self._y += self._line_h
        self._x = self._line_h = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
            }
        )
        self._y += 1

    def add(self, panel: Json, w: int = 12, h: int = 8) -> None:
        if self._x + w > 24:
            self._newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self._x, "y": self._y}
        for i, t in enumerate(panel.get("targets", [])):
            t["refId"] = chr(ord("A") + i)
        self.panels.append(panel)
        self._x += w
        self._line_h = max(self._line_h, h)

    def to_json(self) -> Json:
        for i, panel in enumerate(self.panels, start=1):
            panel["id"] = i
        return {
            "annotations": {
                "list": [
                    {
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
                ]
            },
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "links": [
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
            ],
            "panels": self.panels,
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "tags": ["xiaozhi"],
            "templating": {"list": self.variables},
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
        }


# -- PromQL helpers -------------------------------------------------------------------------------------
def _select(metric: str, selector: str) -> str:
    return f"{metric}{{{selector}}}" if selector else metric


def rate(metric: str, selector: str = "", by: str = "") -> str:
    inner = f"rate({_select(metric, selector)}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q: float, histogram: str, selector: str = "", by: str = "") -> str:
    keep = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({keep}) (rate({_select(histogram + '_bucket', selector)}[{RI}])))"


def _and(*selectors: str) -> str:
    return ", ".join(s for s in selectors if s)


def ratio(numerator: str, denominator: str) -> str:
    return f"{numerator} / {denominator}"


# -- the fleet ---------------------------------------------------------------------------------------
def fleet() -> Dashboard:
    d = Dashboard(
        "xiaozhi-fleet",
        "Xiaozhi / Fleet",
        "Every edge node at once: devices, turns, first-audio latency, routing, capacity, cloud links.",
        [],
    )
    turns = 'outcome!="empty"'
    d.row("Fleet now")
    d.add(stat("Edges up", f"count(up{{{EDGE}}} == 1)", description="Edge nodes Prometheus scrapes."), 4, 4)
    d.add(
        stat(
            "Edges down",
            f"count(up{{{EDGE}}} == 0) or vector(0)",
            limit=1,
            description="Edge nodes whose scrape fails (XiaozhiTargetDown).",
        ),
        4,
        4,
    )
    d.add(
        stat("Devices connected", "sum(xiaozhi_sessions_active)", description="Open device sessions, all edges."), 4, 4
    )
    d.add(
        stat(
            "Turns/s",
            rate("xiaozhi_turns_total", turns),
            unit="reqps",
            description="Turns with words in them, all edges.",
        ),
        4,
        4,
    )
    d.add(
        stat(
            "First audio p95, LLM turns",
            quantile(0.95, "xiaozhi_turn_latency_seconds", f'route=~"{LLM_ROUTES}"'),
            unit="s",
            limit=1.2,
            description="End of speech to first reply audio, routes local_llm and cloud. Target 1.2 s.",
        ),
        4,
        4,
    )
    d.add(
        stat(
            "First audio p95, intent + cache",
            quantile(0.95, "xiaozhi_turn_latency_seconds", f'route=~"{FAST_ROUTES}"'),
            unit="s",
            limit=0.5,
            description="End of speech to first reply audio, commands and cached answers. Target 0.5 s.",
        ),
        4,
        4,
    )
    d.add(
        stat(
            "Turn errors",
            ratio(rate("xiaozhi_turns_total", 'outcome="error"'), rate("xiaozhi_turns_total", turns)),
            unit="percentunit",
            limit=0.05,
            description="Share of turns that ended in an apology.",
        ),
        4,
        4,
    )
    d.add(
        stat(
            'Answered "busy"',
            ratio(rate("xiaozhi_turns_total", 'outcome="busy"'), rate("xiaozhi_turns_total", turns)),
            unit="percentunit",
            limit=0.05,
            description="Share of turns the edges were too saturated to serve.",
        ),
        4,
        4,
    )
    d.add(
        stat(
            "Escalated to the cloud",
            ratio(rate("xiaozhi_escalations_total", 'kind="llm"'), rate("xiaozhi_turns_total", turns)),
            unit="percentunit",
            description="Share of turns whose answer the rules sent to the cloud LLM.",
        ),
        4,
        4,
    )
    d.add(
        stat(
            "Cloud links down",
            f"count(xiaozhi_cloud_link_up{{{EDGE}}} == 0 and on (job, instance) "
            f"xiaozhi_cloud_link_configured{{{EDGE}}} == 1) or vector(0)",
            limit=1,
            description="Edges not connected to their NATS server (edges without a cloud link left out).",
        ),
        4,
        4,
    )
    near = (
        "count("
        "sum by (instance) (xiaozhi_sessions_active) / sum by (instance) (xiaozhi_sessions_capacity) > 0.9"
        " or sum by (instance) (xiaozhi_demand_turns_per_second)"
        " / sum by (instance) (xiaozhi_capacity_turns_per_second > 0) > 0.9"
        ") or vector(0)"
    )
    d.add(
        stat(
            "Edges near capacity",
            near,
            limit=1,
            description="Edges over 90 % of max_sessions or of their measured turn capacity.",
        ),
        4,
        4,
    )
    d.add(
        stat(
            "Alerts firing",
            'count(ALERTS{alertstate="firing", alertname=~"Xiaozhi.*"}) or vector(0)',
            limit=1,
            description="Xiaozhi alerts firing now (runbooks: docs/operations.md).",
        ),
        4,
        4,
    )

    d.row("Traffic")
    d.add(
        timeseries(
            "Devices connected per edge",
            [target("sum by (instance) (xiaozhi_sessions_active)", "{{instance}}")],
            description="Open WebSocket sessions.",
        )
    )
    d.add(
        timeseries(
            "Turns/s by route",
            [target(rate("xiaozhi_turns_total", turns, "route"), "{{route}}")],
            unit="reqps",
            stack=True,
            description="Which route answered: intent, cache, local_llm, cloud, fallback/apology.",
        )
    )
    d.add(
        timeseries(
            "Turns/s by outcome",
            [target(rate("xiaozhi_turns_total", "", "outcome"), "{{outcome}}")],
            unit="reqps",
            stack=True,
            description="ok, busy, interrupted, error, empty (no words).",
        )
    )
    d.add(
        timeseries(
            "Turns/s per edge", [target(rate("xiaozhi_turns_total", turns, "instance"), "{{instance}}")], unit="reqps"
        )
    )

    d.row("First audio: end of speech to the first reply packet")
    d.add(
        timeseries(
            "p95 by route",
            [target(quantile(0.95, "xiaozhi_turn_latency_seconds", by="route"), "{{route}}")],
            unit="s",
            limit=1.2,
            description="Targets: 0.5 s for intent and cache, 1.2 s for local_llm and cloud (red line).",
        )
    )
    d.add(
        timeseries(
            "p50 by route", [target(quantile(0.5, "xiaozhi_turn_latency_seconds", by="route"), "{{route}}")], unit="s"
        )
    )
    d.add(
        timeseries(
            "p95 per edge, LLM turns",
            [
                target(
                    quantile(0.95, "xiaozhi_turn_latency_seconds", f'route=~"{LLM_ROUTES}"', "instance"), "{{instance}}"
                )
            ],
            unit="s",
            limit=1.2,
        )
    )
    d.add(
        timeseries(
            "p95 per edge, intent + cache",
            [
                target(
                    quantile(0.95, "xiaozhi_turn_latency_seconds", f'route=~"{FAST_ROUTES}"', "instance"),
                    "{{instance}}",
                )
            ],
            unit="s",
            limit=0.5,
        )
    )

    d.row("Routing and caches")
    d.add(
        timeseries(
            "Escalated to the cloud LLM",
            [
                target(
                    ratio(
                        rate("xiaozhi_escalations_total", 'kind="llm"', "instance"),
                        rate("xiaozhi_turns_total", turns, "instance"),
                    ),
                    "{{instance}}",
                ),
                target(
                    ratio(rate("xiaozhi_escalations_total", 'kind="llm"'), rate("xiaozhi_turns_total", turns)), "fleet"
                ),
            ],
            unit="percentunit",
            description="Share of turns sent to the cloud LLM.",
        ),
        8,
    )
    d.add(
        timeseries(
            "Escalations by kind and reason",
            [target(rate("xiaozhi_escalations_total", "", "kind, reason"), "{{kind}} {{reason}}")],
            unit="reqps",
            stack=True,
        ),
        8,
    )
    d.add(
        timeseries(
            "Fallbacks",
            [target(rate("xiaozhi_fallbacks_total", "", "from_route, to_route"), "{{from_route}} → {{to_route}}")],
            unit="reqps",
            stack=True,
            description="A route failed and the next in its chain answered (to_route cut_off: failed mid-answer).",
        ),
        8,
    )
    d.add(
        timeseries(
            "Cache hit ratio",
            [
                target(
                    ratio(
                        rate("xiaozhi_cache_requests_total", 'result="hit"', "cache"),
                        rate("xiaozhi_cache_requests_total", 'level="l1"', "cache"),
                    ),
                    "{{cache}}",
                ),
            ],
            unit="percentunit",
            description="Hits at any level (L1 memory, L3 disk, L2 fleet KV) per lookup.",
        )
    )
    d.add(
        timeseries(
            "Cache hits by level",
            [target(rate("xiaozhi_cache_requests_total", 'result="hit"', "cache, level"), "{{cache}} {{level}}")],
            unit="reqps",
            stack=True,
        )
    )

    d.row("Capacity")
    d.add(
        timeseries(
            "Sessions / max_sessions",
            [
                target(
                    "sum by (instance) (xiaozhi_sessions_active) / sum by (instance) (xiaozhi_sessions_capacity)",
                    "{{instance}}",
                )
            ],
            unit="percentunit",
            limit=0.9,
            soft_max=1,
        ),
        8,
    )
    d.add(
        timeseries(
            "Turn demand / measured capacity",
            [
                target(
                    "sum by (instance) (xiaozhi_demand_turns_per_second)"
                    " / sum by (instance) (xiaozhi_capacity_turns_per_second > 0)",
                    "{{instance}}",
                )
            ],
            unit="percentunit",
            limit=0.9,
            soft_max=1,
            description="Admission control refuses new connections at 100 %.",
        ),
        8,
    )
    d.add(
        timeseries(
            "Connections refused/s",
            [target(rate("xiaozhi_admission_total", 'result="refused"', "instance"), "{{instance}}")],
            unit="reqps",
            description="HTTP 503 at the handshake: the edge is at capacity.",
        ),
        8,
    )
    d.add(
        timeseries(
            'Turns answered "busy"/s',
            [target(rate("xiaozhi_turns_total", 'outcome="busy"', "instance"), "{{instance}}")],
            unit="reqps",
        )
    )
    d.add(
        timeseries(
            "CPU per edge (cores)",
            [target(f"sum by (instance) (rate(process_cpu_seconds_total{{{EDGE}}}[{RI}]))", "{{instance}}")],
            unit="short",
        )
    )

    d.row("Cloud link")
    d.add(
        state_timeline(
            "Cloud link per edge",
            f"max by (instance) (xiaozhi_cloud_link_up{{{EDGE}}})",
            "{{instance}}",
            description="Connected to the edge's NATS server. Edges without a cloud link read down.",
        ),
        24,
        8,
    )
    d.add(
        timeseries(
            "Requests to the cloud by result",
            [target(rate("xiaozhi_nats_requests_total", "", "subject_class, result"), "{{subject_class}} {{result}}")],
            unit="reqps",
            stack=True,
        )
    )
    d.add(
        timeseries(
            "No responders per edge",
            [
                target(
                    ratio(
                        rate("xiaozhi_nats_requests_total", 'result="no_responders"', "instance, subject_class"),
                        rate(
                            "xiaozhi_nats_requests_total",
                            'result!~"circuit_open|not_connected"',
                            "instance, subject_class",
                        ),
                    ),
                    "{{instance}} {{subject_class}}",
                )
            ],
            unit="percentunit",
            limit=0.1,
            description="Share of requests sent to the cloud that no worker answered (leaf link down, no worker).",
        )
    )

    d.row("Versions")
    d.add(table("Edge versions", f"xiaozhi_build_info{{{EDGE}}}", hide=("job", "component")), 24, 8)
    return d


# -- one edge node ---------------------------------------------------------------------------------------
def edge_node() -> Dashboard:
    inst = 'instance="$instance"'
    d = Dashboard(
        "xiaozhi-edge-node",
        "Xiaozhi / Edge node",
        "One edge node: sessions, turns, latency by route and stage, engine queues, CPU by thread role, "
        "the event loop, pacing, errors, caches and its cloud link.",
        [query_variable("instance", "Edge node", f"label_values(xiaozhi_sessions_capacity{{{EDGE}}}, instance)")],
    )
    turns = _and(inst, 'outcome!="empty"')
    d.row("Now")
    d.add(stat("Sessions", f"sum(xiaozhi_sessions_active{{{inst}}})"), 4, 4)
    d.add(
        stat(
            "Sessions / max_sessions",
            f"sum(xiaozhi_sessions_active{{{inst}}}) / sum(xiaozhi_sessions_capacity{{{inst}}})",
            unit="percentunit",
            limit=0.9,
        ),
        4,
        4,
    )
    d.add(
        stat(
            "Demand / capacity",
            f"sum(xiaozhi_demand_turns_per_second{{{inst}}}) / sum(xiaozhi_capacity_turns_per_second{{{inst}}} > 0)",
            unit="percentunit",
            limit=0.9,
            description="Recent turn rate against the measured capacity; empty until measured.",
        ),
        4,
        4,
    )
    d.add(stat("Turns/s", rate("xiaozhi_turns_total", turns), unit="reqps"), 4, 4)
    d.add(
        stat(
            "Cloud link",
            f"max(xiaozhi_cloud_link_up{{{inst}}})",
            mappings=UP_DOWN,
            text_mode="value",
            description="Connected to this edge's NATS server.",
        ),
        4,
        4,
    )
    d.add(stat("Version", f"xiaozhi_build_info{{{inst}}}", legend="{{version}} ({{commit}})", text_mode="name"), 4, 4)

    d.row("Sessions and admission")
    d.add(
        timeseries(
            "Sessions",
            [
                target(f"sum by (transport) (xiaozhi_sessions_active{{{inst}}})", "{{transport}}"),
                target(f"xiaozhi_sessions_capacity{{{inst}}}", "max_sessions"),
            ],
        ),
        6,
    )
    d.add(
        timeseries(
            "Connections ended/s by result",
            [target(rate("xiaozhi_ws_connections_total", inst, "result"), "{{result}}")],
            unit="reqps",
            stack=True,
        ),
        6,
    )
    d.add(
        timeseries(
            "Admission decisions/s",
            [target(rate("xiaozhi_admission_total", inst, "result"), "{{result}}")],
            unit="reqps",
            stack=True,
        ),
        6,
    )
    d.add(
        timeseries(
            "Turn demand vs measured capacity",
            [
                target(f"xiaozhi_demand_turns_per_second{{{inst}}}", "demand"),
                target(f"xiaozhi_capacity_turns_per_second{{{inst}}}", "capacity"),
            ],
            unit="reqps",
            description="Admission refuses new connections when demand reaches capacity.",
        ),
        6,
    )

    d.row("Turns")
    d.add(
        timeseries(
            "Turns/s by route",
            [target(rate("xiaozhi_turns_total", turns, "route"), "{{route}}")],
            unit="reqps",
            stack=True,
        ),
        8,
    )
    d.add(
        timeseries(
            "Turns/s by outcome",
            [target(rate("xiaozhi_turns_total", inst, "outcome"), "{{outcome}}")],
            unit="reqps",
            stack=True,
        ),
        8,
    )
    d.add(
        timeseries(
            "LLM route decisions/s",
            [target(rate("xiaozhi_route_decisions_total", inst, "route, reason"), "{{route}} {{reason}}")],
            unit="reqps",
            stack=True,
            description="Which LLM route the rules chose, and why.",
        ),
        8,
    )
    d.add(
        timeseries(
            "Interruptions/s",
            [target(rate("xiaozhi_interruptions_total", inst, "reason"), "{{reason}}")],
            unit="reqps",
            stack=True,
            description="Replies cut short: barge-in by voice, listen/start, abort, disconnect, a new turn.",
        ),
        8,
    )
    d.add(
        timeseries(
            "Replies cut short by a saturated stage/s",
            [target(rate("xiaozhi_replies_cut_short_total", inst, "stage"), "{{stage}}")],
            unit="reqps",
        ),
        8,
    )
    d.add(
        timeseries(
            "Speculative ASR and early commits/s",
            [
                target(rate("xiaozhi_speculative_asr_total", inst, "result"), "speculative ASR {{result}}"),
                target(f"sum(rate(xiaozhi_early_commits_total{{{inst}}}[{RI}]))", "early commit"),
            ],
            unit="reqps",
        ),
        8,
    )

    d.row("Latency")
    d.add(
        timeseries(
            "First audio by route",
            [
                target(quantile(0.5, "xiaozhi_turn_latency_seconds", inst, "route"), "p50 {{route}}"),
                target(quantile(0.95, "xiaozhi_turn_latency_seconds", inst, "route"), "p95 {{route}}"),
            ],
            unit="s",
            limit=1.2,
            description="End of speech to the first reply audio packet. Targets (p95): 0.5 s "
            "intent and cache, 1.2 s local_llm and cloud.",
        )
    )
    d.add(
        heatmap(
            "First audio, all routes", f"sum by (le) (increase(xiaozhi_turn_latency_seconds_bucket{{{inst}}}[{RI}]))"
        )
    )
    d.add(
        timeseries(
            "Stage duration p95",
            [target(quantile(0.95, "xiaozhi_stage_duration_seconds", inst, "stage"), "{{stage}}")],
            unit="s",
            description="asr, llm, tts (whole job), llm_first_token, vad_tick, opus_decode, cloud_first_chunk.",
        )
    )
    d.add(
        timeseries(
            "Stage duration p50",
            [target(quantile(0.5, "xiaozhi_stage_duration_seconds", inst, "stage"), "{{stage}}")],
            unit="s",
        )
    )

    d.row("Engine queues")
    d.add(
        timeseries(
            "Queue depth",
            [target(f"sum by (stage) (xiaozhi_queue_depth{{{inst}}})", "{{stage}}")],
            description="Jobs waiting for an engine worker.",
        ),
        8,
    )
    d.add(
        timeseries(
            "Queue wait p95",
            [target(quantile(0.95, "xiaozhi_queue_wait_seconds", inst, "stage"), "{{stage}}")],
            unit="s",
        ),
        8,
    )
    d.add(
        timeseries(
            "Jobs refused (busy)/s",
            [target(rate("xiaozhi_busy_total", inst, "stage, reason"), "{{stage}} {{reason}}")],
            unit="reqps",
            stack=True,
        ),
        8,
    )
    d.add(
        timeseries(
            "VAD streams per batch",
            [
                target(
                    ratio(rate("xiaozhi_vad_batch_size_sum", inst), rate("xiaozhi_vad_batch_size_count", inst)),
                    "mean",
                ),
            ],
            description="Streams per batched Silero call (one call per 30 ms tick).",
        ),
        8,
    )
    d.add(
        timeseries(
            "LLM tokens/s",
            [target(rate("xiaozhi_llm_tokens_total", inst, "direction, model"), "{{direction}} {{model}}")],
            unit="short",
        ),
        8,
    )
    d.add(table("Models loaded", f"xiaozhi_model_info{{{inst}}}", hide=("job", "instance", "node")), 8)

    d.row("CPU, event loop, pacing")
    d.add(
        timeseries(
            "CPU by thread role (cores)",
            [
                target(f"sum by (role) (rate(xiaozhi_thread_cpu_seconds_total{{{inst}}}[{RI}]))", "{{role}}"),
                target(f"sum(rate(process_cpu_seconds_total{{{inst}}}[{RI}]))", "process"),
            ],
            stack=True,
            unstacked=("process",),
            description="Live threads by role (edge_node/cpu_roles.py); the dashed line is the whole process.",
        ),
        8,
    )
    d.add(
        timeseries(
            "Server overhead",
            [
                target(
                    f'sum(rate(xiaozhi_thread_cpu_seconds_total{{{inst}, role=~"event_loop|cache|other"}}[{RI}]))'
                    f" / sum(rate(xiaozhi_thread_cpu_seconds_total{{{inst}}}[{RI}]))",
                    "overhead",
                ),
            ],
            unit="percentunit",
            limit=0.1,
            description="Thread CPU not spent on inference or audio coding "
            "(event loop, cache, other). Target under 10 %.",
        ),
        8,
    )
    d.add(timeseries("Memory", [target(f"process_resident_memory_bytes{{{inst}}}", "RSS")], unit="bytes"), 8)
    d.add(
        timeseries(
            "Event loop lag",
            [
                target(quantile(0.5, "xiaozhi_event_loop_lag_seconds", inst), "p50"),
                target(quantile(0.99, "xiaozhi_event_loop_lag_seconds", inst), "p99"),
            ],
            unit="s",
            limit=0.05,
            description="How late the loop woke a 0.5 s timer. Alert: p99 over 50 ms.",
        ),
        8,
    )
    d.add(
        timeseries(
            "Downlink pacing lag",
            [
                target(quantile(0.5, "xiaozhi_audio_send_lag_seconds", inst), "p50"),
                target(quantile(0.99, "xiaozhi_audio_send_lag_seconds", inst), "p99"),
            ],
            unit="s",
            limit=0.1,
            description="How late reply audio packets left against their schedule. Alert: p99 over 100 ms.",
        ),
        8,
    )
    d.add(
        timeseries(
            "Audio packets/s",
            [target(rate("xiaozhi_audio_packets_total", inst, "direction"), "{{direction}}")],
            unit="pps",
        ),
        8,
    )

    d.row("Errors")
    d.add(
        timeseries(
            "Protocol errors/s by code",
            [target(rate("xiaozhi_protocol_errors_total", inst, "code"), "{{code}}")],
            unit="reqps",
            stack=True,
        ),
        8,
    )
    d.add(
        timeseries(
            "Failed turns/s by route",
            [target(rate("xiaozhi_turns_total", _and(inst, 'outcome="error"'), "route"), "{{route}}")],
            unit="reqps",
            stack=True,
        ),
        8,
    )
    d.add(
        timeseries(
            "Device MCP tool calls/s",
            [target(rate("xiaozhi_mcp_tool_calls_total", inst, "result"), "{{result}}")],
            unit="reqps",
            stack=True,
        ),
        8,
    )

    d.row("Caches")
    d.add(
        timeseries(
            "Hit ratio",
            [
                target(
                    ratio(
                        rate("xiaozhi_cache_requests_total", _and(inst, 'result="hit"'), "cache"),
                        rate("xiaozhi_cache_requests_total", _and(inst, 'level="l1"'), "cache"),
                    ),
                    "{{cache}}",
                ),
            ],
            unit="percentunit",
            description="Hits at any level per lookup.",
        )
    )
    d.add(
        timeseries(
            "Lookups/s by level and result",
            [
                target(
                    rate("xiaozhi_cache_requests_total", inst, "cache, level, result"), "{{cache}} {{level}} {{result}}"
                )
            ],
            unit="reqps",
        )
    )

    d.row("Cloud link and routing")
    d.add(state_timeline("Cloud link", f"max(xiaozhi_cloud_link_up{{{inst}}})", "link"), 12, 5)
    d.add(
        timeseries(
            "Requests to the cloud/s",
            [
                target(
                    rate("xiaozhi_nats_requests_total", inst, "subject_class, result"), "{{subject_class}} {{result}}"
                )
            ],
            unit="reqps",
            stack=True,
        ),
        12,
        5,
    )
    d.add(
        timeseries(
            "Cloud first chunk",
            [
                target(quantile(0.5, "xiaozhi_stage_duration_seconds", _and(inst, 'stage="cloud_first_chunk"')), "p50"),
                target(
                    quantile(0.95, "xiaozhi_stage_duration_seconds", _and(inst, 'stage="cloud_first_chunk"')), "p95"
                ),
            ],
            unit="s",
            description="Request to the first chunk of a cloud LLM reply, as this edge saw it.",
        ),
        6,
    )
    d.add(
        timeseries(
            "Escalations/s",
            [target(rate("xiaozhi_escalations_total", inst, "kind, reason"), "{{kind}} {{reason}}")],
            unit="reqps",
            stack=True,
        ),
        6,
    )
    d.add(
        timeseries(
            "Fallbacks/s",
            [target(rate("xiaozhi_fallbacks_total", inst, "from_route, to_route"), "{{from_route}} → {{to_route}}")],
            unit="reqps",
            stack=True,
        ),
        6,
    )
    d.add(
        timeseries(
            "Routing configs",
            [
                target(f"sum by (result) (increase(xiaozhi_routing_reloads_total{{{inst}}}[{RI}]))", "{{result}}"),
            ],
            description="Routing configs applied or refused (refused: see /stats edge.routing.error).",
        ),
        6,
    )
    return d


# -- the cloud tier ---------------------------------------------------------------------------------------
def cloud() -> Dashboard:
    d = Dashboard(
        "xiaozhi-cloud",
        "Xiaozhi / Cloud workers",
        "The cloud tier: workers by role, in-flight against capacity, request results, LLM first token "
        "and total time, tokens, ASR time, and the cloud as the edges see it.",
        [
            query_variable("role", "Role", f"label_values(xiaozhi_worker_capacity{{{WORKER}}}, role)", multi=True),
            query_variable(
                "worker",
                "Worker",
                f'label_values(xiaozhi_worker_capacity{{{WORKER}, role=~"$role"}}, instance)',
                multi=True,
            ),
        ],
    )
    w = _and(WORKER, 'role=~"$role"', 'instance=~"$worker"')
    p = _and(WORKER, 'instance=~"$worker"')
    d.row("Now")
    d.add(
        stat(
            "Workers by role",
            f"count by (role) (xiaozhi_worker_capacity{{{w}}})",
            legend="{{role}}",
            description="Worker processes scraped, per role.",
        ),
        4,
        4,
    )
    d.add(
        stat(
            "Not connected to NATS",
            f"count(xiaozhi_cloud_link_up{{{p}}} == 0) or vector(0)",
            limit=1,
            description="Workers out of rotation (their /ready answers 503).",
        ),
        4,
        4,
    )
    d.add(
        stat(
            "In flight / capacity",
            f"sum(xiaozhi_worker_inflight{{{w}}}) / sum(xiaozhi_worker_capacity{{{w}}})",
            unit="percentunit",
            limit=0.85,
        ),
        4,
        4,
    )
    d.add(stat("Requests/s", rate("xiaozhi_worker_requests_total", w), unit="reqps"), 4, 4)
    d.add(
        stat(
            "Errors",
            ratio(
                rate("xiaozhi_worker_requests_total", _and(w, 'result="error"')),
                rate("xiaozhi_worker_requests_total", w),
            ),
            unit="percentunit",
            limit=0.1,
        ),
        4,
        4,
    )
    d.add(
        stat(
            "LLM first token p95",
            quantile(0.95, "xiaozhi_stage_duration_seconds", _and(p, 'stage="cloud_llm_first_token"')),
            unit="s",
        ),
        4,
        4,
    )

    d.row("Workers")
    d.add(timeseries("Workers by role", [target(f"count by (role) (xiaozhi_worker_capacity{{{w}}})", "{{role}}")]), 8)
    d.add(
        timeseries(
            "In flight vs capacity",
            [
                target(f"sum by (role) (xiaozhi_worker_inflight{{{w}}})", "in flight {{role}}"),
                target(f"sum by (role) (xiaozhi_worker_capacity{{{w}}})", "capacity {{role}}"),
            ],
            description="LLM: streams (llm.max_inflight per worker); ASR: utterances (asr.max_inflight).",
        ),
        8,
    )
    d.add(
        timeseries(
            "Utilisation per worker",
            [
                target(f"xiaozhi_worker_inflight{{{w}}} / xiaozhi_worker_capacity{{{w}}}", "{{instance}} {{role}}"),
            ],
            unit="percentunit",
            limit=0.85,
            soft_max=1,
        ),
        8,
    )
    d.add(
        timeseries(
            "Requests/s by result",
            [target(rate("xiaozhi_worker_requests_total", w, "role, result"), "{{role}} {{result}}")],
            unit="reqps",
            stack=True,
        )
    )
    d.add(
        timeseries(
            "Refused (full)/s per worker",
            [
                target(
                    rate("xiaozhi_worker_requests_total", _and(w, 'result="refused_busy"'), "instance"), "{{instance}}"
                )
            ],
            unit="reqps",
            description="503 answers: the worker was at capacity; the edge retries another.",
        )
    )

    d.row("Latency")
    for title, stage in (
        ("LLM first token", "cloud_llm_first_token"),
        ("LLM whole reply", "cloud_llm_total"),
        ("ASR per utterance", "cloud_asr"),
    ):
        sel = _and(p, f'stage="{stage}"')
        d.add(
            timeseries(
                title,
                [
                    target(quantile(0.5, "xiaozhi_stage_duration_seconds", sel), "p50"),
                    target(quantile(0.95, "xiaozhi_stage_duration_seconds", sel), "p95"),
                ],
                unit="s",
                description=f"stage {stage}, measured on the workers.",
            ),
            8,
        )

    d.row("Tokens")
    for direction in ("completion", "prompt"):
        d.add(
            timeseries(
                f"{direction.capitalize()} tokens/s",
                [target(rate("xiaozhi_llm_tokens_total", _and(p, f'direction="{direction}"'), "model"), "{{model}}")],
                unit="short",
            )
        )

    d.row("The cloud as the edges see it")
    d.add(
        timeseries(
            "Requests from edges/s",
            [
                target(
                    rate("xiaozhi_nats_requests_total", EDGE, "subject_class, result"), "{{subject_class}} {{result}}"
                ),
            ],
            unit="reqps",
            stack=True,
        ),
        6,
    )
    d.add(
        timeseries(
            "No responders",
            [
                target(
                    ratio(
                        rate("xiaozhi_nats_requests_total", _and(EDGE, 'result="no_responders"'), "subject_class"),
                        rate(
                            "xiaozhi_nats_requests_total",
                            _and(EDGE, 'result!~"circuit_open|not_connected"'),
                            "subject_class",
                        ),
                    ),
                    "{{subject_class}}",
                ),
            ],
            unit="percentunit",
            limit=0.1,
            description="Share of requests sent that no worker answered.",
        ),
        6,
    )
    d.add(
        timeseries(
            "First chunk at the edges",
            [
                target(quantile(0.5, "xiaozhi_stage_duration_seconds", _and(EDGE, 'stage="cloud_first_chunk"')), "p50"),
                target(
                    quantile(0.95, "xiaozhi_stage_duration_seconds", _and(EDGE, 'stage="cloud_first_chunk"')), "p95"
                ),
            ],
            unit="s",
            description="Includes NATS (edge leaf, hub) on top of the worker's first token.",
        ),
        6,
    )
    d.add(
        timeseries(
            "Escalations from edges/s",
            [target(rate("xiaozhi_escalations_total", EDGE, "kind, reason"), "{{kind}} {{reason}}")],
            unit="reqps",
            stack=True,
        ),
        6,
    )

    d.row("Processes")
    d.add(
        state_timeline(
            "NATS connection per worker", f"max by (instance) (xiaozhi_cloud_link_up{{{p}}})", "{{instance}}"
        )
    )
    d.add(
        timeseries(
            "Event loop lag p99",
            [target(quantile(0.99, "xiaozhi_event_loop_lag_seconds", p, "instance"), "{{instance}}")],
            unit="s",
            limit=0.05,
        )
    )
    d.add(
        timeseries(
            "CPU (cores)", [target(f"sum by (instance) (rate(process_cpu_seconds_total{{{p}}}[{RI}]))", "{{instance}}")]
        )
    )
    d.add(timeseries("Memory", [target(f"process_resident_memory_bytes{{{p}}}", "{{instance}}")], unit="bytes"))
    d.add(table("Worker versions", f"xiaozhi_build_info{{{p}}}", hide=("job",)), 24, 6)
    return d


DASHBOARDS = {"fleet.json": fleet, "edge-node.json": edge_node, "cloud.json": cloud}


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard, exactly as committed."""
    return {
        name: json.dumps(build().to_json(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.grafana", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("deploy/grafana/dashboards"), help="directory to write")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = args.out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print(f"out of date in {args.out}: {', '.join(stale)} (run python -m ops.grafana --out {args.out})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
