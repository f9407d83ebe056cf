"""The Grafana dashboards and the Prometheus rules against the metrics the code really exports.

Every metric name in a dashboard query, a dashboard variable, an annotation or a rule expression
must be a sample the code's registry produces (edge_node.metrics, shared.metrics, the thread-CPU
collector of edge_node.cpu_roles, prometheus_client's process collectors), a recording rule of
deploy/prometheus/rules, or one of Prometheus' own series (``up``, ``ALERTS``). Label names in
selectors, ``by``/``on``/``group_left`` lists and legends must exist on the metrics involved or be
target labels that prometheus.yml adds. So a renamed metric or label fails here, not on a blank
panel in production.

The dashboards themselves: valid JSON, exactly what ``python -m ops.grafana`` generates, a
``datasource`` template variable and no data source but ``${datasource}``, an expression in every
target, unique panel ids, panels that fit the grid without overlapping, and PromQL that
promtool parses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import edge_node.metrics  # noqa: F401 - registers the edge's metrics
import shared.metrics  # noqa: F401 - registers the metrics both tiers share
from edge_node import cpu_roles
from ops import grafana

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULE_FILES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Labels the scrape config puts on every series of a target (prometheus.yml, kubernetes-workers.scrape.yml).
TARGET_LABELS = {"job", "instance", "node", "cloud", "namespace", "pod"}
# Series Prometheus makes itself: name -> labels (None: any label).
PROMETHEUS_SERIES: dict[str, set[str] | None] = {"up": set(), "ALERTS": None, "ALERTS_FOR_STATE": None}

# -- the registry -------------------------------------------------------------------------------------
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def registry_samples() -> dict[str, set[str]]:
    """Every sample name the code's registry can expose -> its label names."""
    cpu_roles.register()
    samples: dict[str, set[str]] = {}
    collectors = REGISTRY._names_to_collectors  # name (with and without suffixes) -> collector
    for family in REGISTRY.collect():
        collector = collectors.get(family.name) or collectors.get(family.name + _SUFFIXES.get(family.type, ("",))[0])
        labels = set(getattr(collector, "_labelnames", ()))
        for sample in family.samples:
            labels |= set(sample.labels) - {"le", "quantile"}
        for suffix in _SUFFIXES.get(family.type, ("",)):
            extra = (
                {"le"} if suffix == "_bucket" else {"quantile"} if family.type == "summary" and not suffix else set()
            )
            samples[family.name + suffix] = labels | extra
        for sample in family.samples:
            samples.setdefault(sample.name, labels | set(sample.labels))
    return samples


@pytest.fixture(scope="module")
def known() -> dict[str, set[str] | None]:
    """Metric name -> label names (None: not checked), recording rules included."""
    names: dict[str, set[str] | None] = {**registry_samples(), **PROMETHEUS_SERIES}
    for name in ("xiaozhi_turns_total", "xiaozhi_turn_latency_seconds_bucket", "xiaozhi_thread_cpu_seconds_total"):
        assert name in names, f"the registry scan missed {name}: the test itself is broken"
    # Recording rules, in file order (each may use earlier ones): their labels are what the
    # metrics they read carry (a safe superset of what their aggregations keep).
    for rule in recording_rules():
        refs = parse_promql(rule["expr"])
        labels: set[str] = set(TARGET_LABELS)
        for ref in refs.selectors:
            found = names.get(ref.metric)
            labels |= found if found is not None else set()
        names[rule["record"]] = labels
    return names


