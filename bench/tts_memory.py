"""What Piper costs in resident memory over many sentences, and what the two memory settings buy.

    python -m bench.tts_memory [--voices 4] [--rounds 6] [--per-round 15]

Each variant runs in its own process (glibc's mmap threshold is process-wide and only governs
blocks allocated after it is set): ``--voices`` Piper instances, each on its own thread as the
node's TTS pool runs them, speak ``--per-round`` sentences of 3-40 words (cut to the node's
200-character sentence limit) per round, the same seeded sentences in every variant. Printed
per round: resident memory and the round's wall time; then median RSS and time per variant.

- ``as-shipped-before``: ``tts.release_arena: false``, ``server.malloc_mmap_threshold_kb: 0``
- ``release-arena``: the arena is shrunk after every sentence, glibc's dynamic threshold
- ``both`` (the defaults): the arena is shrunk and the mmap threshold fixed at 4 MiB
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time

__all__ = ["main"]

VARIANTS = {
    "as-shipped-before": (False, 0),
    "release-arena": (True, 0),
    "both": (True, 4096),
}
_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven small birds sing about weather and time near the river bank"
).split()


def _child(variant: str, voices: int, rounds: int, per_round: int) -> None:
    import psutil

    from edge_node.config import TtsConfig
    from shared.allocator import set_mmap_threshold

    release, threshold_kb = VARIANTS[variant]
    set_mmap_threshold(threshold_kb * 1024)
    from edge_node.engines.tts import PiperTts

    proc = psutil.Process()
    engines = [PiperTts(TtsConfig(release_arena=release)) for _ in range(voices)]
    rng = random.Random(1)
    plan = [
        [
            [
                (" ".join(rng.choice(_WORDS) for _ in range(rng.choice([3, 6, 10, 15, 22, 30, 40]))))[:199] + "."
                for _ in range(per_round)
            ]
            for _ in engines
        ]
        for _ in range(rounds)
    ]
    out: dict[str, object] = {"variant": variant, "loaded_mb": proc.memory_info().rss / 2**20, "rounds": []}
    for texts in plan:
        t0 = time.perf_counter()
        threads = [
            threading.Thread(target=lambda e=e, ts=ts: [e.synthesize(t) for t in ts])
            for e, ts in zip(engines, texts, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["rounds"].append({"rss_mb": proc.memory_info().rss / 2**20, "s": time.perf_counter() - t0})  # type: ignore[union-attr]
    print(json.dumps(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tts_memory", description=__doc__)
    parser.add_argument("--voices", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=15)
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args(argv)
    if args.variant:
        _child(args.variant, args.voices, args.rounds, args.per_round)
        return 0
    results = []
    for variant in VARIANTS:
        cmd = [
            sys.executable,
            "-m",
            "bench.tts_memory",
            "--variant",
            variant,
            "--voices",
            str(args.voices),
            "--rounds",
            str(args.rounds),
            "--per-round",
            str(args.per_round),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{variant}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 2
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        rows = ", ".join(f"{x['rss_mb']:.0f} MB/{x['s']:.1f} s" for x in r["rounds"])
        print(f"{variant:18} loaded {r['loaded_mb']:.0f} MB; rounds: {rows}", flush=True)
    base = results[0]
    for r in results:
        rss = [x["rss_mb"] for x in r["rounds"]]
        secs = statistics.median(x["s"] for x in r["rounds"])
        ratio = secs / statistics.median(x["s"] for x in base["rounds"])
        print(
            f"{r['variant']:18} RSS {r['loaded_mb']:.0f} -> last {rss[-1]:.0f} MB (max {max(rss):.0f}); "
            f"median round {secs:.1f} s ({ratio:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
