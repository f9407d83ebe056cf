"""The semantic layer of the answer cache: a question that means the same as a cached one is a hit.

The exact answer cache matches a question up to case and punctuation; this index finds the cached
question nearest in meaning (sentence embeddings, ``engines/embedder.py``) and accepts it only when
both keys turn: the cosine similarity is at least ``threshold`` **and** the two questions' slots
agree (``slots.py``: same things, attributes, numbers, negation). The answer itself stays in the
exact cache under the matched question's key, so it has one TTL, one L3 file and one L2 entry.

Everything the index holds (vectors, questions, slots) is touched only on its own thread: an
embedding is 20-40 ms of CPU, a search over 20,000 entries a few ms, and neither may run on the
event loop. Entries are per language, at most ``max_entries`` each, the oldest replaced first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from edge_node import metrics
from edge_node.cache.keys import normalize_question
from edge_node.cache.slots import Slots, question_slots
from edge_node.engines.embedder import DIM, Embedder

log = logging.getLogger(__name__)
T = TypeVar("T")

# Candidates looked at, best first: the nearest may fail the slot check while a paraphrase just
# below it passes ("largest planet" stored next to "smallest planet").
TOP_K = 4


@dataclass(slots=True)
class SemanticMatch:
    question: str
    similarity: float


@dataclass
class _Shelf:
    """One language's entries: row i is ``questions[i]``, ``slots[i]``, ``vectors[i]``."""

    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), dtype=np.float32))
    questions: list[str] = field(default_factory=list)
    slots: list[Slots] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # normalised question -> row
    next_row: int = 0  # where the next entry goes once the shelf is full (oldest first)


class SemanticIndex:
    def __init__(self, embedder: Embedder, threshold: float, max_entries: int = 20_000) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.max_entries = max_entries
        self._shelves: dict[str, _Shelf] = {}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="semantic")
        self.counts = {"hit": 0, "miss": 0, "below_threshold": 0, "slots_differ": 0}
        self.embed_ms: list[float] = []  # the last few, for stats()

    # -- on the index's thread -------------------------------------------------------------------
    def _embed(self, text: str) -> np.ndarray:
        started = time.perf_counter()
        vector = self.embedder.embed(text)
        elapsed = time.perf_counter() - started
        metrics.SEMANTIC_EMBED_SECONDS.observe(elapsed)
        self.embed_ms = [*self.embed_ms[-99:], elapsed * 1000]
        return vector

    def _add(self, question: str, language: str, vector: np.ndarray | None) -> np.ndarray:
        if vector is None:
            vector = self._embed(question)
        shelf = self._shelves.setdefault(language, _Shelf())
        norm = normalize_question(question)
        row = shelf.rows.get(norm)
        if row is None:
            if len(shelf.questions) < self.max_entries:
                row = len(shelf.questions)
                shelf.questions.append(question)
                shelf.slots.append(question_slots(question))
                if row >= len(shelf.vectors):  # grow by doubling: one copy per doubling, not per entry
                    grown = np.zeros((max(64, 2 * len(shelf.vectors)), DIM), dtype=np.float32)
                    grown[: len(shelf.vectors)] = shelf.vectors
                    shelf.vectors = grown
            else:
                row = shelf.next_row
                shelf.next_row = (row + 1) % self.max_entries
                del shelf.rows[normalize_question(shelf.questions[row])]
                shelf.questions[row] = question
                shelf.slots[row] = question_slots(question)
            shelf.rows[norm] = row
        shelf.vectors[row] = vector
        metrics.SEMANTIC_ENTRIES.labels(language=language).set(len(shelf.questions))
        return vector

    def candidates(self, question: str, language: str) -> list[tuple[str, float, bool]]:
        """The nearest cached questions, best first: (question, similarity, slots agree). On the
        index's thread only (``lookup``; the evaluator calls it through ``run``)."""
        shelf = self._shelves.get(language)
        if shelf is None or not shelf.questions:
            return []
        vector = self._embed(question)
        n = len(shelf.questions)
        sims = shelf.vectors[:n] @ vector
        k = min(TOP_K, n)
        best = np.argpartition(-sims, k - 1)[:k] if n > k else np.arange(n)
        slots = question_slots(question)
        return [
            (shelf.questions[row], float(sims[row]), shelf.slots[row].agrees(slots))
            for row in sorted(best, key=lambda r: -sims[r])
        ]

    def _lookup(self, question: str, language: str) -> tuple[SemanticMatch | None, str]:
        outcome = "miss"
        for cached, similarity, agrees in self.candidates(question, language):
            if similarity < self.threshold:
                return None, "slots_differ" if outcome == "slots_differ" else "below_threshold"
            if agrees:
                return SemanticMatch(cached, similarity), "hit"
            outcome = "slots_differ"
        return None, outcome

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the index's thread (the evaluator's sweeps)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    # -- from the event loop ---------------------------------------------------------------------
    async def lookup(self, question: str, language: str) -> SemanticMatch | None:
        """The cached question that ``question`` may be answered from, or None."""
        loop = asyncio.get_running_loop()
        match, outcome = await loop.run_in_executor(self._thread, self._lookup, question, language)
        self.counts["hit" if match else "miss"] += 1
        if outcome in ("below_threshold", "slots_differ"):
            self.counts[outcome] += 1
        metrics.SEMANTIC_LOOKUPS.labels(result=outcome).inc()
        return match

    async def add(self, question: str, language: str, vector: np.ndarray | None = None) -> np.ndarray:
        """Index ``question`` (embedded here unless ``vector`` is given: an entry another edge shared)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._add, question, language, vector)

    def __len__(self) -> int:
        return sum(len(shelf.questions) for shelf in self._shelves.values())

    def stats(self) -> dict[str, object]:
        lookups = self.counts["hit"] + self.counts["miss"]
        ms = sorted(self.embed_ms)
        return {
            **self.counts,
            "ratio": round(self.counts["hit"] / lookups, 4) if lookups else 0.0,
            "entries": len(self),
            "threshold": self.threshold,
            "embed_ms_median": round(ms[len(ms) // 2], 1) if ms else None,
        }

    def close(self) -> None:
        self._thread.shutdown(wait=True)
