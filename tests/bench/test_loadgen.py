"""Unit tests of the load generator's pieces: mix files, Zipf sampling, jitter, Prometheus parsing."""

from __future__ import annotations

import collections
import math

import pytest
import yaml

from bench.loadgen.cli import parse_rate
from bench.loadgen.device import LoadState, TurnRecord
from bench.loadgen.mix import DEFAULT_MIX_YAML, MixError, default_mix, load_mix, parse_mix, zipf_weights
from bench.loadgen.naive import naive_asr_config
from bench.loadgen.pacing import analyse_turn, turn_jitter_ms
from bench.loadgen.report import (
    REQUIRED_FIELDS,
    build_report,
    histogram_delta,
    histogram_quantile,
    parse_histograms,
    percentiles,
    stats_delta,
)
from shared.engines.config import AsrConfig


def test_default_mix_shape() -> None:
    mix = default_mix()
    names = [c.name for c in mix.categories]
    assert names == ["commands", "everyday", "open"]
    weights = {c.name: c.weight for c in mix.categories}
    assert weights == {"commands": 0.3, "everyday": 0.5, "open": 0.2}
    everyday = mix.categories[1]
    assert everyday.distribution == "zipf" and everyday.zipf_s == 1.1 and len(everyday.phrases) == 15
    assert len(mix.categories[2].phrases) == 45
    assert len(mix.phrases()) == len(set(mix.phrases()))


def test_load_mix_file(tmp_path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text("seed: 3\ncategories:\n  a:\n    weight: 2\n    phrases: [Hello there.]\n")
    mix = load_mix(path)
    assert mix.seed == 3 and mix.categories[0].phrases == ("Hello there.",)
    assert mix.sampler().sample() == ("a", "Hello there.")


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("[1, 2]", "top level must be a mapping"),
        ("categories: {}", "non-empty mapping"),
        ("categories:\n  a: {weight: 0, phrases: [x]}", "categories.a.weight"),
        ("categories:\n  a: {weight: yes, phrases: [x]}", "categories.a.weight"),
        ("categories:\n  a: {weight: 1, phrases: []}", "categories.a.phrases"),
        ("categories:\n  a: {weight: 1, phrases: [' ']}", "categories.a.phrases[0]"),
        ("categories:\n  a: {weight: 1, phrases: [x], distribution: pareto}", "categories.a.distribution"),
        ("categories:\n  a: {weight: 1, phrases: [x], distribution: zipf, zipf_s: -1}", "categories.a.zipf_s"),
        ("categories:\n  a: {weight: 1, phrases: [x], zipf_s: 1.2}", "only meaningful"),
        ("categories:\n  a: {weight: 1, phrases: [x], wieght: 1}", "unknown key"),
        ("categories:\n  a: {weight: 1, phrases: [x]}\nextra: 1", "unknown top-level"),
        ("categories:\n  a: {weight: 1, phrases: [x]}\nseed: abc", "seed"),
    ],
)
def test_mix_validation(doc: str, needle: str) -> None:
    with pytest.raises(MixError) as exc:
        parse_mix(yaml.safe_load(doc), "m.yaml")
    assert needle in str(exc.value) and "m.yaml" in str(exc.value)


