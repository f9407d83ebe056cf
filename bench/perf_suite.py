"""Every figure of docs/performance.md, measured in one run on this machine.

    .venv/bin/python -m bench.perf_suite --out perf-results [--quick]

Runs, one after the other (each load run spawns its own edge node with a cold cache, so no two
runs share a CPU or a cache):

1. ``asr_window``: Whisper's 30 s window vs the utterance window, time and WER per utterance;
2. ``eval``: ``xiaozhi-eval`` per engine (2 workers);
3. ``devices-N``: the default mix at 4 turns/min per device for N in the sweep, after a warm-up of
   the same load (steady state: first audio against devices, turns/s, CPU, cache hit ratios), and
   ``devices-30-cold``: 30 devices on a node that has just started (cold caches);
4. ``saturation``: more devices than the node can serve (after a warm-up), then the naive baseline
   in the same run;
5. ``saturation-nocache``: the same load with the caches off (what the caches are worth);
6. ``idle``: 1000 idle connections (memory per connection);
7. ``streams``: 150 devices streaming through the VAD while 10 devices talk (pacing jitter).

Every run's JSON lands in ``--out``; ``summary.md`` there holds the tables. ``--quick`` shortens
everything (a check that the suite works, not figures to quote).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _run(args: list[str], log: Path) -> None:
    print(f"$ {' '.join(args)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as f:
        proc = subprocess.run(args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=False)
    print(f"  rc {proc.returncode} in {time.monotonic() - started:.0f} s (log {log})", file=sys.stderr, flush=True)


def _loadgen(out: Path, name: str, extra: list[str]) -> dict[str, Any] | None:
    report = out / f"{name}.json"
    _run([PY, "-m", "bench.loadgen.cli", "--spawn", "--quiet", "--out", str(report), *extra], out / f"{name}.log")
    return json.loads(report.read_text()) if report.is_file() else None


def _f(x: Any, nd: int = 0) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _ratio(r: dict[str, Any], cache: str) -> str:
    c = (r.get("caches") or {}).get(cache) or {}
    return _f(c.get("hit_ratio"), 2)


def _route_row(r: dict[str, Any], route: str) -> tuple[str, str]:
    h = r["stage_histograms"].get("xiaozhi_turn_latency_seconds", {}).get(f"route={route}")
    return (_f(h["p50_ms"]), _f(h["p95_ms"])) if h else ("–", "–")


def _server_row(label: str, r: dict[str, Any]) -> str:
    return (
        f"| {label} | {_f(r['turns_per_s'], 2)} | {_f(r['answered_turns_per_s'], 2)} | {r['busy_turns']} "
        f"| {r['refused']} | {_f(r['server_cpu_pct'])} | {_f(r['server_overhead_pct'], 1)} |"
    )


def summary(results: dict[str, Any]) -> str:
    lines = [f"Measured {results['started']} on {results['host']}.", ""]
    sat = results.get("saturation")
    if sat:
        lines += [
            "| | turns/s | answered turns/s | busy turns | refused handshakes | CPU % | overhead % of thread CPU |",
            "|---|---|---|---|---|---|---|",
            f"| naive (sequential, one process) | {_f(sat.get('naive_turns_per_s'), 3)} | | | | | |",
            _server_row(f"server, {sat['devices']} devices", sat),
        ]
        nc = results.get("saturation-nocache")
        if nc:
            lines.append(_server_row(f"server, caches off, {nc['devices']} devices", nc))
        naive = sat.get("naive_turns_per_s")
        answered = _f((sat["answered_turns_per_s"] or 0) / naive, 2) if naive else "–"
        lines += ["", f"speedup over naive: **{_f(sat.get('speedup'), 2)}x** (answered turns only: {answered}x)", ""]
    sweep = [(k, v) for k, v in results.items() if k.startswith("devices-") and v]
    label = {k: (f"{v['devices']} (cold)" if k.endswith("-cold") else str(v["devices"])) for k, v in sweep}
    if sweep:
        lines += [
            "| devices | turns/s | first audio p50 / p95 ms | intent p50 / p95 | cache p50 / p95 | local LLM p50 / p95 "
            "| busy | CPU % | tts / answer cache hit ratio |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for k, r in sorted(sweep, key=lambda kv: (kv[1]["devices"], kv[0])):
            fa = r["first_audio_ms"]
            i50, i95 = _route_row(r, "intent")
            c50, c95 = _route_row(r, "cache")
            l50, l95 = _route_row(r, "local_llm")
            lines.append(
                f"| {label[k]} | {_f(r['turns_per_s'], 2)} | {_f(fa['p50'])} / {_f(fa['p95'])} | {i50} / {i95} "
                f"| {c50} / {c95} | {l50} / {l95} | {r['busy_turns']} | {_f(r['server_cpu_pct'])} "
                f"| {_ratio(r, 'tts')} / {_ratio(r, 'answer')} |"
            )
        lines.append("")
    idle = results.get("idle")
    if idle and idle.get("background"):
        b = idle["background"]
        lines.append(
            f"idle: {b['idle_connected']}/{b['idle_devices']} connections in {b.get('idle_connect_s')} s, node RSS "
            f"{b.get('idle_rss_before_mb')} -> {b.get('idle_rss_after_mb')} MB: "
            f"**{b.get('idle_rss_per_connection_kb')} KB per connection**"
        )
    streams = results.get("streams")
    if streams and streams.get("background"):
        b = streams["background"]
        vad = streams["stage_histograms"].get("xiaozhi_stage_duration_seconds", {}).get("stage=vad_tick", {})
        cpu = streams.get("server_cpu_by_role") or {}
        lines.append(
            f"streams: {b['streaming_devices']} streaming + {streams['devices']} talking, "
            f"{b['uplink_packets_sent']} uplink packets; pacing jitter p50/p95/p99 "
            f"{streams['pacing_jitter_ms']['p50']}/{streams['pacing_jitter_ms']['p95']}/"
            f"**{streams['pacing_jitter_ms']['p99']} ms**; VAD tick mean {vad.get('mean_ms')} ms, VAD thread "
            f"{cpu.get('vad')} CPU-s, event loop {cpu.get('event_loop')} CPU-s over {streams['duration_s']} s"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench.perf_suite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="perf-results", help="directory for the JSON reports and summary.md")
    p.add_argument("--quick", action="store_true", help="short runs: checks the suite, not figures to quote")
    p.add_argument("--sweep", default="10,20,30,45,60", help="device counts for the first-audio sweep")
    p.add_argument("--saturation-devices", type=int, default=90)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    q = args.quick
    dur = "20" if q else "90"
    sat_dur = "30" if q else "150"
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }
    _run(
        [
            PY,
            "-m",
            "bench.asr_window",
            "--threads",
            "1",
            "--repeats",
            "1" if q else "3",
            "--json",
            str(out / "asr_window.json"),
        ],
        out / "asr_window.log",
    )
    _run(
        [
            PY,
            "-m",
            "bench.evaluator",
            "--components",
            "vad,asr,llm,tts",
            "--workers",
            "2",
            "--requests",
            "10" if q else "40",
            "--out",
            str(out / "eval.json"),
        ],
        out / "eval.log",
    )
    warm = ["--warmup", "20" if q else "60"]
    for n in [int(x) for x in args.sweep.split(",") if x]:
        results[f"devices-{n}"] = _loadgen(
            out, f"devices-{n}", ["--devices", str(n), "--duration", dur, "--ramp", "15", "--rate", "4/min", *warm]
        )
    results["devices-30-cold"] = _loadgen(
        out, "devices-30-cold", ["--devices", "30", "--duration", dur, "--ramp", "15", "--rate", "4/min"]
    )
    sat = ["--devices", str(args.saturation_devices), "--duration", sat_dur, "--ramp", "30", "--rate", "4/min", *warm]
    results["saturation"] = _loadgen(out, "saturation", [*sat, "--naive", "--naive-duration", "30" if q else "90"])
    results["saturation-nocache"] = _loadgen(
        out, "saturation-nocache", [*sat, "--edge-env", "XIAOZHI__CACHE__ENABLED=false"]
    )
    results["idle"] = _loadgen(out, "idle", ["--devices", "0", "--idle-devices", "1000", "--duration", "5"])
    results["streams"] = _loadgen(
        out, "streams", ["--devices", "10", "--streaming-devices", "150", "--duration", "30" if q else "60"]
    )
    text = summary(results)
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
