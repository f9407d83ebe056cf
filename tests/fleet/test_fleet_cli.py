"""``xiaozhi-fleet`` without a fleet: calibrate writes the profile the edges load, bad arguments are
usage errors, and the verdict fails a run whose devices did not all connect or move."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from bench.fleet.cli import main, passed, render
from edge_node.engines.timing import load_profile
from tests.conftest import ROOT

EVAL = ROOT / "docs" / "perf" / "2026-11-25" / "eval.json"
RUN = ROOT / "docs" / "perf" / "fleet-2026-11-25" / "talkers-10" / "report.json"


def test_calibrate_writes_a_profile_the_edge_loads(tmp_path: Path) -> None:
    out = tmp_path / "profile.yaml"
    assert main(["calibrate", str(EVAL), "-o", str(out)]) == 0
    profile = load_profile(out)
    report = json.loads(EVAL.read_text())
    assert abs(profile.asr.base_s - report["asr"]["mean_ms"] / 1000) < 1e-3
    assert abs(profile.llm.first_token_s - report["llm"]["mean_ttft_ms"] / 1000) < 1e-3
    assert len(profile.llm.reply.split()) == round(report["llm"]["mean_pieces"])
    assert "xiaozhi-eval" in profile.source and "2-core" in profile.source
    broken = tmp_path / "eval.json"
    broken.write_text(json.dumps({"asr": {"mean_ms": 1}}))
    assert main(["calibrate", str(broken), "-o", str(tmp_path / "x.yaml")]) == 2


def test_bad_arguments_are_usage_errors() -> None:
    assert main(["run", "--devices", "0"]) == 2
    assert main(["run", "--talkers", "1.5"]) == 2
    assert main(["run", "--rate", "fast"]) == 2
    assert main(["run", "--kill-edge", "nope"]) == 2


def test_the_verdict_needs_every_device_connected_balanced_and_moved() -> None:
    report: dict[str, Any] = json.loads(RUN.read_text())
    assert passed(report) and "result: PASS" in render(report)
    assert "TIMING ENGINES" in render(report)
    for path, value in (
        (("boot", "never_connected"), 3),
        (("balance", "within_tolerance"), False),
        (("kill", "not_recovered"), 1),
        (("kill", "reassigned"), 0),
    ):
        bad = copy.deepcopy(report)
        bad[path[0]][path[1]] = value
        assert not passed(bad), path
        assert "result: FAIL" in render(bad)
    assert render(report).startswith("xiaozhi-fleet: 1000 devices (100 talking at 4/min), 8 edges")