def test_mix_file_errors(tmp_path) -> None:
    with pytest.raises(MixError, match="cannot read"):
        load_mix(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories: [unclosed")
    with pytest.raises(MixError, match="not valid YAML"):
        load_mix(bad)


def test_zipf_weights() -> None:
    w = zipf_weights(15, 1.1)
    assert math.isclose(sum(w), 1.0)
    assert all(a > b for a, b in zip(w, w[1:], strict=False))
    assert math.isclose(w[0] / w[1], 2**1.1)
    with pytest.raises(ValueError):
        zipf_weights(0, 1.1)


def test_zipf_sampling_repeats_the_head() -> None:
    mix = parse_mix(yaml.safe_load(DEFAULT_MIX_YAML))
    sampler = mix.sampler(seed=42)
    draws = [sampler.sample() for _ in range(20000)]
    cats = collections.Counter(c for c, _ in draws)
    assert abs(cats["commands"] / 20000 - 0.3) < 0.02
    assert abs(cats["everyday"] / 20000 - 0.5) < 0.02
    everyday = mix.categories[1].phrases
    counts = collections.Counter(p for c, p in draws if c == "everyday")
    n = cats["everyday"]
    expected = zipf_weights(len(everyday), 1.1)
    assert abs(counts[everyday[0]] / n - expected[0]) < 0.02  # the top phrase: ~30 % of everyday turns
    assert counts[everyday[0]] > 5 * counts[everyday[-1]]
    # Open questions are uniform.
    open_counts = collections.Counter(p for c, p in draws if c == "open")
    assert max(open_counts.values()) < 2 * min(open_counts.values())
    # Reproducible.
    again = mix.sampler(seed=42)
    assert [again.sample() for _ in range(50)] == draws[:50]


def test_jitter_definition() -> None:
    # The server's burst: the packet that starts playback + 5 queued, then paced at 60 ms with one
    # packet 10 ms late.
    arrivals = [0.0, 0.001, 0.002, 0.003, 0.004, 0.005]
    t = 0.005
    for gap in (0.060, 0.060, 0.070, 0.050, 0.060):
        t += gap
        arrivals.append(t)
    j = turn_jitter_ms(arrivals, 60, prebuffer=5)
    assert [round(x, 6) for x in j] == [0.0, 0.0, 10.0, 10.0, 0.0]
    assert turn_jitter_ms(arrivals[:6], 60, prebuffer=5) == []
    assert turn_jitter_ms([], 60) == []
    assert len(turn_jitter_ms([0.0, 0.06, 0.12], 60, prebuffer=0)) == 2
    with pytest.raises(ValueError):
        turn_jitter_ms([0.0], 0)


def test_stall_starts_a_new_segment() -> None:
    # 3 packets back to back (prebuffer 2), 2 paced, then the queue runs dry for 1 s: a stall,
    # followed by a new burst of 3 (not jitter) and 1 paced packet 5 ms early.
    arrivals = [0.0, 0.0, 0.0, 0.06, 0.12]
    # Played until 0.18 + 0.06 + 0.06 = 0.30 (packets 0..4 at 0, .06, .12, .18, .24 -> dry at 0.30).
    arrivals += [1.30, 1.30, 1.30, 1.355]
    jitter, stalls = analyse_turn(arrivals, 60, prebuffer=2)
    assert [round(x, 6) for x in stalls] == [1000.0]
    assert [round(x, 6) for x in jitter] == [0.0, 0.0, 5.0]
    # A late but not starving packet is jitter, not a stall.
    jitter, stalls = analyse_turn([0.0, 0.0, 0.0, 0.10, 0.16], 60, prebuffer=2)
    assert stalls == [] and [round(x, 6) for x in jitter] == [40.0, 0.0]


METRICS_BEFORE = """\
# HELP xiaozhi_stage_duration_seconds Compute time per pipeline stage
# TYPE xiaozhi_stage_duration_seconds histogram
xiaozhi_stage_duration_seconds_bucket{le="0.1",stage="asr"} 1.0
xiaozhi_stage_duration_seconds_bucket{le="0.5",stage="asr"} 2.0
xiaozhi_stage_duration_seconds_bucket{le="+Inf",stage="asr"} 2.0
xiaozhi_stage_duration_seconds_count{stage="asr"} 2.0
xiaozhi_stage_duration_seconds_sum{stage="asr"} 0.35
# HELP xiaozhi_sessions_active Open device sessions
# TYPE xiaozhi_sessions_active gauge
xiaozhi_sessions_active 3.0
"""
METRICS_AFTER = """\
# HELP xiaozhi_stage_duration_seconds Compute time per pipeline stage
# TYPE xiaozhi_stage_duration_seconds histogram
xiaozhi_stage_duration_seconds_bucket{le="0.1",stage="asr"} 1.0
xiaozhi_stage_duration_seconds_bucket{le="0.5",stage="asr"} 6.0
xiaozhi_stage_duration_seconds_bucket{le="+Inf",stage="asr"} 6.0
xiaozhi_stage_duration_seconds_count{stage="asr"} 6.0
xiaozhi_stage_duration_seconds_sum{stage="asr"} 1.55
xiaozhi_stage_duration_seconds_bucket{le="0.1",stage="tts"} 0.0
xiaozhi_stage_duration_seconds_bucket{le="0.5",stage="tts"} 0.0
xiaozhi_stage_duration_seconds_bucket{le="+Inf",stage="tts"} 0.0
xiaozhi_stage_duration_seconds_count{stage="tts"} 0.0
xiaozhi_stage_duration_seconds_sum{stage="tts"} 0.0
# HELP xiaozhi_turn_latency_seconds End of speech to first downlink audio packet
# TYPE xiaozhi_turn_latency_seconds histogram
xiaozhi_turn_latency_seconds_bucket{le="1.0",route="intent"} 3.0
xiaozhi_turn_latency_seconds_bucket{le="2.0",route="intent"} 4.0
xiaozhi_turn_latency_seconds_bucket{le="+Inf",route="intent"} 5.0
xiaozhi_turn_latency_seconds_count{route="intent"} 5.0
xiaozhi_turn_latency_seconds_sum{route="intent"} 7.0
xiaozhi_turn_latency_seconds_created{route="intent"} 1.7e9
"""


def test_parse_histograms_and_delta() -> None:
    before = parse_histograms(METRICS_BEFORE)
    after = parse_histograms(METRICS_AFTER)
    assert set(before) == {"xiaozhi_stage_duration_seconds"}  # the gauge is ignored
    asr = after["xiaozhi_stage_duration_seconds"]["stage=asr"]
    assert asr["count"] == 6 and math.isclose(asr["sum"], 1.55)
    assert asr["buckets"] == {0.1: 1.0, 0.5: 6.0, math.inf: 6.0}
    delta = histogram_delta(before, after)
    d = delta["xiaozhi_stage_duration_seconds"]["stage=asr"]
    assert d["count"] == 4 and math.isclose(d["sum_s"], 1.2)
    assert d["mean_ms"] == 300.0
    assert d["buckets"] == {"0.1": 0, "0.5": 4, "+Inf": 4}
    assert d["p50_ms"] == 300.0  # rank 2 of 4 in (0.1, 0.5]: linear
    assert "stage=tts" not in delta["xiaozhi_stage_duration_seconds"]  # no new observations
    fa = delta["xiaozhi_turn_latency_seconds"]["route=intent"]
    assert fa["count"] == 5 and fa["p95_ms"] == 2000.0  # beyond the last finite bucket: its bound


def test_histogram_quantile() -> None:
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None
    assert histogram_quantile(0.5, {1.0: 10.0, 2.0: 10.0, math.inf: 10.0}) == 0.5
    assert histogram_quantile(0.75, {1.0: 5.0, 2.0: 10.0, math.inf: 10.0}) == 1.5


def test_percentiles_and_rate() -> None:
    p = percentiles([None, 1.0, 2.0, 3.0])
    assert p["n"] == 3 and p["p50"] == 2.0 and p["max"] == 3.0
    assert percentiles([])["p99"] is None
    assert parse_rate("4/min") == 4.0
    assert parse_rate("0.1/s") == 6.0
    assert parse_rate("120/h") == 2.0
    assert parse_rate("5") == 5.0
    for bad in ("fast", "0/min", "-1/min", "4/day"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_build_report_fields() -> None:
    state = LoadState(t0=0.0, deadline=10.0)
    state.records = [
        TurnRecord(
            t=3.0,
            device=0,
            category="commands",
            phrase="x",
            stt_ms=100,
            first_audio_ms=400,
            tts_stop_ms=900,
            turn_total_ms=2000,
            packets=10,
            jitter_ms=[1.0, 2.0],
        ),
        TurnRecord(
            t=12.0,
            device=1,
            category="open",
            phrase="y",
            stt_ms=150,
            first_audio_ms=1500,
            tts_stop_ms=3000,
            turn_total_ms=5000,
            packets=40,
            jitter_ms=[3.0],
        ),
        TurnRecord(t=8.0, device=1, category="open", phrase="y", error="timeout", turn_total_ms=60000),
    ]
    state.connected_samples = [(0.0, 1), (1.0, 2), (6.0, 2), (11.0, 0)]
    state.reconnects = 1
    report = build_report(
        state=state,
        devices=2,
        duration_s=10,
        ramp_s=0,
        rate_per_min=4,
        url="ws://x",
        mix_source="m",
        elapsed_s=13.0,
        resource_samples=[(1.0, 50.0, 100.0), (2.0, 150.0, 120.0)],
        hist_before=parse_histograms(METRICS_BEFORE),
        hist_after=parse_histograms(METRICS_AFTER),
    )
    for key in REQUIRED_FIELDS:
        assert key in report, key
    assert report["turns"] == 2 and report["turns_in_window"] == 1 and report["turns_per_s"] == 0.1
    assert report["incomplete_turns"] == 1 and report["errors"] == 2
    assert report["incomplete_reasons"] == {"timeout": 1}
    assert report["server_cpu_pct"] == 100.0 and report["server_rss_mb"] == 120.0
    assert report["pacing_jitter_ms"]["max"] == 3.0
    assert report["categories"]["open"] == {**report["categories"]["open"], "turns": 1, "incomplete": 1}
    assert [row["connected"] for row in report["timeline"]] == [2, 2, 0]
    assert report["timeline"][0]["first_audio_p50"] == 400.0
    assert "xiaozhi_stage_duration_seconds" in report["stage_histograms"]


def test_stats_delta_gives_hit_ratios_and_overhead() -> None:
    before = {
        "caches": {"tts": {"hits": 2, "misses": 8, "l1": {"hits": 2}, "l3": {"hits": 0}}},
        "cpu_s_by_role": {"event_loop": 1.0, "asr": 5.0, "tts": 2.0, "cache": 0.0},
    }
    after = {
        "caches": {"tts": {"hits": 12, "misses": 13, "l1": {"hits": 9}, "l3": {"hits": 3}}},
        "cpu_s_by_role": {"event_loop": 3.0, "asr": 20.0, "tts": 9.5, "cache": 0.5},
    }
    out = stats_delta(before, after)
    assert out["caches"]["tts"] == {"hits": 10, "misses": 5, "hit_ratio": 0.6667, "l1_hits": 7, "l3_hits": 3}
    assert out["server_cpu_by_role"] == {"event_loop": 2.0, "asr": 15.0, "tts": 7.5, "cache": 0.5}
    assert out["server_overhead_pct"] == 10.0  # (2.0 + 0.5) / 25.0
    assert stats_delta(None, None)["server_overhead_pct"] is None


def test_naive_asr_forces_full_window() -> None:
    cfg = naive_asr_config(AsrConfig())
    if "encoder_window" in AsrConfig.model_fields:
        assert cfg.encoder_window == "full"
