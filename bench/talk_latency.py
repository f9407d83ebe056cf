"""End of speech -> first audio: the /talk page in headless chromium vs ``xiaozhi-device``, one node.

    .venv/bin/python -m bench.talk_latency --repeats 5 --out talk-latency.json

Starts one edge node (answer and speech caches off, so every turn runs the models), then alternates:
the /talk page in hands-free mode with Chromium's fake microphone playing the question once, and
``xiaozhi-device --wav`` streaming the same speech in auto mode. The page's figure is its own (the
last voiced microphone frame sent -> the first binary audio frame received, docs/talk.md); the
simulator's is from its last speech packet sent to the first audio packet. Medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import async_playwright

from bench.loadgen.server import spawn_edge, stop_edge
from shared.client.speech import save_wav, speak_16k

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


async def page_turn(http: str, wav: Path, timeout_s: float = 90) -> float | None:
    """One hands-free turn on /talk; the page's end-of-speech -> first-audio figure in ms."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*ARGS, f"--use-file-for-fake-audio-capture={wav}%noloop"]
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{http}/talk")
            await page.wait_for_selector("body[data-ready]", state="attached")
            await page.click("#connect")
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                ms = await page.evaluate("document.body.dataset.lastLatencyMs ?? null")
                if ms is not None:
                    return float(ms)
                await asyncio.sleep(0.1)
            return None
        finally:
            await browser.close()


def device_turn(url: str, wav: Path) -> float | None:
    """One auto-mode turn of ``xiaozhi-device --wav``; its end-of-speech -> first-audio figure in ms."""
    out = subprocess.run(
        [sys.executable, "-m", "shared.client", "--url", url, "--wav", str(wav), "--json", "--log-level", "WARNING"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)["latency_ms"]["first_audio"]
    return None


async def measure(a: argparse.Namespace) -> dict[str, Any]:
    speech = speak_16k(a.question)
    work = Path(tempfile.mkdtemp(prefix="talk-latency-"))
    plain, padded = work / "speech.wav", work / "mic.wav"
    save_wav(plain, speech, 16000)  # the simulator adds its own trailing silence
    lead, tail = np.zeros(int(16000 * 0.8), np.int16), np.zeros(16000 * 3, np.int16)
    save_wav(padded, np.concatenate([lead, speech, tail]), 16000)  # the fake microphone's file
    edge = spawn_edge("talk-latency", {"XIAOZHI__CACHE__ENABLED": "false"})
    page_ms: list[float] = []
    device_ms: list[float] = []
    try:
        for i in range(a.repeats):
            p = await page_turn(edge.http, padded)
            d = await asyncio.to_thread(device_turn, edge.url, plain)
            print(f"round {i + 1}: page {p} ms, xiaozhi-device {d} ms", flush=True)
            if p is not None:
                page_ms.append(p)
            if d is not None:
                device_ms.append(d)
    finally:
        stop_edge(edge)
    result: dict[str, Any] = {
        "question": a.question,
        "repeats": a.repeats,
        "page_ms": page_ms,
        "device_ms": device_ms,
        "page_median_ms": statistics.median(page_ms) if page_ms else None,
        "device_median_ms": statistics.median(device_ms) if device_ms else None,
    }
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--question", default="What is the capital of France?")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    res = asyncio.run(measure(args))
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    sys.exit(0 if res["page_ms"] and res["device_ms"] else 1)
