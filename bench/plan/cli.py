"""``xiaozhi-plan``: edge nodes and cloud GPU workers a fleet needs, its p95 first audio and cost.

    xiaozhi-plan --devices 1000 --rate 4/min --mix bench/plan/mix.2026-11-25.yaml --edge-cores 2,4,8 \\
        --prices bench/plan/prices.example.yaml
    xiaozhi-plan --validate docs/perf/2026-11-25/devices-*.json --mix ... --edge-cores 2   # against loadgen
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from shared import cli

from .planner import Requirements, devices_held, plan_fleet
from .sim import EdgeModel
from .validate import measured_held

__all__ = ["main"]

DEFAULT_MIX = Path(__file__).with_name("mix.2026-11-25.yaml")


def _rate(text: str) -> float:
    """'4/min', '240/h' or '4' (per minute) -> turns per device per minute."""
    value, _, unit = text.partition("/")
    per = {"": 1.0, "min": 1.0, "m": 1.0, "h": 1 / 60, "hour": 1 / 60, "s": 60.0}.get(unit.strip())
    if per is None:
        raise argparse.ArgumentTypeError(f"rate unit must be /min, /h or /s, not {unit!r}")
    return float(value) * per


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("xiaozhi-plan", __doc__)
    p.add_argument("--devices", type=int, default=1000, help="devices in the fleet")
    p.add_argument("--rate", type=_rate, default="4/min", help="turns per device, e.g. 4/min, 240/h")
    p.add_argument("--mix", type=Path, default=DEFAULT_MIX, help="measured per-turn costs and route shares (YAML)")
    p.add_argument("--edge-cores", default="2,4,8", help="edge sizes to plan for, comma-separated core counts")
    p.add_argument("--prices", type=Path, help="YAML: edge_per_month {cores: price}, gpu_worker_per_month")
    p.add_argument("--max-busy", type=float, default=0.02, help="share of turns answered 'busy' allowed")
    p.add_argument("--target-p95", type=float, help="p95 end of speech to first audio, seconds (optional)")
    p.add_argument("--minutes", type=float, default=20.0, help="simulated minutes per point")
    p.add_argument("--validate", nargs="+", type=Path, help="loadgen report.json files of one edge: compare")
    p.add_argument("--json", action="store_true", help="print the plan as JSON on stdout")
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.run("xiaozhi-plan", lambda: _main(cli.parse(_parser(), argv)))


def _main(args: argparse.Namespace) -> int:
    try:
        mix = yaml.safe_load(args.mix.read_text(encoding="utf-8")) or {}
        model = EdgeModel.from_dict(mix)
        cores = [int(c) for c in args.edge_cores.split(",") if c.strip()]
        prices = yaml.safe_load(args.prices.read_text(encoding="utf-8")) if args.prices else None
    except (OSError, ValueError, TypeError, yaml.YAMLError) as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    req = Requirements(args.max_busy, args.target_p95, args.minutes)
    if args.validate:
        measured, points = measured_held(args.validate, args.max_busy)
        predicted = devices_held(model, cores[0], args.rate, req)
        ratio = predicted / measured if measured else float("inf")
        out = {
            "cores": cores[0],
            "rate_per_min": args.rate,
            "max_busy": args.max_busy,
            "measured_points": points,
            "measured_held": round(measured, 1),
            "predicted_held": predicted,
            "ratio": round(ratio, 3),
        }
        print(
            json.dumps(out, indent=2)
            if args.json
            else f"{cores[0]}-core edge at {args.rate:g} turns/min, busy <= {args.max_busy:.0%}: measured "
            f"{measured:.1f} devices (from {points}), predicted {predicted}: ratio {ratio:.2f}"
        )
        return 0 if abs(ratio - 1) <= 0.2 else 1
    plans = plan_fleet(model, args.devices, args.rate, cores, req, mix.get("cloud") or {}, prices)
    if args.json:
        print(json.dumps([p.to_json() for p in plans], indent=2))
        return 0
    print(
        f"{args.devices} devices at {args.rate:g} turns/min each, busy <= {args.max_busy:.0%}"
        + (f", p95 first audio <= {args.target_p95:g} s" if args.target_p95 else "")
        + f" ({args.mix.name})"
    )
    print(
        f"{'cores':>5} {'held/edge':>9} {'edges':>6} {'dev/edge':>8} {'p95 s':>6} {'busy':>6} {'CPU':>5} "
        f"{'GPUs':>5} {'$/month':>9} {'$/dev-month':>11}"
    )
    for p in plans:
        cost = f"{p.cost_per_month:9.0f}" if p.cost_per_month is not None else f"{'-':>9}"
        per = f"{p.cost_per_device_month:11.2f}" if p.cost_per_device_month is not None else f"{'-':>11}"
        print(
            f"{p.cores:>5} {p.devices_held:>9} {p.edges:>6} {p.devices_per_edge:>8} {p.p95_first_audio_s:>6} "
            f"{p.busy_share:>6.1%} {p.cpu_utilisation:>5.0%} {p.gpu_workers:>5} {cost} {per}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
