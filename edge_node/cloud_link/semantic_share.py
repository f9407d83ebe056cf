"""The semantic index, shared by the fleet through the L2 answer bucket.

An answer one edge stored is in the hub's answer bucket under its exact key; for another edge to
find it by meaning, that edge's index must hold the question too. So each locally indexed question
is also written to the same bucket under ``sem.<language>.<id>`` (the question and its vector, float16,
~0.8 KB), and every edge watches ``sem.>``: the initial values fill a fresh node's index, later ones
arrive as other edges store answers. A remote entry costs no embedding here (the vector comes with it),
and the bucket's TTL expires it with the answer. With the link down, nothing is shared and the local
index keeps working.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from typing import Any

import nats.errors
import numpy as np

from edge_node.cache.keys import normalize_question
from edge_node.cache.semantic import SemanticIndex
from edge_node.cloud_link.kv_cache import KvCacheLevel
from edge_node.cloud_link.kv_watch import KvWatch
from edge_node.engines.embedder import DIM

log = logging.getLogger(__name__)

PREFIX = "sem"
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def entry_key(question: str, language: str) -> str:
    digest = hashlib.sha256(normalize_question(question).encode("utf-8")).hexdigest()[:40]
    return f"{PREFIX}.{language}.{digest}"


def encode_entry(question: str, language: str, vector: np.ndarray) -> bytes:
    packed = base64.b64encode(vector.astype(np.float16).tobytes()).decode("ascii")
    return json.dumps({"q": question, "l": language, "v": packed}, ensure_ascii=False).encode("utf-8")


def decode_entry(value: bytes) -> tuple[str, str, np.ndarray]:
    """(question, language, unit vector); ValueError for anything else (another edge's bug, a stray key)."""
    try:
        record = json.loads(value)
        question, language = str(record["q"]), str(record["l"])
        vector = np.frombuffer(base64.b64decode(record["v"]), dtype=np.float16).astype(np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"semantic entry: {exc!r}") from exc
    if vector.shape != (DIM,) or not _LANGUAGE.match(language) or not question.strip():
        raise ValueError("semantic entry: wrong shape, language or empty question")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 0.5:
        raise ValueError("semantic entry: not a unit vector")
    return question, language, vector / norm


class SemanticShare(KvWatch):
    task_name = "semantic-share"
    pause_after_watch_s = 1.0

    def __init__(self, level: KvCacheLevel, index: SemanticIndex, watch: bool = True) -> None:
        super().__init__(level.link, watch)
        self.level = level
        self.index = index
        self.received = 0
        self.rejected = 0
        self._pending: set[asyncio.Task[Any]] = set()

    def publish(self, question: str, language: str, vector: np.ndarray) -> None:
        """Share a locally indexed question, in the background (never holds up a turn)."""
        if not _LANGUAGE.match(language):
            return
        task = asyncio.get_running_loop().create_task(
            self.level.put_raw(entry_key(question, language), encode_entry(question, language, vector))
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _watch_once(self) -> None:
        kv = await self.level._bucket()  # noqa: SLF001 - the level owns the bucket handle
        if kv is None:
            raise RuntimeError("answer bucket not reachable yet")
        watcher = await kv.watch(f"{PREFIX}.>")
        try:
            while not self._restart.is_set():
                try:
                    entry = await watcher.updates(timeout=30.0)
                except nats.errors.TimeoutError:
                    continue
                if entry is None or entry.value is None or entry.operation in ("DEL", "PURGE"):
                    continue
                try:
                    question, language, vector = decode_entry(entry.value)
                except ValueError as exc:
                    self.rejected += 1
                    log.warning("semantic share: entry %s ignored: %s", entry.key, exc)
                    continue
                await self.index.add(question, language, vector)
                self.received += 1
        finally:
            await watcher.stop()
