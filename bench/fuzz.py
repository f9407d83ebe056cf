"""The long fuzz run: the CI fuzz properties (tests/fuzz/targets.py) with many examples and fresh seeds.

    .venv/bin/python -m bench.fuzz --examples 20000 [--target NAME ...] [--seed N] [--list]

CI runs each property a few hundred times with a fixed derandomized seed, so it is reproducible
but only ever sees the same inputs. This script runs the same properties with a new random seed
each time (printed, so a failure can be replayed with ``--seed``) and many more examples. Per
target it prints the examples run, the outcomes (accepted, and rejected by error kind), the slowest
example and the peak RSS growth; then the multi-megabyte inputs with their times. It exits 1 on the
first property failure, printing hypothesis' falsifying (shrunk) example.

``--target`` takes a name or a prefix (``messages``, ``nats.stream_reply``); ``--list`` lists them.

Run it from a checkout's root: the targets are test code, kept in tests/fuzz beside the CI tests that
share them, and ``tests`` is not part of the installed package. The runner itself stays with the
other long runs (soak, perf_suite): it takes minutes and reports timings, RSS growth and outcome
counts, which is not what CI runs.
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

from tests.fuzz.targets import LARGE_INPUT_LIMIT_S, LARGE_INPUTS, TARGETS, Target, run_large_input


@dataclass
class Stats:
    """What one target did: outcome counts and the slowest example (generation excluded)."""

    examples: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    max_s: float = 0.0
    wall_s: float = 0.0
    rss_growth_kb: int = 0


def _peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def run_target(target: Target, examples: int, run_seed: int) -> tuple[Stats, BaseException | None]:
    """Run one property ``examples`` times under hypothesis; the error is the falsifying one, if any."""
    stats = Stats()

    def timed(example: Any) -> None:
        started = time.perf_counter()
        outcome = target.check(example)
        elapsed = time.perf_counter() - started
        stats.examples += 1
        stats.outcomes[outcome] += 1
        stats.max_s = max(stats.max_s, elapsed)

    test: Callable[[], None] = seed(run_seed)(
        settings(
            max_examples=examples,
            deadline=None,
            derandomize=False,
            database=None,
            print_blob=True,
            suppress_health_check=list(HealthCheck),
        )(given(target.strategy)(timed))
    )
    rss_before = _peak_rss_kb()
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        test()
    except Exception as exc:  # noqa: BLE001 - reported with its falsifying example
        error = exc
    stats.wall_s = time.perf_counter() - started
    stats.rss_growth_kb = max(0, _peak_rss_kb() - rss_before)
    return stats, error


def _select(names: list[str]) -> list[Target]:
    """Targets whose name starts with one of ``names`` (all when none is given)."""
    chosen = [t for t in TARGETS.values() if not names or t.name.startswith(tuple(names))]
    if not chosen:
        raise SystemExit(f"no target matches {names}; --list shows them")
    return chosen


def _print_stats(target: Target, stats: Stats, run_seed: int) -> None:
    accepted = sum(n for k, n in stats.outcomes.items() if not k.startswith("rejected:"))
    print(f"\n{target.name}  (seed {run_seed})  {target.doc}")
    print(
        f"  examples {stats.examples}  accepted {accepted}  rejected {stats.examples - accepted}  "
        f"max {stats.max_s * 1000:.1f} ms/example  wall {stats.wall_s:.1f} s  "
        f"peak RSS +{stats.rss_growth_kb / 1024:.1f} MiB"
    )
    for outcome, count in stats.outcomes.most_common(12):
        print(f"    {count:7d}  {outcome}")
    if len(stats.outcomes) > 12:
        print(f"    ... {len(stats.outcomes) - 12} more kinds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=20_000, help="examples per target (default 20000)")
    parser.add_argument("--target", action="append", default=[], help="a target name or prefix (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="replay: the seed a previous run printed")
    parser.add_argument("--no-large", action="store_true", help="skip the multi-megabyte inputs")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for target in TARGETS.values():
            print(f"{target.name:24s} {target.doc}")
        return 0
    # Unreadable cache entries are logged as warnings by design; thousands of them are noise here.
    logging.basicConfig(level=logging.ERROR)

    failures = 0
    for target in _select(args.target):
        run_seed = args.seed if args.seed is not None else random.getrandbits(64)
        stats, error = run_target(target, args.examples, run_seed)
        _print_stats(target, stats, run_seed)
        if error is not None:
            failures += 1
            print(f"  FAILED: {type(error).__name__}: {error}")
            for note in getattr(error, "__notes__", []):
                print(f"  {note}")
            traceback.print_exception(error, file=sys.stdout)
            print(f"  replay: python -m bench.fuzz --target {target.name} --seed {run_seed} --examples {args.examples}")
            break

    if not failures and not args.no_large:
        print(f"\nmulti-megabyte inputs (limit {LARGE_INPUT_LIMIT_S:.0f} s each)")
        for item in LARGE_INPUTS:
            if args.target and not any(item.name.startswith(n.split(".")[0]) for n in args.target):
                continue
            rss_before = _peak_rss_kb()
            try:
                outcome, elapsed = run_large_input(item)
            except Exception as exc:  # noqa: BLE001 - reported as the failure it is
                failures += 1
                print(f"  {item.name:32s} FAILED: {type(exc).__name__}: {exc}")
                continue
            slow = elapsed >= LARGE_INPUT_LIMIT_S
            failures += slow
            growth = max(0, _peak_rss_kb() - rss_before) / 1024
            print(
                f"  {item.name:32s} {elapsed * 1000:8.1f} ms  peak RSS +{growth:6.1f} MiB  {outcome}"
                f"{'  TOO SLOW' if slow else ''}"
            )
    print("\nFAILED" if failures else "\nall properties held")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
