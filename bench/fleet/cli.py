"""``xiaozhi-fleet``: a whole fleet on one machine, and the timing profile its edges use.

    xiaozhi-fleet run --devices 1000 --edges 8 --talkers 0.1 --rate 4/min --duration 150 --kill-at 90 \\
        --out docs/perf/fleet-2026-11-25
    xiaozhi-fleet calibrate docs/perf/2026-11-25/eval.json --out bench/fleet/timing.2026-11-25.yaml

``run`` starts a NATS hub, one leaf nats-server and one edge per ``--edges``, the provisioning
service and a cloud LLM worker, then boots the devices: OTA, WebSocket, hold, talk. The edges use
timing engines (the report says so): the models cannot serve a thousand devices on a small box.
Exit status 0 when every device connected, the balance is within ``--balance-tolerance`` and the
killed edge's devices were all reassigned; 1 otherwise; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.fleet.calibrate import CalibrationError, write_profile
from bench.fleet.run import RunSpec, run_fleet
from bench.fleet.topology import DEFAULT_PROFILE, FleetSpec, FleetTopology
from bench.loadgen.cli import parse_rate
from bench.loadgen.mix import MixError, default_mix, load_mix
from shared import cli

__all__ = ["main", "passed", "render"]


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("xiaozhi-fleet", __doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = cli.add_command(
        sub, "run", "run a fleet and report", examples=["xiaozhi-fleet run --devices 1000 --edges 8 --out fleet-report"]
    )
    r.add_argument("--devices", type=int, default=1000, help="simulated devices")
    r.add_argument("--edges", type=int, default=8, help="edge nodes (each with its own leaf nats-server)")
    r.add_argument("--max-sessions", type=int, default=150, help="sessions per edge")
    r.add_argument("--talkers", type=float, default=0.1, help="share of devices taking turns")
    r.add_argument("--rate", default="4/min", help="turns per talking device")
    r.add_argument("--boot", type=float, default=30.0, help="seconds over which the devices boot")
    r.add_argument("--duration", type=float, default=150.0, help="seconds from the first boot to the end")
    r.add_argument("--kill-at", type=float, default=90.0, help="kill one edge this many seconds in; <0: never")
    r.add_argument("--kill-edge", default="", help="which edge (default: the one holding the most devices)")
    r.add_argument("--balance-tolerance", type=float, default=0.1, help="(max - min) / mean devices per edge")
    r.add_argument("--profile", type=Path, default=DEFAULT_PROFILE, help="the edges' timing profile")
    r.add_argument("--mix", type=Path, help="the talkers' utterance mix (default: the load generator's)")
    r.add_argument(
        "--out",
        type=Path,
        help="directory for report.json, report.txt and the processes' logs (default: a new temporary directory)",
    )
    r.add_argument("--seed", type=int, default=7, help="random seed")
    c = cli.add_command(
        sub,
        "calibrate",
        "write a timing profile from an xiaozhi-eval report",
        examples=["xiaozhi-fleet calibrate eval.json --out timing.yaml"],
    )
    c.add_argument("eval_json", type=Path, help="the JSON report of `xiaozhi-eval --out`")
    c.add_argument("-o", "--out", type=Path, required=True, help="the timing profile (YAML) to write")
    c.add_argument("--mix", type=Path, help="the phrases the timing ASR hands out (default: the load generator's)")
    return p


def passed(report: dict[str, Any]) -> bool:
    """Every device connected, balanced, and the killed edge's devices all reassigned."""
    ok = report["boot"]["never_connected"] == 0 and report["balance"]["within_tolerance"]
    kill = report.get("kill")
    if kill is not None:
        ok = ok and kill["not_recovered"] == 0 and kill["reassigned"] == kill["devices_on_it"]
    return bool(ok)


