"""Timing engines: ASR, LLM and TTS that sleep the measured time of the real models.

Why they exist: the fleet run (bench/fleet) puts a thousand devices on several edge nodes on one
2-core machine. The edges' own code (WebSocket protocol, sessions, VAD, Opus, routing, pools,
caches, the cloud link, heartbeats) runs for real, but the models cannot run for that many
devices here. A timing engine holds its worker thread for as long as the real model took on the
measured hardware (a profile written by ``xiaozhi-fleet calibrate`` from ``xiaozhi-eval``'s
figures) without using the CPU, so the pools queue, the first-clause priority and the turn
budget behave as they would, and every report names the engines as timing engines.

What they cannot do is understand: the timing ASR does not recognise the words, it draws a
transcript from the profile's phrase list (weighted like the load generator's mix), so the
routes (intent, cache, local LLM, cloud) are taken in the mix's proportions. Never configure
them for devices people talk to: an edge with a timing profile logs a warning at start and
reports ``engines: timing`` in its heartbeat and ``/ready``.

FAULT INJECTION (tests only, off by default): a profile's ``faults`` section makes the timing LLM
fail the way a crashing model does -- an exception on its worker thread in the middle of a reply,
and optionally an instance that stays broken afterwards -- so the fault tests (tests/faults) can
check what a device hears and that the pool replaces the broken instance.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.engines.asr import AsrResult
from shared.engines.errors import ModelError

__all__ = ["FaultInjection", "InjectedFault", "TimingAsr", "TimingLlm", "TimingProfile", "TimingTts", "load_profile"]

SAMPLE_RATE_IN = 16000
TTS_SAMPLE_RATE = 22050  # the bundled Piper voice's rate: the resampling and Opus work stay the same


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AsrTiming(_Strict):
    # seconds = base_s + per_audio_s * seconds of speech (Whisper's utterance window is at least
    # 8 s long, so for short commands the time hardly depends on their length: per_audio_s ~ 0).
    base_s: float = Field(ge=0)
    per_audio_s: float = Field(0.0, ge=0)


class LlmTiming(_Strict):
    first_token_s: float = Field(ge=0)
    per_token_s: float = Field(ge=0)
    # What the stand-in says: its words are the tokens (as many as the model's mean reply).
    reply: str = Field(min_length=1)


class TtsTiming(_Strict):
    # seconds of synthesis = base_s + per_audio_s * seconds of speech produced
    base_s: float = Field(0.0, ge=0)
    per_audio_s: float = Field(ge=0)
    chars_per_s: float = Field(gt=0)  # the voice's speaking rate: how long a sentence sounds


class Transcript(_Strict):
    text: str = Field(min_length=1)
    weight: float = Field(gt=0)


class FaultInjection(_Strict):
    """FAULT INJECTION for tests, off by default: the timing LLM fails like a crashing model.

    Triggered by the text of the turn rather than by a call count, so a test knows which device's
    turn fails while other devices' turns run on the same pool at the same time."""

    # The LLM raises InjectedFault on its worker thread when the user's message contains this text
    # (empty: never), after streaming ``llm_raise_after_words`` words of its reply.
    llm_raise_on: str = ""
    llm_raise_after_words: int = Field(3, ge=0)
    # The instance that raised keeps raising on every later call, like a model whose state a crash
    # corrupted, until its pool worker replaces it (StagePool's restart).
    llm_stays_broken: bool = False


class InjectedFault(RuntimeError):
    """Raised by a timing engine on purpose (``faults`` in its profile)."""


class TimingProfile(_Strict):
    """A calibrated profile: where the figures came from and the per-stage times."""

    source: str = Field(min_length=1)  # e.g. "xiaozhi-eval docs/perf/2026-11-25/eval.json (2-core x86_64)"
    asr: AsrTiming
    llm: LlmTiming
    tts: TtsTiming
    transcripts: list[Transcript] = Field(min_length=1)
    seed: int = 7
    faults: FaultInjection = Field(default_factory=FaultInjection)


def load_profile(path: str | Path) -> TimingProfile:
    """Read and validate a profile; ModelError (like a missing model file) says what is wrong."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"timing profile not readable: {p}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ModelError(f"timing profile {p} is not YAML: {exc}") from exc
    try:
        return TimingProfile.model_validate(data)
    except ValidationError as exc:
        raise ModelError(f"timing profile {p} is invalid: {exc}") from exc


class TimingAsr:
    """Sleeps the measured ASR time, then returns a transcript drawn from the profile's phrases."""

    def __init__(self, profile: TimingProfile, index: int = 0) -> None:
        self.timing = profile.asr
        self._texts = [t.text for t in profile.transcripts]
        self._weights = [t.weight for t in profile.transcripts]
        self._rng = random.Random(profile.seed * 1000 + index)  # one instance per worker thread
        self.name = "timing:asr"

    def transcribe(self, pcm: np.ndarray) -> AsrResult:
        audio_s = pcm.size / SAMPLE_RATE_IN
        seconds = self.timing.base_s + self.timing.per_audio_s * audio_s
        time.sleep(seconds)
        text = self._rng.choices(self._texts, self._weights)[0]
        return AsrResult(text, "en", audio_s * 1000.0, seconds * 1000.0, avg_logprob=None)


class TimingLlm:
    """Streams the profile's reply word by word at the measured first-token and per-token times."""

    def __init__(self, profile: TimingProfile) -> None:
        self.timing = profile.llm
        self._words = self.timing.reply.split()
        self.name = "timing:llm"
        self.faults = profile.faults
        self.broken = False  # fault injection: an earlier injected fault left this instance unusable

    def stream_chat(
        self,
        messages: list[dict[str, str]],
        max_tokens: int | None = None,
        cancel: threading.Event | None = None,
        tools: list[dict] | None = None,
    ) -> Iterator[str]:
        """Same contract as LlamaLlm.stream_chat: stops within one token once ``cancel`` is set."""
        cancel = cancel or threading.Event()
        if self.broken:
            raise InjectedFault("fault injection: this LLM instance is broken since an earlier fault")
        limit = len(self._words) if max_tokens is None else min(max_tokens, len(self._words))
        trigger = self.faults.llm_raise_on
        asked = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        fail_at = self.faults.llm_raise_after_words if trigger and trigger in asked else None
        for i, word in enumerate(self._words[:limit]):
            if i == fail_at:
                self.broken = self.faults.llm_stays_broken
                raise InjectedFault(f"fault injection: LLM failed after {i} words (asked {trigger!r})")
            if cancel.wait(self.timing.first_token_s if i == 0 else self.timing.per_token_s):
                return
            yield word if i == 0 else " " + word


class TimingTts:
    """Sleeps the measured synthesis time and returns a quiet tone as long as the speech would be.

    The tone, not silence, so the Opus encoder downstream does the work it does for speech."""

    sample_rate = TTS_SAMPLE_RATE

    def __init__(self, profile: TimingProfile) -> None:
        self.timing = profile.tts
        self.name = "timing:tts"

    def synthesize(self, text: str) -> np.ndarray:
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        audio_s = len(text.strip()) / self.timing.chars_per_s
        time.sleep(self.timing.base_s + self.timing.per_audio_s * audio_s)
        n = int(audio_s * self.sample_rate)
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        tone = 0.05 * np.sin(2 * math.pi * 220.0 * t) * (1.0 + 0.5 * np.sin(2 * math.pi * 3.0 * t))
        return (tone * 32767).astype(np.int16)
