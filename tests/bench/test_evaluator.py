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


def test_answer_banks_load_and_are_big_enough() -> None:
    """The banks parse (a YAML slip drops a whole bank) and the Chinese one has the 40+ questions it is quoted on."""
    from bench.evaluator import load_bank

    zh, en = load_bank("zh"), load_bank("en")
    assert len(zh) >= 40 and len(en) >= 10
    for question, accept in zh + en:
        assert question.strip() and accept and all(a.strip() for a in accept), question
    assert len({q for q, _ in zh}) == len(zh)


def test_answer_scoring_folds_script_space_and_case_and_tells_the_language() -> None:
    from bench.evaluator import score_answer

    assert score_answer("中國的首都是北京。", ["北京"], "zh") == (True, True)
    assert score_answer("The capital is Beijing.", ["北京"], "zh") == (False, False)
    assert score_answer("首都是北 京", ["北京"], "zh") == (True, True)
    assert score_answer("It is PARIS.", ["Paris"], "en") == (True, True)
    assert score_answer("巴黎", ["Paris"], "en") == (False, False)
    assert score_answer("Seven days.", ["7", "seven"], "en") == (True, True)


def test_evaluator_answers_chinese_with_the_chinese_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Chinese bank is asked of the bundled Chinese model (Qwen) even on an English-only config, and its
    replies are Chinese. Correctness is printed, not asserted here: one answer flipping on another CPU is not
    a failure of the evaluator."""
    out = tmp_path / "answers.json"
    args = ["--components", "answers", "--language", "zh", "--questions", "5", "--out", str(out)]
    assert main(args) == 0
    entry = json.loads(out.read_text(encoding="utf-8"))["answers_zh"]
    assert entry["questions"] == 5 and entry["requests"] == 5
    assert "qwen" in entry["engine"].lower()
    assert entry["in_language_pct"] >= 60
    assert 0 <= entry["correct_pct"] <= 100
    assert "% correct" in capsys.readouterr().out


def test_evaluator_with_rules_answers_sums_without_the_model(tmp_path: Path) -> None:
    """The English bank's fifth question is "What is two plus two?": the arithmetic rule answers it."""
    out = tmp_path / "answers.json"
    assert (
        main(["--components", "answers", "--language", "en", "--questions", "5", "--with-rules", "--out", str(out)])
        == 0
    )
    entry = json.loads(out.read_text(encoding="utf-8"))["answers_en"]
    assert entry["answered_by_rules"] >= 1 and entry["questions"] == 5
    assert entry["median_reply_chars"] > 0 and entry["median_first_token_ms"] is not None
    assert all("two plus two" not in wrong["q"].lower() for wrong in entry["wrong"])
