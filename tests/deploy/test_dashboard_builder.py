"""The dashboard builder and the ``python -m ops.grafana`` command line.

test_dashboards.py checks the dashboards themselves; these pin the builder's layout rules (which the
committed JSON only shows by example) and the command's write/--check contract that
docs/operations.md documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ops import grafana
from ops.dashboards.builder import build, layout, panel_json
from ops.dashboards.spec import Dashboard, Panel, Query, Row, Stat, TimeSeries


def test_layout_wraps_rows_and_numbers_everything() -> None:
    rows = [
        Row(
            "first",
            [
                TimeSeries("a", [Query("up", "x"), Query("up", "y")], w=10, h=3),
                Stat("b", "up", w=10),
                Stat("c", "up"),  # 12 wide: passes column 24, so wraps below the tallest (8)
            ],
        ),
        Row("second", [Stat("d", "up")], w=24, h=2),
    ]
    panels = layout(rows)
    assert [(p["title"], p["id"], p["gridPos"]) for p in panels] == [
        ("first", 1, {"h": 1, "w": 24, "x": 0, "y": 0}),
        ("a", 2, {"h": 3, "w": 10, "x": 0, "y": 1}),
        ("b", 3, {"h": 8, "w": 10, "x": 10, "y": 1}),
        ("c", 4, {"h": 8, "w": 12, "x": 0, "y": 9}),
        ("second", 5, {"h": 1, "w": 24, "x": 0, "y": 17}),
        ("d", 6, {"h": 2, "w": 24, "x": 0, "y": 18}),
    ]
    assert [t["refId"] for t in panels[1]["targets"]] == ["A", "B"]


def test_build_is_repeatable() -> None:
    """Building never mutates what dashboards share (data source, mappings, links)."""
    for dashboard in grafana.DASHBOARDS.values():
        assert build(dashboard) == build(dashboard)
    assert grafana.render_all() == grafana.render_all()


def test_unknown_panel_kind_is_refused() -> None:
    @dataclass(frozen=True)
    class Gauge(Panel):
        expr: str

    with pytest.raises(TypeError, match="Gauge"):
        panel_json(Gauge("g", "up"))


def test_variables_follow_the_datasource_variable() -> None:
    names = {name: [v["name"] for v in build(d)["templating"]["list"]] for name, d in grafana.DASHBOARDS.items()}
    assert names == {
        "fleet.json": ["datasource"],
        "edge-node.json": ["datasource", "instance"],
        "cloud.json": ["datasource", "role", "worker"],
    }
    assert isinstance(grafana.DASHBOARDS["fleet.json"], Dashboard)


def test_cli_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dashboards"
    assert grafana.main(["--out", str(out), "--check"]) == 1  # nothing there yet
    assert not out.exists()
    assert grafana.main(["--out", str(out)]) == 0
    expected = grafana.render_all()
    assert {p.name: p.read_text(encoding="utf-8") for p in out.iterdir()} == expected
    assert grafana.main(["--out", str(out), "--check"]) == 0

    (out / "cloud.json").write_text("{}\n", encoding="utf-8")
    capsys.readouterr()
    assert grafana.main(["--out", str(out), "--check"]) == 1
    assert "cloud.json" in capsys.readouterr().out
    assert (out / "cloud.json").read_text(encoding="utf-8") == "{}\n"  # --check writes nothing
    assert grafana.main(["--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'cloud.json'}"  # only the stale file
    assert (out / "cloud.json").read_text(encoding="utf-8") == expected["cloud.json"]
