"""Single-device turn latency against a running edge node: medians over repeated turns.

    .venv/bin/python -m bench.turn_latency --url ws://127.0.0.1:8000/xiaozhi/v1/ --repeats 5

Each phrase is synthesised with Piper, streamed at real-time pace like firmware in auto mode, and
timed from the end of the speech to `stt`, to the first downlink audio packet and to `tts/stop`.
One device at a time, so the figures are the node's latency without queueing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

from shared.client.device import DeviceClient
from shared.client.speech import synthesize_16k

PHRASES = {
    "command": "Set the volume to thirty.",
    "builtin": "What time is it?",
    "open": "What is the capital of France?",
}


async def measure(url: str, repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, list[float]]] = {}
    for kind, phrase in PHRASES.items():
        pcm = synthesize_16k(phrase)
        stats = results.setdefault(kind, {"stt_ms": [], "first_audio_ms": [], "tts_stop_ms": []})
        for i in range(repeats):
            client = DeviceClient(url, device_id=f"be:ec:00:00:00:{i:02x}")
            await client.connect()
            try:
                await client.listen_start("auto")
                await client.send_speech(pcm)
                turn = await client.wait_turn_end(120)
            finally:
                await client.close()
            for key in stats:
                value = getattr(turn, key)
                if value is not None:
                    stats[key].append(value)
            print(
                f"{kind:8s} #{i + 1}: stt {turn.stt_ms:.0f} ms, first audio {turn.first_audio_ms:.0f} ms, "
                f"reply {' '.join(turn.sentences)!r}"
            )
    return {
        kind: {f"{key}_median": round(statistics.median(v), 1) for key, v in stats.items() if v}
        | {"phrase": PHRASES[kind], "turns": repeats}  # type: ignore[dict-item]
        for kind, stats in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8000/xiaozhi/v1/")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.url, args.repeats)), indent=2))


if __name__ == "__main__":
    main()
