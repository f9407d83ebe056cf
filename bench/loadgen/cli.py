"""``xiaozhi-loadgen``: simulated Xiaozhi devices against an edge node, with a naive baseline.

    xiaozhi-loadgen --url ws://127.0.0.1:8000/xiaozhi/v1/ --http http://127.0.0.1:8003 \\
        --devices 100 --duration 600 --rate 4/min --ramp 60 --out report.json --plot latency.png
    xiaozhi-loadgen --spawn --devices 20 --duration 60 --rate 4/min --out r.json --naive
    xiaozhi-loadgen --smoke --out smoke.json     # CI: 20 devices, 20 s, own edge node
    xiaozhi-loadgen --spawn --devices 0 --idle-devices 1000 --duration 10 --out idle.json
    xiaozhi-loadgen --spawn --devices 10 --streaming-devices 150 --duration 60 --out streams.json

With --warmup S the same load runs S seconds first, uncounted, so caches and queues are in their
steady state when the measured window starts (the spawned node always starts with a cold cache).

Every device behaves like firmware in auto mode (bench.loadgen.device); the utterances come from a
mix (bench.loadgen.mix; --mix FILE) synthesised once with Piper. Devices connect evenly over
--ramp seconds; no new turn starts after --duration (measured from the start, ramp included);
turns in flight then finish. --idle-devices connect first (hello only) and measure the node's
memory per connection; --streaming-devices stream quiet room noise through the node's VAD for the
whole run (bench.loadgen.background). --naive runs the baseline after the load phase (with a spawned edge
node stopped first so the baseline has the machine to itself). The report's fields are described
in bench.loadgen.report. Exit status: 0, or 1 in --smoke mode when a protocol error occurred, a
turn did not end with tts/stop or no turn completed; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.loadgen.background import Background, close_all, connect_idle, noise_packets, stream_noise
from bench.loadgen.bank import build_bank
from bench.loadgen.device import LoadState, run_device
from bench.loadgen.mix import MixError, load_mix
from bench.loadgen.report import HISTOGRAMS, build_report, parse_histograms
from bench.loadgen.server import ResourceSampler, parse_cpus, spawn_edge, stop_edge
from shared import cli

__all__ = ["main", "parse_rate"]

SMOKE_DEFAULTS = {"devices": 20, "duration": 20.0, "ramp": 5.0, "rate": "12/min"}
DEFAULTS = {"devices": 10, "duration": 60.0, "ramp": 0.0, "rate": "4/min"}

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|min|h))?\s*$")


def parse_rate(text: str) -> float:
    """Turns per minute per device from ``4/min``, ``0.1/s``, ``120/h`` or a bare number (per minute)."""
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"rate must look like 4/min, 0.1/s or 120/h, not {text!r}")
    value = float(m.group(1))
    per_min = value * {"s": 60.0, "sec": 60.0, "min": 1.0, "h": 1 / 60, None: 1.0}[m.group(2)]
    if per_min <= 0:
        raise ValueError("rate must be > 0")
    return per_min


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("xiaozhi-loadgen", __doc__)
    p.add_argument("--url", help="edge node WebSocket URL (ws://host:port/xiaozhi/v1/)")
    p.add_argument("--http", help="edge node HTTP base URL for /metrics (default: none, or the spawned node's)")
    p.add_argument("--devices", type=int, help=f"simulated devices (default {DEFAULTS['devices']})")
    p.add_argument("--duration", type=float, help=f"seconds of load, ramp included (default {DEFAULTS['duration']:g})")
    p.add_argument("--rate", help=f"turns per device, e.g. 4/min, 0.1/s (default {DEFAULTS['rate']})")
    p.add_argument("--mix", help="utterance mix YAML (default: the built-in mix)")
    p.add_argument("--ramp", type=float, help="seconds over which devices connect (default 0: all at once)")
    p.add_argument(
        "--warmup", type=float, default=0.0, help="seconds of the same load before the measured window (not counted)"
    )
    p.add_argument("--idle-devices", type=int, default=0, help="extra devices that connect and stay silent")
    p.add_argument(
        "--session-turns",
        type=float,
        default=0.0,
        help="devices leave after this many turns on average and reconnect 1-5 s later (default 0: stay)",
    )
    p.add_argument(
        "--streaming-devices", type=int, default=0, help="extra devices streaming non-speech audio for the whole run"
    )
    p.add_argument("--out", default="loadgen-report.json", metavar="FILE", help="where to write the JSON report")
    cli.hidden_alias(p, "--report", "out")
    p.add_argument("--plot", help="PNG of latency percentiles and connected devices over time")
    p.add_argument("--records", help="also write every turn as JSON lines here")
    p.add_argument("--spawn", action="store_true", help="start an edge node (bundled models) for the run")
    p.add_argument("--config", metavar="FILE", help="edge YAML config for the spawned edge node and the naive baseline")
    cli.hidden_alias(p, "--edge-config", "config")
    p.add_argument(
        "--edge-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the spawned edge node, e.g. XIAOZHI__ADMISSION__ENABLED=false",
    )
    p.add_argument(
        "--edge-cpus",
        metavar="CPUS",
        help="pin the spawned edge node to these CPUs (taskset -c syntax: 0, 0-1); it sizes its pools to them",
    )
    p.add_argument(
        "--cpus", metavar="CPUS", help="pin this load generator to these CPUs (keep it off a pinned node's cores)"
    )
    p.add_argument("--server-pid", type=int, help="sample CPU and RSS of this process (and its children)")
    p.add_argument("--naive", action="store_true", help="also run the naive sequential baseline after the load")
    p.add_argument("--naive-duration", type=float, default=60.0, help="seconds of naive baseline")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="CI smoke run: --spawn --devices 20 --duration 20 --ramp 5 --rate 12/min unless given",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a turn's tts/stop")
    cli.hidden_alias(p, "--turn-timeout", "timeout", type=float)
    p.add_argument("--seed", type=int, help="random seed (default: the mix's seed, else 1)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def _settings(args: argparse.Namespace) -> None:
    defaults = SMOKE_DEFAULTS if args.smoke else DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.smoke and not args.url:
        args.spawn = True


async def _fetch_server(http: str | None, notes: list[str]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(histograms from /metrics, the JSON of /stats) of the node; None for what cannot be read."""
    if not http:
        return None, None
    import httpx

    base = http.rstrip("/")
    hists: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    async with httpx.AsyncClient(timeout=10) as client:
        try:
            resp = await client.get(f"{base}/metrics")
            resp.raise_for_status()
            hists = parse_histograms(resp.text, HISTOGRAMS)
        except httpx.HTTPError as exc:
            notes.append(f"cannot read {base}/metrics: {exc}")
        try:
            resp = await client.get(f"{base}/stats")
            resp.raise_for_status()
            stats = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            notes.append(f"cannot read {base}/stats: {exc}")
    return hists, stats


