"""Every figure of docs/performance.md, measured in one run on this machine.

    .venv/bin/python -m bench.perf_suite --out perf-results [--quick] [--only semantic,lockstep,cores]

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
7. ``streams``: 150 devices streaming through the VAD while 10 devices talk (pacing jitter, the
   event loop's share of a core);
8. ``semantic``: the semantic cache on its paraphrase and near-miss banks (hit rate, false hits);
9. ``saturation-paraphrase`` and ``saturation-paraphrase-nosemantic``: saturation on the mix whose
   everyday questions come in many wordings, with the semantic cache on and off;
10. ``lockstep``: N devices ending a different open question at the same instant (2-16);
11. ``cores-1`` and ``cores-2``: the same load (open questions, caches off) with the node pinned
    to one core and to two (the load generator pinned to the second core in both runs, so it takes
    from the 2-core node only: the ratio is a lower bound; the summary also gives it per CPU-second
    the node really got).

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
STEPS = ("asr_window", "eval", "sweep", "saturation", "idle", "streams", "semantic", "lockstep", "cores")
PY = sys.executable


def _run(args: list[str], log: Path) -> None:
    print(f"$ {' '.join(args)}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as f:
        proc = subprocess.run(args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=False)
    print(f"  rc {proc.returncode} in {time.monotonic() - started:.0f} s (log {log})", file=sys.stderr, flush=True)


def _bench(out: Path, name: str, args: list[str], module: str = "") -> None:
    """``python -m bench.<name>`` (or ``module``), its output in ``<name>.log``."""
    _run([PY, "-m", module or f"bench.{name}", *args], out / f"{name}.log")


def _loadgen(out: Path, name: str, extra: list[str]) -> dict[str, Any] | None:
    report = out / f"{name}.json"
    _run([PY, "-m", "bench.loadgen.cli", "--spawn", "--quiet", "--out", str(report), *extra], out / f"{name}.log")
    return json.loads(report.read_text()) if report.is_file() else None


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


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
        loop = cpu.get("event_loop")
        if loop is not None and streams.get("duration_s"):
            lines.append(f"event loop: **{100 * loop / streams['duration_s']:.1f} % of a core** at that load")
    lines += _semantic_lines(results)
    return "\n".join(lines) + "\n"


def _server_table(first: str, rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [
        "",
        f"| {first} | turns/s | answered turns/s | busy turns | refused handshakes | CPU % "
        "| overhead % of thread CPU |",
        "|---|---|---|---|---|---|---|",
        *(_server_row(label, r) for label, r in rows),
    ]


def serial_fraction(ratio: float) -> float:
    """Amdahl's serial fraction from the 2-core / 1-core throughput ratio: ratio = 2 / (1 + s)."""
    return max(0.0, 2.0 / ratio - 1.0)


