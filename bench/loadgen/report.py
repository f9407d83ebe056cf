"""Aggregation of a load run into report.json.

Top-level fields (times in ms unless the name says otherwise):

* ``devices``, ``duration_s``, ``ramp_s``, ``rate_per_min``, ``url``, ``mix``, ``started_at``;
* ``turns`` (completed: ended with ``tts/stop``), ``turns_started``, ``turns_in_window`` (completed
  within ``duration_s``), ``turns_per_s`` (= turns_in_window / duration_s), ``busy_turns`` (completed
  with the node's spoken "busy" answer: shed load) and ``answered_turns_per_s`` (turns_per_s without
  them);
* ``errors`` (= protocol_errors + incomplete_turns + reconnects + connect_errors), ``protocol_errors``
  (firmware violation counters: audio outside tts start/stop, queue overflow, undecodable packets,
  bad framing, invalid JSON, MCP violations), ``incomplete_turns`` (started but no ``tts/stop``:
  timeout or connection lost), ``reconnects``, ``leaves`` (sessions devices ended themselves,
  ``--session-turns``: not errors), ``connect_errors``, ``refused`` (HTTP 503 at the
  handshake: admission control working as designed, not an error), ``error_notes`` (a sample);
* ``first_audio_ms``, ``stt_ms``, ``tts_stop_ms``, ``turn_total_ms`` (listen/start to tts/stop,
  speech included), ``max_queue_depth``: ``{n, mean, p50, p95, p99, max}``; first_audio_ms and
  stt_ms are from the end of the speech (the last speech packet sent);
* ``pacing_jitter_ms`` ``{n, p50, p95, p99, max}`` and ``playback_stalls`` ``{count, turns_with_stalls,
  stall_ms: {n, p50, p95, p99, max}}``: see :mod:`bench.loadgen.pacing`;
* ``server_cpu_pct`` (mean over the run; 100 = one core, process and children), ``server_rss_mb``
  (max), ``server_resources`` (details), null when no server process was known;
* ``categories``: per mix category the turn count and first_audio/stt/turn_total percentiles;
* ``stage_histograms``: the server's ``xiaozhi_stage_duration_seconds``, ``xiaozhi_queue_wait_seconds``
  and ``xiaozhi_turn_latency_seconds`` histograms, run delta (after - before) per label:
  ``{count, sum_s, mean_ms, p50_ms, p95_ms, buckets: {le: cumulative count}}`` (quantiles
  interpolated within buckets, as Prometheus' histogram_quantile does);
* ``timeline``: per ``bucket_s`` bucket, ``{t, connected, turns, first_audio_p50, first_audio_p95}``;
* ``caches``: from the node's ``GET /stats``, run delta per cache (tts, answer): ``{hits, misses,
  hit_ratio, l1_hits, l3_hits}``; ``routes``: turns per route (from the first-audio histogram);
* ``server_cpu_by_role`` (CPU seconds per thread role over the run, see ``edge_node.cpu_roles``) and
  ``server_overhead_pct``: the share of the node's thread CPU spent outside model inference and
  audio coding (event loop, cache I/O, other Python threads);
* with ``--naive``: ``naive`` (the baseline's own report), ``naive_turns_per_s`` and ``speedup``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench.loadgen.device import LoadState, TurnRecord

__all__ = [
    "HISTOGRAMS",
    "REQUIRED_FIELDS",
    "build_report",
    "histogram_delta",
    "histogram_quantile",
    "parse_histograms",
    "percentiles",
    "timeline",
]

HISTOGRAMS = (
    "xiaozhi_stage_duration_seconds",
    "xiaozhi_queue_wait_seconds",
    "xiaozhi_turn_latency_seconds",
)
REQUIRED_FIELDS = (
    "devices",
    "duration_s",
    "ramp_s",
    "rate_per_min",
    "turns",
    "turns_per_s",
    "errors",
    "protocol_errors",
    "incomplete_turns",
    "first_audio_ms",
    "stt_ms",
    "turn_total_ms",
    "pacing_jitter_ms",
    "server_cpu_pct",
    "server_rss_mb",
    "categories",
    "stage_histograms",
    "timeline",
)


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def percentiles(values: Iterable[float | None], extra: bool = True) -> dict[str, float | int | None]:
    """``{n, mean, p50, p95, p99, max}`` of the non-None values (None entries when there are none)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    out: dict[str, float | int | None] = {"n": int(arr.size)}
    keys = ("mean", "p50", "p95", "p99", "max") if extra else ("p50", "p95", "p99")
    if arr.size == 0:
        out.update(dict.fromkeys(keys))
        return out
    stats = {
        "mean": arr.mean(),
        "p50": np.percentile(arr, 50),
        "p95": np.percentile(arr, 95),
        "p99": np.percentile(arr, 99),
        "max": arr.max(),
    }
    out.update({k: _round(stats[k]) for k in keys})
    return out