async def _progress(state: LoadState, duration: float, quiet: bool) -> None:
    tty = sys.stderr.isatty()
    last_print = -1e9
    while True:
        now = state.now()
        state.connected_samples.append((now, state.connected))
        if not quiet and (tty or now - last_print >= 10):
            last_print = now
            done = [r for r in state.records if not r.error]
            recent = sorted(r.first_audio_ms for r in done[-50:] if r.first_audio_ms is not None)
            p95 = f"{recent[min(len(recent) - 1, math.ceil(0.95 * len(recent)) - 1)] / 1000:.2f}s" if recent else "-"
            errors = (
                state.protocol_errors
                + state.reconnects
                + state.connect_errors
                + sum(1 for r in state.records if r.error)
            )
            bar_n = 20
            filled = min(bar_n, int(bar_n * now / duration)) if duration > 0 else bar_n
            line = (
                f"[{'#' * filled}{'.' * (bar_n - filled)}] {now:5.1f}/{duration:.0f}s  connected {state.connected:3d}"
                f"  turns {len(done):4d}  errors {errors}  refused {state.refused}  p95 first audio {p95}"
            )
            print(f"\r{line}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
        await asyncio.sleep(1.0 if not tty else 0.5)


async def _run_load(
    args: argparse.Namespace, bank: dict[str, Any], sampler: Any, rate: float, http: str | None, notes: list[str]
) -> tuple[LoadState, dict[str, Any]]:
    loop = asyncio.get_running_loop()
    bg = Background(streaming_target=args.streaming_devices)
    idle = await _connect_idle(args, bg) if args.idle_devices else None
    warmed = await _warm_up(args, bank, sampler, rate, notes) if args.warmup > 0 else False
    before, stats_before = await _fetch_server(http, notes)
    t0 = loop.time()
    state = LoadState(t0=t0, deadline=t0 + args.duration)
    mono0 = time.monotonic()
    progress = asyncio.create_task(_progress(state, args.duration, args.quiet))
    noise = noise_packets() if args.streaming_devices else []
    streams = [
        asyncio.create_task(stream_noise(args.url, i, bg, t0 + args.duration, noise))
        for i in range(args.streaming_devices)
    ]
    tasks = [
        asyncio.create_task(
            run_device(
                i,
                args.url,
                bank,
                sampler,
                state,
                rate,
                _start_delay(args, i, warmed),
                args.timeout,
                session_turns=args.session_turns,
            )
        )
        for i in range(args.devices)
    ]
    grace = args.timeout + 20
    pending: set[asyncio.Task[None]] = set()
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=args.duration + grace)
    else:
        await asyncio.sleep(max(0.0, t0 + args.duration - loop.time()))
    for task in pending:
        task.cancel()
    if pending:
        notes.append(f"{len(pending)} device task(s) still running {grace:.0f} s after the deadline: cancelled")
        await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            notes.append(f"device task failed: {type(exc).__name__}: {exc}")
    elapsed = loop.time() - t0
    await asyncio.gather(*streams, return_exceptions=True)
    background = {**bg.to_json(), **(idle or {})}
    notes.extend(bg.notes)
    await close_all(bg)
    state.connected_samples.append((state.now(), state.connected))
    progress.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await progress
    if not args.quiet:
        print(file=sys.stderr)
    after, stats_after = await _fetch_server(http, notes)
    return state, {
        "before": before,
        "after": after,
        "stats_before": stats_before,
        "stats_after": stats_after,
        "elapsed": elapsed,
        "mono0": mono0,
        "background": background if args.idle_devices or args.streaming_devices else None,
    }


