"""Lockstep bursts: N devices finish a different open question at the same moment.

    .venv/bin/python -m bench.lockstep --devices 2,4,8,12,16 --rounds 2 [--edge-env K=V ...] [--taskset 0]

For each N a fresh edge node (cold caches: its own empty cache directory, an empty semantic index)
is started and N devices connect. Each round, every device holds push-to-talk (manual mode),
streams its own question in real time, timed so that all of them end together, and releases the
button at that same instant (``listen/stop``). A question is never asked twice in a run, so no turn
is a cache hit. Per turn: end of speech -> first audio of the *answer* (a filler the node says while
a turn waits is reported apart), and whether the answer was the node's "busy" message.

This is the worst case for a queue: every turn arrives at once, each needs ASR, a model answer and
TTS, and nothing is cached. The node's steady-state capacity is measured by the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.loadgen.server import spawn_edge, stop_edge
from edge_node.config import QueueConfig
from edge_node.language.phrases import say
from shared.client.device import DeviceClient
from shared.client.speech import synthesize_16k

# Open questions the rules and the caches cannot answer: each one is a model turn. 32: 16 devices x 2 rounds.
QUESTIONS = [
    "Can you explain how rainbows form?",
    "What are some good habits for better sleep?",
    "Why do cats like to sit in boxes?",
    "How does a refrigerator keep food cold?",
    "What makes a good breakfast for a busy morning?",
    "Why do we have leap years?",
    "How do airplanes stay in the air?",
    "What should I know before adopting a dog?",
    "Why is the ocean salty?",
    "How do vaccines train the immune system?",
    "What are the benefits of learning to play music?",
    "How does a compass find north?",
    "Why do onions make people cry?",
    "What is a simple way to start running?",
    "How do bees find their way back to the hive?",
    "Why does bread go stale?",
    "How do solar panels turn light into power?",
    "What are good ways to save water at home?",
    "Why do some birds fly south for the winter?",
    "How does a microwave oven heat food?",
    "What are some tips for remembering names?",
    "Why do leaves fall from trees in autumn?",
    "How do submarines dive and come back up?",
    "What makes thunder so loud?",
    "How can I make my houseplants grow better?",
    "Why do we yawn when we are tired?",
    "How does the moon cause tides?",
    "What is a healthy snack for children?",
    "Why does ice float on water?",
    "How do noise cancelling headphones work?",
    "What are some easy ways to reduce stress?",
    "Why do stars twinkle at night?",
]
BUSY = QueueConfig().busy_message
FILLERS = {say("en", "filler"), say("zh", "filler")}


def _answer_first_audio_ms(client: DeviceClient, ref: float, start: int) -> tuple[float | None, float | None, bool]:
    """(first audio of the answer, first audio of a filler, busy) in ms from ``ref``."""
    filler_at = answer_at = None
    in_filler = False
    busy = False
    for event in client.events[start:]:
        msg = event.msg
        if msg is not None and msg.get("type") == "tts" and msg.get("state") == "sentence_start":
            text = str(msg.get("text", ""))
            in_filler = text in FILLERS
            busy = busy or text == BUSY
        elif event.kind == "audio" and event.pcm is not None:
            if in_filler:
                filler_at = filler_at if filler_at is not None else event.at
            elif answer_at is None:
                answer_at = event.at
        if msg is not None and msg.get("type") == "tts" and msg.get("state") == "stop":
            break

    def ms(at: float | None) -> float | None:
        return None if at is None else round((at - ref) * 1000, 1)

    return ms(answer_at), ms(filler_at), busy


async def _round(clients: list[DeviceClient], speech: list[np.ndarray], timeout_s: float) -> list[dict[str, Any]]:
    frame_s = 0.06
    longest = max(len(s) for s in speech) / 16000
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.5
    release_at = t0 + longest + frame_s

    async def one(client: DeviceClient, pcm: np.ndarray) -> dict[str, Any]:
        await asyncio.sleep(max(0.0, t0 + longest - len(pcm) / 16000 - loop.time()))
        await client.listen_start("manual")
        start = client._turn_start  # noqa: SLF001 - the events of this turn
        packets = client.encode_speech(pcm)
        await client.send_opus_packets(packets, realtime=True)
        await asyncio.sleep(max(0.0, release_at - loop.time()))
        await client.listen_stop()
        ref = time.monotonic()
        client.speech_end_at = ref
        try:
            turn = await client.wait_turn_end(timeout_s)
        except (TimeoutError, Exception) as exc:  # noqa: BLE001 - a turn that never ended is a result
            return {"error": repr(exc)[:200]}
        answer_ms, filler_ms, busy = _answer_first_audio_ms(client, ref, start)
        return {
            "stt": turn.stt_text,
            "first_audio_ms": answer_ms,
            "filler_ms": filler_ms,
            "busy": busy,
            "sentences": len(turn.sentences),
        }

    return await asyncio.gather(*(one(c, s) for c, s in zip(clients, speech, strict=True)))


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 0)


async def _measure(url: str, n: int, rounds: int, questions: list[str], timeout_s: float) -> dict[str, Any]:
    clients = [DeviceClient(url, device_id=f"1c:0c:00:00:{n:02x}:{i:02x}", auto_listen=False) for i in range(n)]
    await asyncio.gather(*(c.connect() for c in clients))
    turns: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            asked = questions[r * n : (r + 1) * n]
            speech = [synthesize_16k(q) for q in asked]
            turns += await _round(clients, speech, timeout_s)
            await asyncio.sleep(1.0)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    answered = [t["first_audio_ms"] for t in turns if not t.get("busy") and t.get("first_audio_ms") is not None]
    return {
        "devices": n,
        "turns": len(turns),
        "busy": sum(1 for t in turns if t.get("busy")),
        "errors": sum(1 for t in turns if "error" in t),
        "fillers": sum(1 for t in turns if t.get("filler_ms") is not None),
        "first_audio_p50_ms": _pct(answered, 0.5),
        "first_audio_p90_ms": _pct(answered, 0.9),
        "first_audio_max_ms": max(answered) if answered else None,
        "first_audio_median_ms": round(statistics.median(answered)) if answered else None,
        "turn_detail": turns,
    }


def run(
    devices: list[int],
    rounds: int,
    env: dict[str, str],
    cpus: str = "",
    timeout_s: float = 60,
    root: Path | None = None,
) -> list[dict[str, Any]]:
    if max(devices) * rounds > len(QUESTIONS):
        raise SystemExit(
            f"lockstep: {max(devices)} devices x {rounds} rounds needs more than {len(QUESTIONS)} questions"
        )
    for q in QUESTIONS[: max(devices) * rounds]:
        synthesize_16k(q)  # the speech bank, before any node runs
    results = []
    for n in devices:
        edge = spawn_edge(f"lockstep-{n}", env, cpus=cpus or None, root=root)
        try:
            result = asyncio.run(_measure(edge.url, n, rounds, QUESTIONS, timeout_s))
        finally:
            stop_edge(edge)
        print(
            f"lockstep {n:2d} devices: {result['turns']} turns, busy {result['busy']}, errors {result['errors']}, "
            f"first audio p50 {result['first_audio_p50_ms']} / p90 {result['first_audio_p90_ms']} ms, "
            f"fillers {result['fillers']}",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench.lockstep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--devices", default="2,4,8,12,16", help="device counts, one fresh node each")
    p.add_argument("--rounds", type=int, default=2, help="bursts per device count (each with new questions)")
    p.add_argument("--edge-env", action="append", default=[], metavar="K=V", help="environment for the node")
    p.add_argument("--taskset", default="", metavar="CPUS", help="pin the node to these CPUs (taskset -c syntax)")
    p.add_argument("--edge-root", metavar="DIR", help="run the node from this checkout (a before/after comparison)")
    p.add_argument("--out", metavar="FILE", help="write the results as JSON")
    args = p.parse_args(argv)
    env = dict(kv.split("=", 1) for kv in args.edge_env)
    devices = [int(x) for x in args.devices.split(",") if x]
    results = run(devices, args.rounds, env, args.taskset, root=Path(args.edge_root) if args.edge_root else None)
    print("| devices | turns | busy | p50 / p90 first audio (ms) | fillers |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['devices']} | {r['turns']} | {r['busy']} | {r['first_audio_p50_ms']} / {r['first_audio_p90_ms']} "
            f"| {r['fillers']} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
