"""A timing profile for the fleet run's edges, from ``xiaozhi-eval``'s measurements.

The profile's times are what the real models took on the measured machine with all its cores
busy (``xiaozhi-eval`` runs one model instance per core, concurrently), so an edge with timing
engines holds its pool workers for as long as a loaded edge of that hardware would:

- ASR: the mean time per utterance (Whisper's utterance window is at least 8 s, so short commands
  cost about the same whatever their length);
- LLM: the mean time to first token, then (mean time - first token) / (pieces - 1) per token, and
  a reply with the mean number of pieces;
- TTS: mean synthesis time per second of speech, and the voice's speaking rate (characters of the
  evaluated replies per second of the audio they became).

The transcripts the timing ASR hands out are the load generator's mix, with its weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bench.evaluator import REPLIES
from bench.loadgen.mix import Mix, default_mix, zipf_weights

__all__ = ["CalibrationError", "profile_from_eval", "transcripts_from_mix"]

STAND_IN_WORDS = (
    "This is a timed stand-in for the local model's answer, as long as its average reply, spoken so "
    "the fleet run's edges send the audio a real answer would take. It says nothing useful on purpose, "
    "and every report names it as a timing engine rather than a model."
).split()


class CalibrationError(ValueError):
    """An eval report without the figures a profile needs; the message names the missing one."""


def _need(report: dict[str, Any], stage: str, key: str) -> float:
    try:
        value = float(report[stage][key])
    except (KeyError, TypeError, ValueError):
        raise CalibrationError(f"the eval report has no {stage}.{key}: run xiaozhi-eval with {stage}") from None
    if value < 0:
        raise CalibrationError(f"{stage}.{key} is negative ({value})")
    return value


def transcripts_from_mix(mix: Mix) -> list[dict[str, Any]]:
    """Every phrase with its share of turns: category weight times its weight within the category."""
    total = sum(c.weight for c in mix.categories)
    out: list[dict[str, Any]] = []
    for cat in mix.categories:
        inner = zipf_weights(len(cat.phrases), cat.zipf_s) if cat.distribution == "zipf" else [1.0] * len(cat.phrases)
        inner_total = sum(inner)
        for phrase, w in zip(cat.phrases, inner, strict=True):
            out.append({"text": phrase, "weight": round(cat.weight / total * w / inner_total, 6)})
    return out


def profile_from_eval(report: dict[str, Any], source: str, mix: Mix | None = None) -> dict[str, Any]:
    asr_s = _need(report, "asr", "mean_ms") / 1000.0
    llm_mean_s = _need(report, "llm", "mean_ms") / 1000.0
    ttft_s = _need(report, "llm", "mean_ttft_ms") / 1000.0
    pieces = max(1, round(_need(report, "llm", "mean_pieces")))
    per_token_s = max(0.0, llm_mean_s - ttft_s) / max(1, pieces - 1)
    tts_s = _need(report, "tts", "mean_ms") / 1000.0
    tts_audio_s = _need(report, "tts", "mean_audio_s")
    if tts_audio_s <= 0:
        raise CalibrationError("tts.mean_audio_s must be > 0")
    requests = int(_need(report, "tts", "requests"))
    # The evaluator cycles through REPLIES: the same characters its audio came from.
    chars = sum(len(REPLIES[i % len(REPLIES)]) for i in range(requests)) / max(1, requests)
    words = (STAND_IN_WORDS * (pieces // len(STAND_IN_WORDS) + 1))[:pieces]
    machine = report.get("machine") or {}
    where = f"{machine.get('cpus_usable', '?')}-core {machine.get('processor', '?')}"
    return {
        "source": f"xiaozhi-eval {source} ({where}; {report['asr'].get('engine', '?')}, "
        f"{report['llm'].get('engine', '?')}, {report['tts'].get('engine', '?')})",
        "asr": {"base_s": round(asr_s, 4), "per_audio_s": 0.0},
        "llm": {"first_token_s": round(ttft_s, 4), "per_token_s": round(per_token_s, 4), "reply": " ".join(words)},
        "tts": {
            "base_s": 0.0,
            "per_audio_s": round(tts_s / tts_audio_s, 4),
            "chars_per_s": round(chars / tts_audio_s, 2),
        },
        "transcripts": transcripts_from_mix(mix or default_mix()),
        "seed": 7,
    }


def write_profile(eval_path: Path, out: Path, mix: Mix | None = None) -> dict[str, Any]:
    report = json.loads(eval_path.read_text(encoding="utf-8"))
    profile = profile_from_eval(report, str(eval_path), mix)
    header = (
        "# A timing profile for the fleet run's edges (edge_node/engines/timing.py), written by\n"
        f"# `xiaozhi-fleet calibrate {eval_path}`: the real models' measured times, not a model.\n"
    )
    out.write_text(header + yaml.safe_dump(profile, sort_keys=False, width=110), encoding="utf-8")
    return profile