def _start_delay(args: argparse.Namespace, index: int, warmed: bool) -> float:
    # After a warm-up the node is in its steady state: reconnect at once, spread over a second.
    return index / max(1, args.devices) if warmed else args.ramp * index / max(1, args.devices)


async def _warm_up(args: argparse.Namespace, bank: dict[str, Any], sampler: Any, rate: float, notes: list[str]) -> bool:
    """The same load for ``--warmup`` seconds, not counted: caches and queues reach a steady state."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    state = LoadState(t0=t0, deadline=t0 + args.warmup)
    if not args.quiet:
        print(f"warm-up: {args.devices} devices for {args.warmup:.0f} s (not counted) ...", file=sys.stderr)
    tasks = [
        asyncio.create_task(
            run_device(i, args.url, bank, sampler, state, rate, _start_delay(args, i, False), args.timeout)
        )
        for i in range(args.devices)
    ]
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=args.warmup + args.timeout + 20)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    done = [r for r in state.records if not r.error]
    notes.append(f"warm-up: {len(done)} turns in {args.warmup:.0f} s before the measured window, not counted")
    return True


async def _connect_idle(args: argparse.Namespace, bg: Background) -> dict[str, Any]:
    """Connect the idle devices; the node's RSS before and after gives memory per connection."""
    import psutil

    def rss_mb() -> float | None:
        if not args.server_pid:
            return None
        try:
            return psutil.Process(args.server_pid).memory_info().rss / 2**20
        except psutil.Error:
            return None

    before = rss_mb()
    took = await connect_idle(args.url, args.idle_devices, bg)
    await asyncio.sleep(2.0)  # let the node finish the handshakes' allocations
    after = rss_mb()
    per_kb = None
    if before is not None and after is not None and bg.idle_connected:
        per_kb = round((after - before) * 1024 / bg.idle_connected, 1)
    if not args.quiet:
        print(
            f"idle devices: {bg.idle_connected}/{args.idle_devices} connected in {took:.1f} s, "
            f"node RSS {before and round(before)} -> {after and round(after)} MB ({per_kb} KB each)",
            file=sys.stderr,
        )
    return {
        "idle_connect_s": round(took, 2),
        "idle_rss_before_mb": None if before is None else round(before, 1),
        "idle_rss_after_mb": None if after is None else round(after, 1),
        "idle_rss_per_connection_kb": per_kb,
    }


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    return cli.run("xiaozhi-loadgen", lambda: _main(parser, cli.parse(parser, argv)))


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    _settings(args)
    try:
        rate = parse_rate(args.rate)
    except ValueError as exc:
        parser.error(str(exc))
    background = args.idle_devices + args.streaming_devices
    if args.idle_devices < 0 or args.streaming_devices < 0:
        parser.error("--idle-devices and --streaming-devices must be >= 0")
    if args.devices < (0 if background else 1) or args.duration <= 0 or args.ramp < 0:
        parser.error("--devices must be >= 1 (>= 0 with background devices), --duration > 0 and --ramp >= 0")
    if not args.url and not args.spawn:
        parser.error("give --url (and optionally --http, --server-pid) or --spawn")
    edge_env: dict[str, str] = {}
    for item in args.edge_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--edge-env wants KEY=VALUE, not {item!r}")
        edge_env[key] = value
    try:
        mix = load_mix(args.mix)
    except MixError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    seed = args.seed if args.seed is not None else (mix.seed if mix.seed is not None else 1)

    bank = build_bank(mix, verbose=not args.quiet)
    load_before = [round(x, 2) for x in os.getloadavg()]
    notes: list[str] = []
    edge = None
    if args.spawn:
        if not args.quiet:
            print("starting an edge node ...", file=sys.stderr, flush=True)
        try:
            edge = spawn_edge("loadgen-edge", edge_env, config=args.config, cpus=args.edge_cpus)
        except RuntimeError as exc:  # its log's last line says why (a port, a model, a config file)
            raise cli.CliError(f"the spawned edge node did not start: {str(exc).strip().splitlines()[-1]}") from exc
        args.url = args.url or edge.url
        args.http = args.http or edge.http
        if args.server_pid is None:
            args.server_pid = edge.pid
    if args.cpus:  # after the spawn: the node must not inherit this pinning
        os.sched_setaffinity(0, parse_cpus(args.cpus))
    sampler_thread = ResourceSampler(args.server_pid).start() if args.server_pid else None
    try:
        state, extra = asyncio.run(_run_load(args, bank, mix.sampler(seed), rate, args.http, notes))
    finally:
        if sampler_thread is not None:
            sampler_thread.stop()
            if sampler_thread.error:
                notes.append(sampler_thread.error)
        if edge is not None:
            stop_edge(edge)
            notes.append(f"edge node log: {edge.log_path}")

    report = build_report(
        state=state,
        devices=args.devices,
        duration_s=args.duration,
        ramp_s=args.ramp,
        rate_per_min=rate,
        url=args.url,
        mix_source=mix.source,
        elapsed_s=extra["elapsed"],
        resource_samples=sampler_thread.samples if sampler_thread else (),
        resource_window=(extra["mono0"], extra["mono0"] + args.duration),
        hist_before=extra["before"],
        hist_after=extra["after"],
        stats_before=extra["stats_before"],
        stats_after=extra["stats_after"],
        server_pid=args.server_pid,
        notes=notes,
    )
    report["background"] = extra["background"]
    report["warmup_s"] = args.warmup
    report["seed"] = seed
    report["host"] = {
        "cpus": os.cpu_count(),
        "edge_cpus": args.edge_cpus,
        "loadgen_cpus": args.cpus,
        "loadavg_before": load_before,
        "loadavg_after_load": [round(x, 2) for x in os.getloadavg()],
    }
    report["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if args.naive:
        from bench.loadgen.naive import run_naive
        from edge_node.config import load_config

        naive = run_naive(
            load_config(args.config), bank, mix.sampler(seed), args.naive_duration, verbose=not args.quiet
        )
        report["naive"] = naive
        report["naive_turns_per_s"] = naive["naive_turns_per_s"]
        tps, ntps = report["turns_per_s"], naive["naive_turns_per_s"]
        report["speedup"] = round(tps / ntps, 2) if tps and ntps else None

    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.records:
        with Path(args.records).open("w", encoding="utf-8") as f:
            for r in state.records:
                f.write(json.dumps(r.to_json()) + "\n")
    if args.plot:
        from bench.loadgen.plot import plot_report

        plot_report(report, args.plot)
    _summary(report, path)
    if args.smoke and (report["protocol_errors"] or report["incomplete_turns"] or not report["turns"]):
        return 1
    return 0


def _summary(report: dict[str, Any], path: Path) -> None:
    fa, stt = report["first_audio_ms"], report["stt_ms"]
    line = (
        f"{report['devices']} devices x {report['duration_s']:g} s @ {report['rate_per_min']:g}/min: "
        f"{report['turns']} turns ({report['turns_per_s']} turns/s, {report['busy_turns']} answered busy), "
        f"errors {report['errors']} "
        f"(protocol {report['protocol_errors']}, incomplete {report['incomplete_turns']}), "
        f"refused {report['refused']}; first audio p50/p95/p99 {fa['p50']}/{fa['p95']}/{fa['p99']} ms, "
        f"stt p50 {stt['p50']} ms, jitter p99 {report['pacing_jitter_ms']['p99']} ms, "
        f"server cpu {report['server_cpu_pct']}% rss {report['server_rss_mb']} MB, "
        f"overhead {report['server_overhead_pct']}% of thread CPU"
    )
    for name, c in (report.get("caches") or {}).items():
        line += f"; {name} cache hit ratio {c['hit_ratio']}"
    if "naive_turns_per_s" in report:
        line += f"; naive {report['naive_turns_per_s']} turns/s, speedup {report['speedup']}x"
    bg = report.get("background")
    if bg:
        line += (
            f"; background: {bg['idle_connected']}/{bg['idle_devices']} idle"
            f" ({bg.get('idle_rss_per_connection_kb')} KB each), {bg['streaming_devices']} streaming"
            f" ({bg['uplink_packets_sent']} packets, {bg['closed_by_server']} closed by the node)"
        )
    print(line)
    print(f"report: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
