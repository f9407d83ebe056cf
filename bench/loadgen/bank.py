"""The speech bank: every phrase of the mix synthesised once (cached on disk): English by Piper,
Mandarin (phrases with Han characters) by the bundled Chinese voice in its own environment.

Built before the run starts: synthesis is CPU work that must never run on the load generator's
event loop, which paces hundreds of uplink streams.
"""

from __future__ import annotations

import sys

import numpy as np

from bench.loadgen.mix import Mix
from shared.client.speech import RATE, is_mandarin, synthesize_16k, synthesize_zh_16k

__all__ = ["build_bank"]


def build_bank(mix: Mix, verbose: bool = True) -> dict[str, np.ndarray]:
    """phrase -> int16 mono 16 kHz speech, from the on-disk cache, Piper or the Chinese voice."""
    bank: dict[str, np.ndarray] = {}
    phrases = mix.phrases()
    chinese = [p for p in phrases if is_mandarin(p)]
    if chinese:  # one child process speaks all the Mandarin phrases not cached yet
        bank.update(zip(chinese, synthesize_zh_16k(chinese), strict=True))
    tty = sys.stderr.isatty()
    for i, phrase in enumerate(phrases, 1):
        if phrase not in bank:
            bank[phrase] = synthesize_16k(phrase)
        if verbose and tty:
            print(f"\rspeech bank: {i}/{len(phrases)}", end="", file=sys.stderr, flush=True)
    if verbose:
        seconds = sum(p.size for p in bank.values()) / RATE
        print(f"\rspeech bank: {len(bank)} phrases, {seconds:.0f} s of speech", file=sys.stderr, flush=True)
    return bank
