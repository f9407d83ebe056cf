"""Create the node's caches from ``cfg.cache``."""

from __future__ import annotations

import os
from pathlib import Path

from edge_node.cache.answers import AnswerCache
from edge_node.cache.disk import DiskCache
from edge_node.cache.lru import LruCache
from edge_node.cache.tiered import TieredCache
from edge_node.config import EdgeConfig

MB = 1024 * 1024
# Share of each budget that goes to answers: text is small, audio is what fills a cache.
ANSWER_SHARE = 1 / 8


def cache_dir(cfg: EdgeConfig) -> Path:
    """``cache.dir``, or ``$XDG_CACHE_HOME`` (else ``~/.cache``) + ``/xiaozhi-edge``."""
    if cfg.cache.dir:
        return Path(cfg.cache.dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xiaozhi-edge"


def build_caches(cfg: EdgeConfig) -> tuple[TieredCache | None, AnswerCache | None]:
    """(TTS cache, answer cache); both None when ``cache.enabled`` is false."""
    c = cfg.cache
    if not c.enabled:
        return None, None
    root = cache_dir(cfg)
    l1, l3 = c.l1_max_mb * MB, c.l3_max_mb * MB
    tts = TieredCache(
        LruCache(int(l1 * (1 - ANSWER_SHARE))),
        DiskCache(root / "tts", int(l3 * (1 - ANSWER_SHARE))) if l3 > 0 else None,
        "tts",
    )
    answers = AnswerCache(
        LruCache(int(l1 * ANSWER_SHARE)),
        DiskCache(root / "answer", int(l3 * ANSWER_SHARE)) if l3 > 0 else None,
        c.answer_ttl_s,
    )
    return tts, answers