def render(report: dict[str, Any]) -> str:
    b, bal, t, k = report["boot"], report["balance"], report["turns"], report.get("kill")
    lines = [
        f"xiaozhi-fleet: {report['devices']} devices ({report['talkers']} talking at "
        f"{report['spec']['rate_per_min']:g}/min), {report['edges']} edges, {report['elapsed_s']} s "
        f"on {report['machine']['cpus']} CPUs",
        f"  edge engines: {report['engines']['edge']}",
        f"  cloud LLM:    {report['engines']['cloud_llm']}",
        f"boot: OTA p50 {b['ota_ms']['p50']} ms, p95 {b['ota_ms']['p95']} ms, max {b['ota_ms']['max']} ms; "
        f"hello p50 {b['hello_ms']['p50']} ms, p95 {b['hello_ms']['p95']} ms, max {b['hello_ms']['max']} ms",
        f"      all connected after {b['all_connected_s']} s; never connected {b['never_connected']}; "
        f"OTA failures {b['ota_failures']}, connect failures {b['connect_failures']}",
        f"balance: {bal.get('min')}..{bal.get('max')} devices per edge (mean {bal.get('mean')}), spread "
        f"{bal.get('spread')} (tolerance {bal['tolerance'] if 'tolerance' in bal else '?'}): "
        f"{'within' if bal['within_tolerance'] else 'OUTSIDE'}; edges' own session counts "
        f"{'match' if report['edge_sessions_match_devices'] else 'DO NOT match'}",
        "",
        f"{'edge':<10}{'devices':>8}{'talking':>8}{'turns/s':>9}{'answered':>9}{'escal.':>8}{'cpu s':>8}",
    ]
    for name, e in report["per_edge"].items():
        lines.append(
            f"{name:<10}{e['connected_at_balance']:>8}{e['talkers']:>8}{e['turns_per_s'] or 0:>9.2f}"
            f"{e['answered'] or 0:>9.0f}"
            f"{e['escalations'] or 0:>8.0f}{e['cpu_s'] or 0:>8.1f}"
            f"{'  (killed)' if e['killed'] else ''}"
        )
    lines += [
        "",
        f"turns: {t['turns_per_s']}/s over the edges; device side {t['device_side']} "
        f"(answered {t['answered']}, busy {t['busy']}, errors {dict(t['errors']) or 0}); first audio "
        f"p50 {t['first_audio_ms']['p50']} ms, p95 {t['first_audio_ms']['p95']} ms; "
        f"protocol errors {t['protocol_errors']}",
        f"escalations: {report['escalations']['edges_sent']:.0f} sent by the edges, "
        f"{report['escalations']['worker_served']} answered by the cloud worker",
    ]
    if "cpu" in report:
        lines.append(
            f"cpu: machine {report['cpu']['machine_busy_pct']} % busy (100 = all cores); the simulated "
            f"devices' process used {report['cpu']['devices_process_cpu_s']} CPU-s"
        )
    if k is not None:
        r = k["recovery_ms"]
        lines += [
            f"killed {k['edge']} at {k['at_s']} s holding {k['devices_on_it']} devices: {k['reassigned']} reassigned "
            f"(to {k['went_to']}), {k['not_recovered']} not recovered",
            f"      recovery (connection lost -> hello from the new edge): p50 {r['p50']} ms, p95 {r['p95']} ms, "
            f"all within {k['all_recovered_after_s']} s",
            f"      balance after: {k['balance_after'].get('min')}..{k['balance_after'].get('max')} per edge",
        ]
    lines.append(f"result: {'PASS' if passed(report) else 'FAIL'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return cli.run("xiaozhi-fleet", lambda: _main(cli.parse(_parser(), argv)))


def _main(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per OTA request of a thousand devices
    try:
        mix = load_mix(args.mix) if args.mix else default_mix()
    except (OSError, MixError) as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    if args.command == "calibrate":
        try:
            write_profile(args.eval_json, args.out, mix)
        except (OSError, ValueError, CalibrationError) as exc:
            raise cli.CliError(f"calibrate: {exc}", cli.EXIT_USAGE) from exc
        print(f"wrote {args.out}")
        return 0
    try:
        spec = RunSpec(
            devices=args.devices,
            talkers=args.talkers,
            rate_per_min=parse_rate(args.rate),
            boot_s=args.boot,
            duration_s=args.duration,
            kill_at_s=args.kill_at if args.kill_at >= 0 else None,
            kill_edge=args.kill_edge,
            balance_tolerance=args.balance_tolerance,
            seed=args.seed,
        )
    except ValueError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    if args.devices < 1 or args.edges < 1 or not 0 <= args.talkers <= 1:
        raise cli.CliError("--devices and --edges must be >= 1, --talkers within 0..1", cli.EXIT_USAGE)
    if args.kill_edge and not args.kill_edge.startswith("edge-"):
        raise cli.CliError("--kill-edge names an edge like edge-01", cli.EXIT_USAGE)
    out = args.out or Path(tempfile.mkdtemp(prefix="xiaozhi-fleet-"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="xiaozhi-fleet-work-"))
    topo = FleetTopology(
        FleetSpec(edges=args.edges, max_sessions=args.max_sessions, profile=args.profile), work, out / "logs"
    )
    try:
        topo.start()
        report = asyncio.run(run_fleet(topo, spec, mix))
    finally:
        topo.stop()
        shutil.rmtree(work, ignore_errors=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    text = render(report)
    (out / "report.txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"report: {out / 'report.json'}")
    return 0 if passed(report) else 1


if __name__ == "__main__":
    sys.exit(main())
