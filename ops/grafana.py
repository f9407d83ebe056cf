"""The Grafana dashboards of a xiaozhi fleet, generated so every panel follows the same rules.

    python -m ops.grafana --out deploy/grafana/dashboards          # write fleet, edge-node, cloud.json
    python -m ops.grafana --out deploy/grafana/dashboards --check  # exit 1 if the files differ

The committed JSON is this module's output (tests/deploy/test_dashboards.py checks that), so edit
the dashboards' data in ops/dashboards/ (fleet.py, edge_node.py, cloud.py) and regenerate rather
than editing the JSON. The rules every dashboard follows:

- the data source is the ``${datasource}`` template variable (type datasource, Prometheus), never
  a UID, so the same file works in every Grafana (ops/dashboards/builder.py);
- rates use ``$__rate_interval``; latencies come from the histograms with ``histogram_quantile``
  (ops/dashboards/promql.py);
- the job names are the ones deploy/prometheus/prometheus.yml gives: ``xiaozhi-edge`` and
  ``xiaozhi-cloud-worker``; per-node breakdowns use the ``instance`` label, which every target has.

Metric names are those of edge_node/metrics.py, shared/metrics.py and edge_node/cpu_roles.py;
the test checks every name and label used here exists in the code's registry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ops.dashboards import cloud, edge_node, fleet
from ops.dashboards.builder import render
from ops.dashboards.spec import Dashboard

DASHBOARDS: dict[str, Dashboard] = {
    "fleet.json": fleet.DASHBOARD,
    "edge-node.json": edge_node.DASHBOARD,
    "cloud.json": cloud.DASHBOARD,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard, exactly as committed."""
    return {name: render(dashboard) for name, dashboard in DASHBOARDS.items()}


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
