"""Single-device turn latency against a running edge node: medians over repeated turns.

    .venv/bin/python -m bench.turn_latency --url ws://127.0.0.1:8000/xiaozhi/v1/ --repeats 5
    .venv/bin/python -m bench.turn_latency --language zh      # Mandarin phrases, for a node serving zh

Each phrase is synthesised (Piper; Mandarin by the bundled Chinese voice), streamed at real-time pace
like firmware in auto mode, and timed from the end of the speech to `stt`, to the first downlink audio
packet and to `tts/stop`. One device at a time, so the figures are the node's latency without queueing.

With ``--stats http://127.0.0.1:8003`` the node's ``/stats`` is read before and after each kind of phrase,
and the CPU-seconds the node spent per turn are reported by role (asr, llm, tts, ...): the cost of a
turn of that kind, child processes (an out-of-process voice) included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from typing import Any

import numpy as np

from shared.client.device import DeviceClient
from shared.client.events import Turn
from shared.client.speech import speak_16k

PHRASES: dict[str, list[str]] = {
    "command": ["Set the volume to thirty."],
    "builtin": ["What time is it?"],
    "open": ["What is the capital of France?"],
}
# The same kinds in Mandarin, with open questions kept apart from cached ones: "open" asks a different
# question each repeat (none in the answer cache unless the node has heard it before: use a fresh cache
# directory), "cached" asks one question once untimed and then times its repeats, all cache hits.
PHRASES_ZH: dict[str, list[str]] = {
    "command": ["音量调到三十。"],
    "builtin": ["现在几点了？"],
    "open": ["中国的首都是哪里？", "一年有几个月？", "熊猫最喜欢吃什么？", "太阳从哪边升起？", "天空是什么颜色的？"],
    "cached": ["中国最长的河流是什么？"],
}
LANGUAGES = {"en": PHRASES, "zh": PHRASES_ZH}


async def _turn(url: str, pcm: np.ndarray, device: str) -> Turn:
    client = DeviceClient(url, device_id=device)
    await client.connect()
    try:
        await client.listen_start("auto")
        await client.send_speech(pcm)
        return await client.wait_turn_end(120)
    finally:
        await client.close()


async def _cpu_by_role(stats_url: str | None) -> dict[str, float]:
    if not stats_url:
        return {}
    import httpx

    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(stats_url.rstrip("/") + "/stats")
        response.raise_for_status()
        return {k: float(v) for k, v in response.json()["cpu_s_by_role"].items()}


async def measure(
    url: str, repeats: int, phrases: dict[str, list[str]] | None = None, stats_url: str | None = None
) -> dict[str, dict[str, Any]]:
    phrases = phrases or PHRASES
    results: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, float]] = {}
    for kind, texts in phrases.items():
        pcms = [speak_16k(text) for text in texts]
        stats = results.setdefault(kind, {"stt_ms": [], "first_audio_ms": [], "tts_stop_ms": []})
        if kind == "cached":  # fill the answer cache; not timed
            await _turn(url, pcms[0], "be:ec:00:00:01:00")
        before = await _cpu_by_role(stats_url)
        for i in range(repeats):
            turn = await _turn(url, pcms[i % len(pcms)], f"be:ec:00:00:00:{i:02x}")
            for key in stats:
                value = getattr(turn, key)
                if value is not None:
                    stats[key].append(value)
            print(
                f"{kind:8s} #{i + 1}: stt {turn.stt_ms:.0f} ms, first audio {turn.first_audio_ms:.0f} ms, "
                f"heard {turn.stt_text!r}, reply {' '.join(turn.sentences)!r}"
            )
        if before:
            await asyncio.sleep(1.0)  # the last reply's tail and the node's CPU sampling settle
            after = await _cpu_by_role(stats_url)
            per_turn = {role: round((after[role] - before.get(role, 0.0)) / repeats, 3) for role in after}
            cpu[kind] = {role: value for role, value in per_turn.items() if value > 0} | {
                "total": round(sum(per_turn.values()), 3)
            }
    return {
        kind: {f"{key}_median": round(statistics.median(v), 1) for key, v in stats.items() if v}
        | {"phrases": " / ".join(phrases[kind]), "turns": repeats}
        | ({"cpu_s_per_turn": cpu[kind]} if kind in cpu else {})
        for kind, stats in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8000/xiaozhi/v1/")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stats", metavar="HTTP_URL", help="the node's HTTP base URL: also CPU-s per turn by role")
    parser.add_argument("--language", choices=sorted(LANGUAGES), default="en", help="the phrases' language")
    args = parser.parse_args()
    result = asyncio.run(measure(args.url, args.repeats, LANGUAGES[args.language], args.stats))
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
