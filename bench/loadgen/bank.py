"""The speech bank: every phrase of the mix synthesised once with Piper (cached on disk).

Built before the run starts: synthesis is CPU work that must never run on the load generator's
event loop, which paces hundreds of uplink streams.
"""

from __future__ import annotations

import sys

import numpy as np

from bench.loadgen.mix import Mix
from shared.client.speech import RATE, synthesize_16k

__all__ = ["build_bank"]


def build_bank(mix: Mix, verbose: bool = True) -> dict[str, np.ndarray]:
    """phrase -> int16 mono 16 kHz speech, from the on-disk cache or Piper."""
    bank: dict[str, np.ndarray] = {}
    phrases = mix.phrases()
    tty = sys.stderr.isatty()
    for i, phrase in enumerate(phrases, 1):
        bank[phrase] = synthesize_16k(phrase)
        if verbose and tty:
            print(f"\rspeech bank: {i}/{len(phrases)}", end="", file=sys.stderr, flush=True)
    if verbose:
        seconds = sum(p.size for p in bank.values()) / RATE
        print(f"\rspeech bank: {len(bank)} phrases, {seconds:.0f} s of speech", file=sys.stderr, flush=True)
    return bank
