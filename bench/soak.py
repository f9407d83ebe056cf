"""Soak run: an edge node under steady load with devices coming and going, watched for leaks.

    python -m bench.soak --minutes 60 --devices 23 --out docs/perf/soak-2026-11-25    # the hour
    python -m bench.soak --minutes 5 --out /tmp/soak                                  # the benchmark

It starts an edge node with the bundled models, runs ``xiaozhi-loadgen`` against it in its own
process (``--session-turns``: a device leaves after a few turns on average and reconnects a few
seconds later, so sessions, their tasks and their sockets are created and destroyed all run
long), and samples the edge every ``--every`` seconds: resident memory and open file descriptors
(prometheus_client's process collector), tasks on the event loop (``xiaozhi_event_loop_tasks``),
threads, sessions. The default load, 23 devices at 4 turns/min, is 70 % of the 33.4 devices the
2-core test machine holds (docs/scaling.md).

"Flat" is judged between the first and the last fifth of the run after the warm-up (caches and
allocator pools fill during the first minutes, which is not a leak): median RSS may grow by at
most 5 % + 20 MB, file descriptors not held by sessions by at most 5, tasks by at most 20 % + 10,
threads by at most 2, and the devices' p95 first audio by at most 30 % + 200 ms. Exit status 0
when flat, 1 when something grew, 2 when the run itself failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.loadgen.server import ROOT, spawn_edge, stop_edge
from shared.metrics import sample_sum

__all__ = ["Sample", "analyse", "main"]


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_mb: float
    fds: float
    tasks: float
    threads: int
    sessions: float
    turns: float
    anon_mb: float = -1.0  # RssAnon: the heap part of rss_mb (the rest is mostly mapped model files)
    cache_mb: float = 0.0  # what the memory caches (L1) hold: bounded by cache.l1_max_mb, part of rss_mb


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of value over time, per hour."""
    if len(points) < 2:
        return 0.0
    mt = statistics.fmean(t for t, _ in points)
    mv = statistics.fmean(v for _, v in points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in points) / den * 3600.0