def _semantic_lines(results: dict[str, Any]) -> list[str]:
    """The issue-19 figures: semantic cache banks and throughput, lockstep bursts, cores."""
    lines: list[str] = []
    sem = results.get("semantic")
    if sem:
        lines += ["", "| semantic cache bank | paraphrases hit | false hits / near misses | embedding median ms |"]
        lines.append("|---|---|---|---|")
        for name, r in sem.items():
            t = r["at_threshold"]
            rate = 100 * t["paraphrase_hits"] / t["paraphrases"]
            lines.append(
                f"| {name} | {t['paraphrase_hits']}/{t['paraphrases']} ({rate:.1f} %) "
                f"| {len(t['false_hits'])} / {r['near_misses']} | {r['embed_ms_median']} |"
            )
    on, off = results.get("saturation-paraphrase"), results.get("saturation-paraphrase-nosemantic")
    if on and off:
        lines += _server_table(
            "paraphrase mix at saturation",
            [
                (f"semantic cache on, {on['devices']} devices", on),
                (f"semantic cache off, {off['devices']} devices", off),
            ],
        )
        if off["answered_turns_per_s"]:
            ratio = on["answered_turns_per_s"] / off["answered_turns_per_s"]
            lines.append(f"\nanswered turns/s, semantic cache on / off: **{ratio:.2f}x**")
    lock = results.get("lockstep")
    if lock:
        lines += ["", "| lockstep devices | turns | busy | first audio p50 / p90 ms | fillers |"]
        lines.append("|---|---|---|---|---|")
        for r in lock:
            lines.append(
                f"| {r['devices']} | {r['turns']} | {r['busy']} "
                f"| {r['first_audio_p50_ms']} / {r['first_audio_p90_ms']} | {r['fillers']} |"
            )
    one, two = results.get("cores-1"), results.get("cores-2")
    if one and two:
        lines += _server_table("node pinned to", [("1 core", one), ("2 cores", two)])
        if one["answered_turns_per_s"]:
            ratio = two["answered_turns_per_s"] / one["answered_turns_per_s"]
            lines.append(
                f"\n2-core / 1-core answered turns/s: **{ratio:.2f}x** (Amdahl serial fraction "
                f"{serial_fraction(ratio):.3f})"
            )
            if one.get("server_cpu_pct") and two.get("server_cpu_pct"):
                per_cpu = ratio * one["server_cpu_pct"] / two["server_cpu_pct"]
                lines.append(
                    f"per CPU-second the node got ({_f(one['server_cpu_pct'])} % / {_f(two['server_cpu_pct'])} %): "
                    f"{per_cpu:.2f} of 1-core's; scaled to 2 full cores: {2 * per_cpu:.2f}x"
                )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench.perf_suite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="perf-results", help="directory for the JSON reports and summary.md")
    p.add_argument("--quick", action="store_true", help="short runs: checks the suite, not figures to quote")
    p.add_argument("--sweep", default="10,20,30,45,60", help="device counts for the first-audio sweep")
    p.add_argument("--saturation-devices", type=int, default=90)
    p.add_argument("--only", default="", help=f"comma-separated steps to run (default all: {', '.join(STEPS)})")
    p.add_argument("--cores-devices", type=int, default=24, help="devices for the 1-core / 2-core runs (saturate both)")
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
    only = {x.strip() for x in args.only.split(",") if x.strip()} or set(STEPS)
    unknown = only - set(STEPS)
    if unknown:
        p.error(f"--only: unknown steps {sorted(unknown)} (known: {', '.join(STEPS)})")
    warm = ["--warmup", "20" if q else "60"]
    sat = ["--devices", str(args.saturation_devices), "--duration", sat_dur, "--ramp", "30", "--rate", "4/min", *warm]
    if "asr_window" in only:
        repeats = "1" if q else "3"
        _bench(out, "asr_window", ["--threads", "1", "--repeats", repeats, "--json", str(out / "asr_window.json")])
    if "eval" in only:
        components = ["--components", "vad,asr,llm,tts", "--workers", "2", "--requests", "10" if q else "40"]
        _bench(out, "eval", [*components, "--out", str(out / "eval.json")], module="bench.evaluator")
    if "sweep" in only:
        for n in [int(x) for x in args.sweep.split(",") if x]:
            results[f"devices-{n}"] = _loadgen(
                out, f"devices-{n}", ["--devices", str(n), "--duration", dur, "--ramp", "15", "--rate", "4/min", *warm]
            )
        results["devices-30-cold"] = _loadgen(
            out, "devices-30-cold", ["--devices", "30", "--duration", dur, "--ramp", "15", "--rate", "4/min"]
        )
    if "saturation" in only:
        results["saturation"] = _loadgen(out, "saturation", [*sat, "--naive", "--naive-duration", "30" if q else "90"])
        results["saturation-nocache"] = _loadgen(
            out, "saturation-nocache", [*sat, "--edge-env", "XIAOZHI__CACHE__ENABLED=false"]
        )
    if "idle" in only:
        results["idle"] = _loadgen(out, "idle", ["--devices", "0", "--idle-devices", "1000", "--duration", "5"])
    if "streams" in only:
        results["streams"] = _loadgen(
            out, "streams", ["--devices", "10", "--streaming-devices", "150", "--duration", "30" if q else "60"]
        )
    if "semantic" in only:
        _bench(out, "semantic", ["--semantic", "--out", str(out / "semantic.json")], module="bench.evaluator")
        results["semantic"] = _json(out / "semantic.json")
        para = [*sat, "--mix", str(ROOT / "bench" / "loadgen" / "mix.paraphrase.yaml")]
        results["saturation-paraphrase"] = _loadgen(out, "saturation-paraphrase", para)
        results["saturation-paraphrase-nosemantic"] = _loadgen(
            out, "saturation-paraphrase-nosemantic", [*para, "--edge-env", "XIAOZHI__CACHE__SEMANTIC__ENABLED=false"]
        )
    if "lockstep" in only:
        burst = ["--devices", "2,4" if q else "2,4,8,12,16", "--rounds", "1" if q else "2"]
        _bench(out, "lockstep", [*burst, "--out", str(out / "lockstep.json")])
        results["lockstep"] = _json(out / "lockstep.json")
    if "cores" in only:
        # Open questions with the caches off: every answered turn is ASR + LLM + TTS, so the ratio is
        # the compute's, not the share of cheap turns that happened to be answered.
        cores = [
            *("--devices", str(args.cores_devices), "--duration", sat_dur, "--ramp", "30", "--rate", "4/min", *warm),
            *("--mix", str(ROOT / "bench" / "loadgen" / "mix.open.yaml")),
            *("--edge-env", "XIAOZHI__CACHE__ENABLED=false"),
        ]
        for n, cpus in ((1, "0"), (2, "0-1")):
            results[f"cores-{n}"] = _loadgen(out, f"cores-{n}", [*cores, "--edge-cpus", cpus, "--cpus", "1"])
    text = summary(results)
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
