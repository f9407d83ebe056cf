"""Whisper's encoder window: the 30 s window faster-whisper always uses vs one that follows the utterance.

    .venv/bin/python -m bench.asr_window [--threads 1,2] [--repeats 3] [--json out.json]

A bank of Piper-spoken utterances (commands, questions, one long sentence; cached on disk by
``shared.client.speech``) is transcribed by ``WhisperAsr`` with ``encoder_window="full"`` and with
``"utterance"``, one model instance per mode. Per utterance: the median compute ms of each mode and
the word error rate of each against the reference text (numbers normalised, so "30" == "thirty").
Clips get the 300 ms pre-roll and 550 ms trailing silence a VAD cut has (``--raw``: bare clips).
Window fallbacks (loops redone with the 30 s window) are counted in the utterance mode's time.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time

import numpy as np

from edge_node.language.numbers_en import TENS, UNITS

# Commands, questions and a few longer sentences, as a device hears them (the last is ~7 s).
UTTERANCES = [
    "Stop.",
    "Turn on the kitchen light.",
    "What time is it?",
    "Set the volume to thirty.",
    "Play some music.",
    "Turn off all the lights in the bedroom.",
    "What is the capital of France?",
    "How far away is the moon?",
    "What is the weather like in Berlin tomorrow?",
    "Set a timer for ten minutes and play some music in the living room.",
    "Can you tell me how many days are left until the end of the month?",
    "Remind me to call my mother about the birthday dinner on Saturday evening, and tell me tomorrow's weather.",
]

_PUNCT = re.compile(r"[^\w\s']+")


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation; spelled-out numbers ("twenty five") become digits ("25")."""
    raw = _PUNCT.sub(" ", text.lower().replace("-", " ")).split()
    words = [w.strip("'") for w in raw if w.strip("'")]
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in TENS or (w in UNITS and w != "oh"):
            value = 0
            if w in TENS:
                value = TENS[w]
                i += 1
                if i < len(words) and words[i] in UNITS and 0 < UNITS[words[i]] < 10:
                    value += UNITS[words[i]]
                    i += 1
            else:
                value = UNITS[w]
                i += 1
            if i < len(words) and words[i] == "hundred":
                value *= 100
                i += 1
            out.append(str(value))
            continue
        out.append(w)
        i += 1
    return out


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level Levenshtein distance / reference length (both normalised)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / len(ref)


# What the node's VAD hands to ASR: its pre-roll before the speech (vad.preroll_ms) and the silence
# that ended the utterance (vad.min_silence_ms), here as quiet noise (about -64 dBFS) like a microphone's.
LEAD_MS = 300
TAIL_MS = 550
NOISE_RMS = 20


def vad_shaped(pcm: np.ndarray, seed: int = 0) -> np.ndarray:
    """``pcm`` with the pre-roll and trailing silence a VAD-cut utterance has (deterministic noise)."""
    rng = np.random.default_rng(seed)
    lead = rng.normal(0, NOISE_RMS, LEAD_MS * 16).astype(np.int16)
    tail = rng.normal(0, NOISE_RMS, TAIL_MS * 16).astype(np.int16)
    return np.concatenate([lead, np.asarray(pcm, dtype=np.int16), tail])


def utterance_bank(texts: list[str] | None = None, raw: bool = False) -> list[tuple[str, np.ndarray]]:
    """(reference text, int16 16 kHz speech) pairs: Piper speech cached on disk, VAD-shaped unless ``raw``."""
    from shared.client.speech import synthesize_16k

    bank = []
    for i, text in enumerate(texts or UTTERANCES):
        pcm = synthesize_16k(text)
        bank.append((text, pcm if raw else vad_shaped(pcm, seed=i)))
    return bank


def measure(threads: int, repeats: int, bank: list[tuple[str, np.ndarray]]) -> dict:
    from shared.engines.asr import WhisperAsr
    from shared.engines.config import AsrConfig

    engines = {mode: WhisperAsr(AsrConfig(threads=threads, encoder_window=mode)) for mode in ("full", "utterance")}
    for engine in engines.values():  # first calls pay for lazy initialisation
        engine.transcribe(bank[0][1])
        engine.window_fallbacks = 0
    rows = []
    for text, pcm in bank:
        row: dict = {"text": text, "audio_s": round(pcm.size / 16000, 2)}
        for mode, engine in engines.items():
            times, hyp = [], ""
            for _ in range(repeats):
                started = time.perf_counter()
                hyp = engine.transcribe(pcm).text
                times.append((time.perf_counter() - started) * 1000)
            row[mode] = {"ms": round(statistics.median(times), 1), "wer": round(wer(text, hyp), 3), "hyp": hyp}
        rows.append(row)
    summary = {
        mode: {
            "median_ms": round(statistics.median(r[mode]["ms"] for r in rows), 1),
            "mean_wer": round(statistics.fmean(r[mode]["wer"] for r in rows), 4),
        }
        for mode in engines
    }
    summary["speed_ratio"] = round(summary["full"]["median_ms"] / summary["utterance"]["median_ms"], 2)
    summary["window_fallbacks"] = engines["utterance"].window_fallbacks
    return {"threads": threads, "repeats": repeats, "rows": rows, "summary": summary}


def print_table(result: dict) -> None:
    print(f"\nthreads={result['threads']} repeats={result['repeats']} (median ms per utterance)")
    header = f"{'audio s':>7} {'full ms':>8} {'utt ms':>7} {'ratio':>5} {'WER full':>8} {'WER utt':>7}"
    print(f"{header}  text -> utterance-window hypothesis")
    for r in result["rows"]:
        full, utt = r["full"], r["utterance"]
        print(
            f"{r['audio_s']:7.2f} {full['ms']:8.0f} {utt['ms']:7.0f} {full['ms'] / utt['ms']:5.2f} "
            f"{full['wer']:8.2f} {utt['wer']:7.2f}  {r['text'][:50]!r} -> {utt['hyp'][:50]!r}"
        )
    s = result["summary"]
    print(
        f"median: full {s['full']['median_ms']:.0f} ms, utterance {s['utterance']['median_ms']:.0f} ms, "
        f"ratio {s['speed_ratio']:.2f}x; mean WER full {s['full']['mean_wer']:.3f}, "
        f"utterance {s['utterance']['mean_wer']:.3f}; window fallbacks {s['window_fallbacks']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1", help="comma-separated CTranslate2 thread counts, e.g. 1,2")
    parser.add_argument("--repeats", type=int, default=3, help="runs per utterance and mode (the median is kept)")
    parser.add_argument("--raw", action="store_true", help="bare Piper clips, without VAD pre-roll and tail")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    bank = utterance_bank(raw=args.raw)
    results = [measure(int(t), max(1, args.repeats), bank) for t in args.threads.split(",") if t.strip()]
    for result in results:
        print_table(result)
    if args.json:
        machine = {"python": platform.python_version(), "platform": platform.platform()}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"machine": machine, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