def analyse(samples: list[Sample], records: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """First fifth vs last fifth of the run after the warm-up; see the module doc for the limits."""
    steady = [s for s in samples if s.t >= warmup_s]
    if len(steady) < 5:
        return {"flat": False, "why": [f"only {len(steady)} samples after the warm-up: run longer"]}
    k = max(1, len(steady) // 5)
    first, last = steady[:k], steady[-k:]
    span = (first[0].t, first[-1].t), (last[0].t, last[-1].t)

    def block(rows: list[Sample], field: str) -> float:
        return _median([float(getattr(s, field)) for s in rows])

    def latency(lo: float, hi: float) -> float | None:
        return _pct([r["first_audio_ms"] for r in records if lo <= r["t"] <= hi + 30 and r.get("first_audio_ms")], 0.95)

    out: dict[str, Any] = {
        "samples": len(samples),
        "warmup_s": warmup_s,
        "first_block_s": span[0],
        "last_block_s": span[1],
        "why": [],
    }
    rss0, rss1 = block(first, "rss_mb"), block(last, "rss_mb")
    out["rss_mb"] = {
        "first": round(rss0, 1),
        "last": round(rss1, 1),
        "max": max(s.rss_mb for s in steady),
        "slope_mb_per_h": round(_slope_per_hour([(s.t, s.rss_mb) for s in steady]), 1),
        "anon_first": block(first, "anon_mb"),
        "anon_last": block(last, "anon_mb"),
        "cache_first": block(first, "cache_mb"),
        "cache_last": block(last, "cache_mb"),
    }
    if rss1 > rss0 * 1.05 + 20:
        out["why"].append(f"RSS grew {rss0:.0f} -> {rss1:.0f} MB")
    free0 = _median([s.fds - s.sessions for s in first])
    free1 = _median([s.fds - s.sessions for s in last])
    out["fds"] = {
        "first": block(first, "fds"),
        "last": block(last, "fds"),
        "not_sessions_first": free0,
        "not_sessions_last": free1,
    }
    if free1 > free0 + 5:
        out["why"].append(f"file descriptors not held by sessions grew {free0:.0f} -> {free1:.0f}")
    t0, t1 = block(first, "tasks"), block(last, "tasks")
    out["tasks"] = {"first": t0, "last": t1, "max": max(s.tasks for s in steady)}
    if t1 > t0 * 1.2 + 10:
        out["why"].append(f"event-loop tasks grew {t0:.0f} -> {t1:.0f}")
    th0, th1 = block(first, "threads"), block(last, "threads")
    out["threads"] = {"first": th0, "last": th1}
    if th1 > th0 + 2:
        out["why"].append(f"threads grew {th0:.0f} -> {th1:.0f}")
    out["sessions"] = {"first": block(first, "sessions"), "last": block(last, "sessions")}
    p0, p1 = latency(*span[0]), latency(*span[1])
    out["first_audio_p95_ms"] = {"first": round(p0, 1) if p0 else None, "last": round(p1, 1) if p1 else None}
    if p0 is not None and p1 is not None and p1 > p0 * 1.3 + 200:
        out["why"].append(f"p95 first audio grew {p0:.0f} -> {p1:.0f} ms")
    out["flat"] = not out["why"]
    return out


def _sample(http: str, pid: int, t: float) -> Sample:
    text = httpx.get(f"{http}/metrics", timeout=10).text
    try:
        threads = psutil.Process(pid).num_threads()
    except psutil.Error:
        threads = -1
    anon_mb = -1.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                anon_mb = round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass  # not Linux: RSS alone
    return Sample(
        t=round(t, 1),
        rss_mb=round(sample_sum(text, "process_resident_memory_bytes") / 2**20, 1),
        fds=sample_sum(text, "process_open_fds"),
        tasks=sample_sum(text, "xiaozhi_event_loop_tasks"),
        threads=threads,
        sessions=sample_sum(text, "xiaozhi_sessions_active"),
        turns=sample_sum(text, "xiaozhi_turns_total"),
        anon_mb=anon_mb,
        cache_mb=round(sample_sum(text, "xiaozhi_cache_bytes", level="l1") / 2**20, 1),
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--devices", type=int, default=23, help="default: 70 %% of the 2-core edge's 33.4 devices")
    p.add_argument("--rate", default="4/min")
    p.add_argument("--session-turns", type=float, default=5.0, help="turns per session on average (churn)")
    p.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, help="seconds not judged (default: 2 min, or a fifth of a short run)")
    p.add_argument(
        "--edge-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the edge, e.g. XIAOZHI__TTS__RELEASE_ARENA=false (repeatable)",
    )
    p.add_argument("--out", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    duration = args.minutes * 60.0
    warmup = args.warmup if args.warmup is not None else min(120.0, duration / 5)
    args.out.mkdir(parents=True, exist_ok=True)
    env = {"XIAOZHI__SERVER__IDLE_TIMEOUT_S": "600"}
    for item in args.edge_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"soak: --edge-env wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        env[key] = value
    edge = spawn_edge("soak-edge", env, log_dir=args.out)
    samples: list[Sample] = []
    loadgen_rc = -1
    try:
        cmd = [
            sys.executable,
            "-m",
            "bench.loadgen.cli",
            "--url",
            edge.url,
            "--http",
            edge.http,
            "--devices",
            str(args.devices),
            "--duration",
            str(duration),
            "--rate",
            args.rate,
            "--ramp",
            "20",
            "--session-turns",
            str(args.session_turns),
            "--out",
            str(args.out / "loadgen.json"),
            "--records",
            str(args.out / "records.jsonl"),
            "--quiet",
        ]
        started = time.monotonic()
        with (args.out / "loadgen.log").open("w") as log:
            load = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            while load.poll() is None:
                try:
                    samples.append(_sample(edge.http, edge.pid, time.monotonic() - started))
                except httpx.HTTPError as exc:
                    print(f"soak: cannot sample the edge: {exc}", file=sys.stderr)
                try:
                    load.wait(args.every)
                except subprocess.TimeoutExpired:
                    pass
            loadgen_rc = load.returncode
    finally:
        stop_edge(edge)
    if loadgen_rc != 0 or not (args.out / "records.jsonl").exists():
        print(f"soak: the load generator failed (exit {loadgen_rc}); see {args.out / 'loadgen.log'}", file=sys.stderr)
        return 2
    records = [json.loads(line) for line in (args.out / "records.jsonl").read_text().splitlines() if line.strip()]
    loadgen = json.loads((args.out / "loadgen.json").read_text())
    verdict = analyse(samples, records, warmup)
    report = {
        "minutes": args.minutes,
        "devices": args.devices,
        "rate": args.rate,
        "edge_env": env,
        "session_turns": args.session_turns,
        "verdict": verdict,
        "loadgen": {
            k: loadgen.get(k)
            for k in (
                "turns",
                "answered_turns_per_s",
                "busy_turns",
                "errors",
                "protocol_errors",
                "connects",
                "leaves",
                "reconnects",
                "first_audio_ms",
            )
        },
        "samples": [asdict(s) for s in samples],
    }
    (args.out / "soak.json").write_text(json.dumps(report, indent=1) + "\n")
    text = render(report)
    (args.out / "soak.txt").write_text(text + "\n")
    print(text)
    return 0 if verdict["flat"] else 1


def render(report: dict[str, Any]) -> str:
    v, lg = report["verdict"], report["loadgen"]
    if "rss_mb" not in v:
        return f"soak: not judged: {'; '.join(v['why'])}"
    fa = lg.get("first_audio_ms") or {}
    return "\n".join(
        [
            f"soak: {report['minutes']:g} min, {report['devices']} devices at {report['rate']}, "
            f"~{report['session_turns']:g} turns per session",
            f"load: {lg['turns']} turns ({lg['answered_turns_per_s']}/s answered), busy {lg['busy_turns']}, "
            f"errors {lg['errors']}, protocol errors {lg['protocol_errors']}; {lg['connects']} connects, "
            f"{lg['leaves']} leaves; first audio p50 {fa.get('p50')} ms, p95 {fa.get('p95')} ms",
            f"first fifth {v['first_block_s']} s vs last fifth {v['last_block_s']} s "
            f"(after {v['warmup_s']:g} s warm-up):",
            f"  RSS {v['rss_mb']['first']} -> {v['rss_mb']['last']} MB (max {v['rss_mb'].get('max')}, slope "
            f"{v['rss_mb']['slope_mb_per_h']} MB/h; anonymous {v['rss_mb'].get('anon_first')} -> "
            f"{v['rss_mb'].get('anon_last')} MB; memory caches {v['rss_mb'].get('cache_first')} -> "
            f"{v['rss_mb'].get('cache_last')} MB)",
            f"  fds {v['fds']['first']:g} -> {v['fds']['last']:g} (not held by sessions "
            f"{v['fds']['not_sessions_first']:g} -> {v['fds']['not_sessions_last']:g})",
            f"  loop tasks {v['tasks']['first']:g} -> {v['tasks']['last']:g} (max {v['tasks']['max']:g}); threads "
            f"{v['threads']['first']:g} -> {v['threads']['last']:g}; sessions {v['sessions']['first']:g} -> "
            f"{v['sessions']['last']:g}",
            f"  p95 first audio {v['first_audio_p95_ms']['first']} -> {v['first_audio_p95_ms']['last']} ms",
            f"result: {'FLAT' if v['flat'] else 'GREW: ' + '; '.join(v['why'])}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
