"""The CI smoke load run: ~20 simulated devices for ~20 s against a real edge node (bundled models)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.loadgen.report import REQUIRED_FIELDS
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_loadgen_smoke(tmp_path) -> None:
    report_path = tmp_path / "report.json"
    plot_path = tmp_path / "latency.png"
    records = tmp_path / "turns.jsonl"
    # A subprocess: the load generator runs its own event loop and its own edge node.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen.cli",
            "--smoke",
            "--quiet",
            "--out",
            str(report_path),
            "--plot",
            str(plot_path),
            "--records",
            str(records),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert report_path.is_file(), f"no report (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    report = json.loads(report_path.read_text())
    context = json.dumps({k: report.get(k) for k in ("error_notes", "incomplete_reasons", "turns")})
    for key in REQUIRED_FIELDS:
        assert key in report, key
    assert report["devices"] == 20 and report["duration_s"] == 20
    assert report["protocol_errors"] == 0, context
    assert report["incomplete_turns"] == 0, context
    assert report["turns"] > 0, context
    assert report["turns_per_s"] > 0
    for key in ("p50", "p95", "p99"):
        assert report["first_audio_ms"][key] is not None
    assert report["pacing_jitter_ms"]["p99"] is not None
    assert report["server_cpu_pct"] is not None and report["server_rss_mb"] > 0
    assert report["stage_histograms"], "no server histograms read from /metrics"
    assert set(report["caches"]) == {"tts", "answer"}, "no cache figures read from /stats"
    assert sum(report["routes"].values()) > 0
    assert report["server_overhead_pct"] is not None and 0 < report["server_overhead_pct"] < 100
    assert report["server_cpu_by_role"]["event_loop"] > 0
    assert report["timeline"] and max(r["connected"] for r in report["timeline"]) > 0
    assert sum(c["turns"] for c in report["categories"].values()) == report["turns"]
    assert plot_path.stat().st_size > 0
    # Every turn ended with tts/stop: a record per turn, none with an error.
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(lines) == report["turns_started"] and not [r for r in lines if r["error"]]
    assert all(r["tts_stop_ms"] is not None for r in lines)
    assert proc.returncode == 0, proc.stderr[-3000:]
