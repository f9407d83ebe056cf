"""Phrases the node says without running TTS at turn time: the busy answer and the slow-down answer.

When the node is saturated, the answer that says so must not need the stage that is saturated; a
device over its turn rate must not cost TTS either. Both are synthesised and encoded once, at start.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_node.config import EdgeConfig
from edge_node.engines.runtime import Engines, SpeechAudio

__all__ = ["CannedSpeech"]


@dataclass(slots=True)
class CannedSpeech:
    """Ready Opus packets for the device's format; None: not prepared (the turn ends without words)."""

    busy: SpeechAudio | None = None
    slow_down: SpeechAudio | None = None

    @classmethod
    def prepare(cls, engines: Engines, cfg: EdgeConfig) -> CannedSpeech:
        """Synthesise and encode the phrases on the loading thread, before any device connects."""
        audio = cfg.audio
        rate, frame_ms = audio.downlink_sample_rate, audio.downlink_frame_ms
        busy = engines.synthesize_blocking(cfg.queues.busy_message, rate, frame_ms)
        slow_down = None
        if cfg.limits.turns_per_min > 0:
            slow_down = engines.synthesize_blocking(cfg.limits.slow_down_message, rate, frame_ms)
        return cls(busy, slow_down)
