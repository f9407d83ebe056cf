"""xiaozhi-eval on the two cheap components: it runs, prints and writes the documented JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.evaluator import main

FIELDS = {"p50_ms", "p95_ms", "mean_ms", "qps", "cpu_s_per_req", "requests", "workers", "component"}


def test_evaluator_vad_and_tts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.json"
    assert main(["--components", "vad,tts", "--requests", "3", "--out", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert {"machine", "vad_x1", "vad_x8", "vad_x32", "tts"} <= set(data)
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["python"]
    for name in ("vad_x1", "vad_x8", "vad_x32", "tts"):
        entry = data[name]
        assert FIELDS <= set(entry), name
        assert entry["requests"] == (3 if name == "tts" else 500) and entry["workers"] == 1
        assert 0 < entry["p50_ms"] <= entry["p95_ms"]
        assert entry["qps"] > 0 and entry["cpu_s_per_req"] >= 0
        assert "errors" not in entry
    assert data["vad_x32"]["streams"] == 32 and data["vad_x1"]["component"] == "vad"
    assert data["tts"]["mean_packets"] > 0 and data["tts"]["component"] == "tts"
    assert "tts" in capsys.readouterr().out


def test_evaluator_two_workers(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    assert main(["--components", "vad", "--workers", "2", "--vad-requests", "4", "--out", str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["vad_x8"]["workers"] == 2 and data["vad_x8"]["requests"] == 4


def test_evaluator_rejects_unknown_component() -> None:
    with pytest.raises(SystemExit):
        main(["--components", "vad,nope"])
