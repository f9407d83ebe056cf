"""The answer cache: question -> full reply text, with the time it was stored.

A value is ``f64 stored-at (unix seconds) | UTF-8 text``. An entry older than ``ttl_s`` (or one
stored in the future, a clock that jumped) is a miss and is removed, so a fact that changed is
relearnt within the TTL even for questions the policy let through.

With a ``SemanticIndex`` (``semantic.py``), an exact miss asks the index for a cached question that
means the same, and that question's entry answers: one store, two ways in.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_node.cache.disk import DiskCache
from edge_node.cache.keys import answer_key
from edge_node.cache.lru import LruCache
from edge_node.cache.semantic import SemanticIndex, SemanticMatch
from edge_node.cache.tiered import TieredCache

_STAMP = struct.Struct("<d")
# A stored-at this far ahead of the clock is accepted (clock slew between writer and reader).
_FUTURE_SLACK_S = 300.0


def encode_answer(text: str, stored_at: float | None = None) -> bytes:
    return _STAMP.pack(time.time() if stored_at is None else stored_at) + text.encode("utf-8")


def decode_answer(value: bytes) -> tuple[float, str]:
    """(stored-at, text); ValueError when the value is not an answer."""
    if len(value) < _STAMP.size:
        raise ValueError("answer entry: truncated")
    (stored_at,) = _STAMP.unpack_from(value)
    return stored_at, value[_STAMP.size :].decode("utf-8")


@dataclass(slots=True)
class FoundAnswer:
    text: str
    via: SemanticMatch | None = None  # None: the question itself was cached


class AnswerCache:
    def __init__(self, l1: LruCache, l3: DiskCache | None, ttl_s: float, semantic: SemanticIndex | None = None) -> None:
        self.ttl_s = ttl_s
        self.semantic = semantic
        # Called with (question, language, vector) after a local answer is indexed: the fleet's share.
        self.on_indexed: Callable[[str, str, np.ndarray], None] | None = None
        # Expiry is checked at each level, so an expired entry is counted (and removed) as a miss.
        self.tiered = TieredCache(l1, l3, "answer", validate=self._fresh)

    def _fresh(self, value: bytes) -> bool:
        stored_at, _ = decode_answer(value)
        age = time.time() - stored_at
        return -_FUTURE_SLACK_S <= age <= self.ttl_s

    async def get(self, question: str, language: str = "en") -> str | None:
        found = await self.find(question, language)
        return found.text if found is not None else None

    async def find(self, question: str, language: str = "en") -> FoundAnswer | None:
        """The cached answer to ``question``, or to a question the semantic index says means the same."""
        text = await self._text(question, language)
        if text is not None:
            return FoundAnswer(text)
        if self.semantic is None:
            return None
        match = await self.semantic.lookup(question, language)
        if match is None:
            return None
        text = await self._text(match.question, language)
        return FoundAnswer(text, match) if text is not None else None

    async def _text(self, question: str, language: str) -> str | None:
        value = await self.tiered.get(answer_key(question, language))
        if value is None:
            return None
        text = decode_answer(value)[1]
        return text or None

    def contains(self, question: str, language: str = "en") -> bool:
        """A fresh answer for ``question`` is in memory (L1). Not counted as a lookup."""
        value = self.tiered.l1.peek(answer_key(question, language))
        try:
            return value is not None and self._fresh(value)
        except ValueError:
            return False

    async def put(self, question: str, text: str, language: str = "en") -> None:
        text = text.strip()
        if not text:
            return
        await self.tiered.put(answer_key(question, language), encode_answer(text))
        if self.semantic is not None:
            vector = await self.semantic.add(question, language)
            if self.on_indexed is not None:
                self.on_indexed(question, language, vector)

    def stats(self) -> dict[str, Any]:
        out = self.tiered.stats()
        if self.semantic is not None:
            out["semantic"] = self.semantic.stats()
        return out

    def close(self) -> None:
        self.tiered.close()
        if self.semantic is not None:
            self.semantic.close()
