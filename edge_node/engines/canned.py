"""Phrases the node says without running TTS at turn time: the busy answer, the slow-down answer and
the filler a queued turn hears while it waits.

When the node is saturated, the answer that says so must not need the stage that is saturated; a
device over its turn rate must not cost TTS either. Both are synthesised and encoded once, at start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_node.config import EdgeConfig
from edge_node.engines.runtime import Engines, SpeechAudio
from edge_node.language.phrases import say
from edge_node.language.speech_text import for_speech

__all__ = ["CannedSpeech"]


@dataclass(slots=True)
class CannedSpeech:
    """Ready Opus packets for the device's format; None: not prepared (the turn ends without words).

    ``busy`` and ``slow_down`` are the English (or the node's first language's) phrases; ``by_language``
    holds each served language's own, read through :meth:`for_language`.
    """

    busy: SpeechAudio | None = None
    slow_down: SpeechAudio | None = None
    by_language: dict[str, tuple[SpeechAudio | None, SpeechAudio | None]] = field(default_factory=dict)
    fillers: dict[str, SpeechAudio] = field(default_factory=dict)

    def for_language(self, language: str) -> tuple[SpeechAudio | None, SpeechAudio | None]:
        """(busy, slow down) in ``language``, else the default ones."""
        return self.by_language.get(language, (self.busy, self.slow_down))

    def busy_in(self, language: str) -> SpeechAudio | None:
        return self.for_language(language)[0]

    def slow_down_in(self, language: str) -> SpeechAudio | None:
        return self.for_language(language)[1]

    def filler_in(self, language: str) -> SpeechAudio | None:
        return self.fillers.get(language) or next(iter(self.fillers.values()), None)

    @classmethod
    def prepare(cls, engines: Engines, cfg: EdgeConfig) -> CannedSpeech:
        """Synthesise and encode the phrases on the loading thread, before any device connects: each
        served language's, in its own voice (English: the configured ``queues.busy_message`` and
        ``limits.slow_down_message``)."""
        audio = cfg.audio
        rate, frame_ms = audio.downlink_sample_rate, audio.downlink_frame_ms
        by_language: dict[str, tuple[SpeechAudio | None, SpeechAudio | None]] = {}
        fillers: dict[str, SpeechAudio] = {}
        for language in engines.languages:
            if language == "en":
                busy_text, slow_text = cfg.queues.busy_message, cfg.limits.slow_down_message
            else:
                busy_text, slow_text = say(language, "busy"), say(language, "slow_down")
            busy = engines.synthesize_blocking(for_speech(busy_text, language), rate, frame_ms, language)
            slow_down = None
            if cfg.limits.turns_per_min > 0:
                slow_down = engines.synthesize_blocking(for_speech(slow_text, language), rate, frame_ms, language)
            busy.text, slow_down_text = busy_text, slow_text
            if slow_down is not None:
                slow_down.text = slow_down_text
            by_language[language] = (busy, slow_down)
            if cfg.queues.filler_after_s > 0:
                filler_text = say(language, "filler")
                filler = engines.synthesize_blocking(for_speech(filler_text, language), rate, frame_ms, language)
                filler.text = filler_text
                fillers[language] = filler
        first = by_language.get("en") or next(iter(by_language.values()))
        return cls(first[0], first[1], by_language, fillers)