# ----------------------------------------------------------------------------- Prometheus histograms
Hist = dict[str, Any]  # {"buckets": {le(float): cumulative count}, "sum": float, "count": float}


def _label_key(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "le") or "_"


def parse_histograms(text: str, names: Sequence[str] = HISTOGRAMS) -> dict[str, dict[str, Hist]]:
    """The named histograms from Prometheus text exposition: ``{name: {"stage=asr": hist}}``."""
    out: dict[str, dict[str, Hist]] = {}
    wanted = set(names)
    for family in text_string_to_metric_families(text):
        if family.name not in wanted or family.type != "histogram":
            continue
        series = out.setdefault(family.name, {})
        for sample in family.samples:
            key = _label_key(sample.labels)
            hist = series.setdefault(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
            if sample.name.endswith("_bucket"):
                hist["buckets"][float(sample.labels["le"])] = float(sample.value)
            elif sample.name.endswith("_sum"):
                hist["sum"] = float(sample.value)
            elif sample.name.endswith("_count"):
                hist["count"] = float(sample.value)
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus-style quantile from cumulative buckets (linear within the bucket); None if empty."""
    items = sorted(buckets.items())
    if not items or items[-1][1] <= 0:
        return None
    total = items[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in items:
        if count >= rank:
            if math.isinf(le):
                return prev_le  # beyond the largest finite bucket: its upper bound, like Prometheus
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def histogram_delta(
    before: dict[str, dict[str, Hist]], after: dict[str, dict[str, Hist]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """after - before per series, summarised; series with no new observations are left out."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, series in after.items():
        for key, hist in series.items():
            prev = before.get(name, {}).get(key, {"buckets": {}, "sum": 0.0, "count": 0.0})
            count = hist["count"] - prev["count"]
            if count <= 0:
                continue
            total = hist["sum"] - prev["sum"]
            buckets = {le: c - prev["buckets"].get(le, 0.0) for le, c in hist["buckets"].items()}
            p50, p95 = histogram_quantile(0.5, buckets), histogram_quantile(0.95, buckets)
            out.setdefault(name, {})[key] = {
                "count": int(count),
                "sum_s": round(total, 4),
                "mean_ms": _round(total / count * 1000),
                "p50_ms": _round(None if p50 is None else p50 * 1000),
                "p95_ms": _round(None if p95 is None else p95 * 1000),
                "buckets": {("+Inf" if math.isinf(le) else f"{le:g}"): int(c) for le, c in sorted(buckets.items())},
            }
    return out


# ----------------------------------------------------------------------------- the node's /stats
OVERHEAD_ROLES = ("event_loop", "cache", "other")


def stats_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Cache hit ratios and CPU by thread role over the run, from two ``GET /stats`` answers."""
    if not after:
        return {"caches": None, "server_cpu_by_role": None, "server_overhead_pct": None}
    before = before or {}
    caches: dict[str, Any] = {}
    for name, now in (after.get("caches") or {}).items():
        prev = (before.get("caches") or {}).get(name) or {}

        def diff(level: str | None, key: str, now: dict[str, Any] = now, prev: dict[str, Any] = prev) -> int:
            a = now.get(level, {}) if level else now
            b = prev.get(level, {}) if level else prev
            return int(a.get(key, 0)) - int(b.get(key, 0))

        hits, misses = diff(None, "hits"), diff(None, "misses")
        caches[name] = {
            "hits": hits,
            "misses": misses,
            "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
            "l1_hits": diff("l1", "hits"),
            "l3_hits": diff("l3", "hits"),
        }
    cpu_now, cpu_prev = after.get("cpu_s_by_role") or {}, before.get("cpu_s_by_role") or {}
    cpu = {role: round(float(v) - float(cpu_prev.get(role, 0.0)), 2) for role, v in cpu_now.items()}
    total = sum(cpu.values())
    overhead = sum(cpu.get(role, 0.0) for role in OVERHEAD_ROLES)
    return {
        "caches": caches,
        "server_cpu_by_role": cpu or None,
        "server_overhead_pct": round(100 * overhead / total, 2) if total > 0 else None,
    }


def routes_from_histograms(hists: dict[str, dict[str, dict[str, Any]]]) -> dict[str, int]:
    """Turns per route that reached first audio during the run (the first-audio histogram's counts)."""
    series = hists.get("xiaozhi_turn_latency_seconds", {})
    return {key.split("=", 1)[-1]: int(v["count"]) for key, v in sorted(series.items())}


# ----------------------------------------------------------------------------- aggregation
def timeline(state: LoadState, end_s: float, bucket_s: float = 5.0) -> list[dict[str, Any]]:
    """Per bucket: connected devices (max sampled), completed turns and first-audio p50/p95."""
    n = max(1, math.ceil(end_s / bucket_s))
    connected = [0] * n
    for t, c in state.connected_samples:
        i = min(n - 1, max(0, int(t // bucket_s)))
        connected[i] = max(connected[i], c)
    per: dict[int, list[float]] = defaultdict(list)
    turns = [0] * n
    for r in state.records:
        if r.error:
            continue
        i = min(n - 1, max(0, int(r.t // bucket_s)))
        turns[i] += 1
        if r.first_audio_ms is not None:
            per[i].append(r.first_audio_ms)
    rows = []
    for i in range(n):
        vals = np.asarray(per.get(i, []), dtype=float)
        rows.append(
            {
                "t": round(i * bucket_s, 1),
                "connected": connected[i],
                "turns": turns[i],
                "first_audio_p50": _round(np.percentile(vals, 50)) if vals.size else None,
                "first_audio_p95": _round(np.percentile(vals, 95)) if vals.size else None,
            }
        )
    return rows


def _server_figures(samples: Sequence[tuple[float, float, float]], t_from: float, t_to: float) -> dict[str, Any]:
    window = [s for s in samples if t_from <= s[0] <= t_to] or list(samples)
    if not window:
        return {"server_cpu_pct": None, "server_rss_mb": None, "server_resources": None}
    cpu = np.asarray([s[1] for s in window])
    rss = np.asarray([s[2] for s in window])
    return {
        "server_cpu_pct": _round(cpu.mean()),
        "server_rss_mb": _round(rss.max()),
        "server_resources": {
            "samples": len(window),
            "cpu_pct": {"mean": _round(cpu.mean()), "p95": _round(np.percentile(cpu, 95)), "max": _round(cpu.max())},
            "rss_mb": {"mean": _round(rss.mean()), "max": _round(rss.max())},
        },
    }


def build_report(
    *,
    state: LoadState,
    devices: int,
    duration_s: float,
    ramp_s: float,
    rate_per_min: float,
    url: str,
    mix_source: str,
    elapsed_s: float,
    resource_samples: Sequence[tuple[float, float, float]] = (),
    resource_window: tuple[float, float] = (0.0, math.inf),
    hist_before: dict[str, dict[str, Hist]] | None = None,
    hist_after: dict[str, dict[str, Hist]] | None = None,
    stats_before: dict[str, Any] | None = None,
    stats_after: dict[str, Any] | None = None,
    server_pid: int | None = None,
    notes: Sequence[str] = (),
    bucket_s: float = 5.0,
) -> dict[str, Any]:
    records: list[TurnRecord] = state.records
    done = [r for r in records if not r.error]
    incomplete = [r for r in records if r.error]
    in_window = [r for r in done if r.t <= duration_s]
    jitter = [j for r in done for j in r.jitter_ms]
    errors = state.protocol_errors + len(incomplete) + state.reconnects + state.connect_errors

    categories: dict[str, Any] = {}
    for name in dict.fromkeys(r.category for r in records):
        rs = [r for r in records if r.category == name]
        ok = [r for r in rs if not r.error]
        categories[name] = {
            "turns": len(ok),
            "incomplete": len(rs) - len(ok),
            "distinct_phrases": len({r.phrase for r in rs}),
            "first_audio_ms": percentiles((r.first_audio_ms for r in ok), extra=False),
            "stt_ms": percentiles((r.stt_ms for r in ok), extra=False),
            "turn_total_ms": percentiles((r.turn_total_ms for r in ok), extra=False),
        }

    report: dict[str, Any] = {
        "devices": devices,
        "duration_s": duration_s,
        "ramp_s": ramp_s,
        "rate_per_min": rate_per_min,
        "url": url,
        "mix": mix_source,
        "elapsed_s": round(elapsed_s, 2),
        "turns": len(done),
        "turns_started": len(records),
        "turns_in_window": len(in_window),
        "turns_per_s": round(len(in_window) / duration_s, 4) if duration_s > 0 else None,
        "busy_turns": sum(1 for r in done if r.busy),
        "answered_turns_per_s": (
            round(sum(1 for r in in_window if not r.busy) / duration_s, 4) if duration_s > 0 else None
        ),
        "errors": errors,
        "protocol_errors": state.protocol_errors,
        "incomplete_turns": len(incomplete),
        "incomplete_reasons": dict(sorted(_count(r.error.split(":")[0] for r in incomplete).items())),
        "reconnects": state.reconnects,
        "leaves": state.leaves,
        "connect_errors": state.connect_errors,
        "refused": state.refused,
        "connects": state.connects,
        "turns_without_audio": sum(1 for r in done if r.packets == 0),
        "first_audio_ms": percentiles(r.first_audio_ms for r in done),
        "stt_ms": percentiles(r.stt_ms for r in done),
        "tts_stop_ms": percentiles(r.tts_stop_ms for r in done),
        "turn_total_ms": percentiles(r.turn_total_ms for r in done),
        "max_queue_depth": percentiles(r.max_queue_depth for r in done),
        "pacing_jitter_ms": {k: v for k, v in percentiles(jitter).items() if k != "mean"},
        "playback_stalls": {
            "count": sum(r.stalls for r in done),
            "turns_with_stalls": sum(1 for r in done if r.stalls),
            "stall_ms": {k: v for k, v in percentiles(s for r in done for s in r.stall_ms).items() if k != "mean"},
        },
        "server_pid": server_pid,
    }
    report.update(_server_figures(resource_samples, *resource_window))
    report["categories"] = categories
    report["stage_histograms"] = histogram_delta(hist_before or {}, hist_after or {}) if hist_after else {}
    report["routes"] = routes_from_histograms(report["stage_histograms"])
    report.update(stats_delta(stats_before, stats_after))
    report["timeline_bucket_s"] = bucket_s
    report["timeline"] = timeline(state, max(elapsed_s, duration_s), bucket_s)
    report["error_notes"] = list(dict.fromkeys([*state.violation_notes, *notes]))[:20]
    return report


def _count(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for item in items:
        out[item] += 1
    return dict(out)
