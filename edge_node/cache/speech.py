"""TTS behind its cache: a sentence the node has said before is served as the packets it sent then.

A hit needs no TTS worker at all, so it is served even when the TTS queue is full; a miss is
synthesised on the pool and stored without waiting for the disk write.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from edge_node.cache.keys import tts_key
from edge_node.cache.packets import pack_packets, unpack_packets
from edge_node.cache.tiered import TieredCache
from edge_node.engines.pool import NORMAL
from edge_node.engines.runtime import SpeechAudio

__all__ = ["CachedSynthesis"]

log = logging.getLogger(__name__)


class Synthesize(Protocol):
    """text, sample rate, frame ms, priority, deadline, language -> the device's packets."""

    def __call__(
        self,
        text: str,
        sample_rate: int,
        frame_ms: int,
        priority: int = NORMAL,
        deadline: float | None = None,
        language: str = "en",
    ) -> Awaitable[SpeechAudio]: ...


class CachedSynthesis:
    """``synthesize`` with the TTS cache (None: no cache) in front; the language and its voice
    (``voice(language)``: the voice's name) key the entries."""

    def __init__(self, synthesize: Synthesize, cache: TieredCache | None, voice: Callable[[str], str]) -> None:
        self._synthesize = synthesize
        self._cache = cache
        self._voice = voice

    async def __call__(
        self,
        text: str,
        sample_rate: int,
        frame_ms: int,
        priority: int = NORMAL,
        deadline: float | None = None,
        language: str = "en",
    ) -> SpeechAudio:
        cache = self._cache
        if cache is None:
            return await self._synthesize(text, sample_rate, frame_ms, priority, deadline, language)
        key = tts_key(self._voice(language), text, sample_rate, frame_ms, language)
        packed = await cache.get(key)
        if packed is not None:
            try:
                return SpeechAudio(text, unpack_packets(packed), 0.0)
            except ValueError as exc:
                log.warning("tts cache: unreadable entry for %r dropped: %s", text[:40], exc)
                cache.l1.delete(key)
        audio = await self._synthesize(text, sample_rate, frame_ms, priority, deadline, language)
        if audio.packets:
            cache.put_nowait(key, pack_packets(audio.packets))  # the disk write does not delay the audio
        return audio