# -- a small PromQL tokenizer -------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>(?:0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@])
    """,
    re.VERBOSE,
)
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}
_GRAFANA_INTERVALS = re.compile(r"\$__(?:rate_interval|interval|range)(?:_ms|_s)?")
_GRAFANA_VARS = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\]")


def for_promql(expr: str) -> str:
    """A dashboard expression as plain PromQL: Grafana's intervals become durations, variables
    (only ever inside label-matcher strings here) a plain word."""
    return _GRAFANA_VARS.sub("x", _GRAFANA_INTERVALS.sub("5m", expr))


@dataclass
class Selector:
    metric: str
    labels: set[str] = field(default_factory=set)


@dataclass
class Refs:
    selectors: list[Selector] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenize {expr[pos : pos + 30]!r} in {expr!r}")
        if match.lastgroup != "ws":
            out.append((match.lastgroup or "", match.group()))
        pos = match.end()
    return out


def parse_promql(expr: str) -> Refs:
    """Metric names with the label names their selectors use, and every grouping label."""
    toks = _tokens(for_promql(expr))
    refs = Refs()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if text == "[":  # a range or subquery: durations only
            while toks[i][1] != "]":
                i += 1
        elif text == "{":  # a selector without a metric name
            i = _matchers(toks, i, Selector(""))
        elif kind == "ident":
            low = text.lower()
            if low in GROUPING and nxt == "(":
                i += 2
                while toks[i][1] != ")":
                    if toks[i][0] == "ident":
                        refs.grouping.add(toks[i][1])
                    i += 1
            elif nxt == "(" or low in KEYWORDS or (low in AGGREGATIONS and nxt.lower() in ("by", "without")):
                pass  # a function, an aggregation or a keyword
            else:
                selector = Selector(text)
                refs.selectors.append(selector)
                if nxt == "{":
                    i = _matchers(toks, i + 1, selector)
        i += 1
    return refs


def _matchers(toks: list[tuple[str, str]], i: int, selector: Selector) -> int:
    """Reads ``{name op "value", ...}`` from the ``{`` at i; returns the index of the ``}``."""
    i += 1
    while toks[i][1] != "}":
        kind, text = toks[i]
        if kind == "ident" and toks[i + 1][1] in ("=", "!=", "=~", "!~"):
            selector.labels.add(text)
        i += 1
    return i


def test_tokenizer_finds_metrics_labels_and_grouping() -> None:
    refs = parse_promql(
        'histogram_quantile(0.95, sum by (route, le) (rate(xiaozhi_turn_latency_seconds_bucket{instance="$instance",'
        ' route=~"a|b"}[$__rate_interval]))) > bool 1.2 and on (job) up offset 1h30m unless sum(x:y:z) without (a)'
    )
    assert [(s.metric, s.labels) for s in refs.selectors] == [
        ("xiaozhi_turn_latency_seconds_bucket", {"instance", "route"}),
        ("up", set()),
        ("x:y:z", set()),
    ]
    assert refs.grouping == {"route", "le", "job", "a"}


# -- the checks, for any expression ---------------------------------------------------------------------
def check_expr(expr: str, where: str, known: dict[str, set[str] | None], legend: str = "") -> list[str]:
    problems = []
    try:
        refs = parse_promql(expr)
    except (ValueError, IndexError) as exc:
        return [f"{where}: cannot parse {expr!r}: {exc}"]
    if not refs.selectors:
        problems.append(f"{where}: no metric in {expr!r}")
    available: set[str] | None = set(TARGET_LABELS)
    for ref in refs.selectors:
        if ref.metric not in known:
            problems.append(f"{where}: unknown metric {ref.metric!r} (not in the code's registry nor a recording rule)")
            continue
        labels = known[ref.metric]
        if labels is None:
            available = None
            continue
        if available is not None:
            available |= labels
        for label in sorted(ref.labels - labels - TARGET_LABELS - {"__name__"}):
            problems.append(f"{where}: {ref.metric} has no label {label!r} (it has {sorted(labels)})")
    if available is not None:
        for label in sorted(refs.grouping - available):
            problems.append(f"{where}: grouping label {label!r} is on none of the metrics in {expr!r}")
        for label in sorted(set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)) - available):
            problems.append(f"{where}: legend label {label!r} is on none of the metrics in {expr!r}")
    return problems


# -- the rules ------------------------------------------------------------------------------------------
def recording_rules() -> list[dict[str, Any]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out.extend(r for r in group["rules"] if "record" in r)
    return out


def rule_exprs() -> Iterator[tuple[str, str, str]]:
    """(where, expr, the summary to check label references in) for every rule."""
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule.get("alert")
                notes = " ".join((rule.get("annotations") or {}).values())
                yield f"{path.name}:{name}", rule["expr"], notes


def test_rule_expressions_use_known_metrics_and_labels(known: dict[str, set[str] | None]) -> None:
    problems = []
    for where, expr, notes in rule_exprs():
        legend = " ".join(f"{{{{{m}}}}}" for m in re.findall(r"\$labels\.(\w+)", notes))
        problems += check_expr(expr, where, known, legend)
    assert not problems, "\n".join(problems)


# -- the dashboards --------------------------------------------------------------------------------------
def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def dashboard_exprs(name: str, dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(where, PromQL, legend) for every panel target, variable query and annotation."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield (
                f"{name} panel {panel.get('id')} {panel.get('title')!r}",
                target.get("expr", ""),
                target.get("legendFormat", ""),
            )
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
            assert match, f"{name} variable {var['name']}: only label_values(expr, label) queries are used"
            yield f"{name} variable {var['name']}", match.group(1), f"{{{{{match.group(2)}}}}}"
    for note in dashboard.get("annotations", {}).get("list", []):
        if "expr" in note:
            yield f"{name} annotation {note['name']!r}", note["expr"], ""


def test_dashboards_exist() -> None:
    assert set(dashboards()) == {"fleet.json", "edge-node.json", "cloud.json"}


def test_dashboards_are_what_the_generator_writes() -> None:
    rendered = grafana.render_all()
    for name, text in rendered.items():
        current = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert current == text, (
            f"{name} differs from ops/grafana.py's output: run python -m ops.grafana --out {DASHBOARDS}"
        )


def test_dashboard_expressions_use_known_metrics_and_labels(known: dict[str, set[str] | None]) -> None:
    problems = []
    for name, dashboard in dashboards().items():
        for where, expr, legend in dashboard_exprs(name, dashboard):
            problems += check_expr(expr, where, known, legend)
    assert not problems, "\n".join(problems)


def _datasources(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            yield from _datasources(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _datasources(value, f"{path}[{i}]")


def test_dashboard_structure() -> None:
    uids = set()
    for name, dashboard in dashboards().items():
        assert dashboard.get("uid") and dashboard["uid"] not in uids, f"{name}: missing or duplicate uid"
        uids.add(dashboard["uid"])
        assert dashboard.get("title"), name
        assert 36 <= dashboard.get("schemaVersion", 0) <= 41, f"{name}: schemaVersion {dashboard.get('schemaVersion')}"
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        ds = variables.get("datasource")
        assert ds is not None and ds["type"] == "datasource" and ds["query"] == "prometheus", (
            f"{name}: needs a template variable `datasource` of type datasource querying prometheus"
        )
        for where, value in _datasources(dashboard):
            assert value == DATASOURCE, f"{name}{where}: datasource {value!r}, only {DATASOURCE} is allowed"
        ids = [p.get("id") for p in panels(dashboard)]
        assert all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)), f"{name}: panel ids {ids}"
        taken: dict[tuple[int, int], int] = {}
        for panel in panels(dashboard):
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, f"{name} panel {panel['id']}: outside the grid"
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in taken, f"{name}: panels {taken[(x, y)]} and {panel['id']} overlap"
                    taken[(x, y)] = panel["id"]
            if panel["type"] == "row":
                continue
            assert panel.get("datasource") == DATASOURCE, f"{name} panel {panel['id']}: datasource"
            assert panel.get("targets"), f"{name} panel {panel['id']} {panel.get('title')!r}: no targets"
            ref_ids = [t.get("refId") for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)) and all(ref_ids), f"{name} panel {panel['id']}: refIds {ref_ids}"
            for target in panel["targets"]:
                assert target.get("expr", "").strip(), f"{name} panel {panel['id']} {panel.get('title')!r}: empty expr"


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """promtool parses every dashboard expression (as recording rules in a scratch file)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found on PATH: it comes with Debian's `prometheus` package; run scripts/install.sh")
    rules = []
    for name, dashboard in dashboards().items():
        for i, (where, expr, _) in enumerate(dashboard_exprs(name, dashboard)):
            rules.append(
                {"record": f"dashboard:check_{len(rules)}:{i}", "expr": for_promql(expr), "labels": {"at": where}}
            )
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"promtool rejected a dashboard expression:\n{proc.stdout}\n{proc.stderr}"


def test_provisioning_files() -> None:
    prov = ROOT / "deploy" / "grafana" / "provisioning"
    dash = yaml.safe_load((prov / "dashboards" / "xiaozhi.yaml").read_text(encoding="utf-8"))
    assert dash["apiVersion"] == 1
    (provider,) = dash["providers"]
    assert provider["name"] and provider["type"] == "file" and provider["options"]["path"]
    sources = yaml.safe_load((prov / "datasources" / "prometheus.yaml").read_text(encoding="utf-8"))
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
