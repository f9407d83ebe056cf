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
    """The banks parse (a YAML slip drops a whole bank), hold 100+ questions between them, and cover every
    kind the router keeps a score for but ``creative`` and ``timer`` in both languages."""
    from bench.evaluator import load_bank
    from edge_node.routing.kinds import KINDS, question_kind

    zh, en = load_bank("zh"), load_bank("en")
    assert len(zh) >= 60 and len(en) >= 80 and len(zh) + len(en) >= 100
    for item in zh + en:
        assert item.q.strip() and item.accept and all(a.strip() for a in item.accept), item.q
    for language, bank in (("en", en), ("zh", zh)):
        assert len({i.q for i in bank}) == len(bank)
        kinds = {question_kind(i.q, language) for i in bank}
        assert kinds == set(KINDS) - {"creative", "timer"}, (language, kinds)  # no answer text to check
        assert all(question_kind(i.q, language) == "device" for i in bank if i.action)


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


def test_a_device_request_counts_only_when_the_device_is_told(tmp_path: Path) -> None:
    """The bank's device requests: with the rules the device is told (correct); the model alone only says it
    did, which never counts. Kinds and the local_scores block come with the results."""
    from bench.evaluator import load_bank

    bank = load_bank("en")
    first = next(i for i, item in enumerate(bank) if item.action)
    out = tmp_path / "answers.json"
    args = ["--components", "answers", "--language", "en", "--questions", str(first + 1), "--out", str(out)]
    assert main([*args, "--with-rules"]) == 0
    with_rules = json.loads(out.read_text(encoding="utf-8"))["answers_en"]
    device = [a for a in with_rules["answers"] if a["q"] == bank[first].q][0]
    assert device["kind"] == "device" and device["by_rule"] and device["correct"]
    assert with_rules["by_kind"]["device"]["model_questions"] == 0
    assert main(args) == 0
    alone = json.loads(out.read_text(encoding="utf-8"))["answers_en"]
    device = [a for a in alone["answers"] if a["q"] == bank[first].q][0]
    assert not device["by_rule"] and not device["correct"], device["reply"]


def test_local_scores_block_parses_as_a_routing_config() -> None:
    from bench.evaluator import local_scores_yaml
    from shared.routing_config import parse_routing

    results = {
        "answers_en": {"language": "en", "by_kind": {"fact": {"model_score": 0.9}, "device": {"model_score": None}}},
        "answers_zh": {"language": "zh", "by_kind": {"explain": {"model_score": 0.5}}},
    }
    policy = parse_routing(local_scores_yaml(results))
    assert policy.local_scores == {"en": {"fact": 0.9}, "zh": {"explain": 0.5}}
