"""The node's caches, made from ``cfg.cache``: TTS audio and reusable answers, L1 in memory and L3 on
disk, with the fleet's L2 (KV buckets in the hub) behind them once the cloud link exists."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_node.cache.answers import AnswerCache
from edge_node.cache.disk import DiskCache
from edge_node.cache.lru import LruCache
from edge_node.cache.semantic import SemanticIndex
from edge_node.cache.tiered import TieredCache
from edge_node.config import CacheConfig
from shared.nats.subjects import CACHE_BUCKETS

if TYPE_CHECKING:
    from edge_node.cloud_link.link import CloudLink
    from edge_node.cloud_link.semantic_share import SemanticShare

MB = 1024 * 1024
# Share of each budget that goes to answers: text is small, audio is what fills a cache.
ANSWER_SHARE = 1 / 8


def cache_dir(cfg: CacheConfig) -> Path:
    """``cache.dir``, or ``$XDG_CACHE_HOME`` (else ``~/.cache``) + ``/xiaozhi-edge``."""
    if cfg.dir:
        return Path(cfg.dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xiaozhi-edge"


@dataclass
class Caches:
    """The TTS cache (ready Opus packets) and the answer cache; None where ``cache.enabled`` is false."""

    tts: TieredCache | None = None
    answers: AnswerCache | None = None
    semantic_share: SemanticShare | None = None

    @classmethod
    def build(cls, cfg: CacheConfig) -> Caches:
        if not cfg.enabled:
            return cls()
        root = cache_dir(cfg)
        l1, l3 = cfg.l1_max_mb * MB, cfg.l3_max_mb * MB
        tts = TieredCache(
            LruCache(int(l1 * (1 - ANSWER_SHARE))),
            DiskCache(root / "tts", int(l3 * (1 - ANSWER_SHARE))) if l3 > 0 else None,
            "tts",
        )
        semantic = None
        if cfg.semantic.enabled:
            from edge_node.engines.embedder import shared_embedder  # the model loads only when used

            sem = cfg.semantic
            semantic = SemanticIndex(shared_embedder(sem.threads), sem.threshold, sem.max_entries)
        answers = AnswerCache(
            LruCache(int(l1 * ANSWER_SHARE)),
            DiskCache(root / "answer", int(l3 * ANSWER_SHARE)) if l3 > 0 else None,
            cfg.answer_ttl_s,
            semantic,
        )
        return cls(tts, answers)

    def share(self, link: CloudLink, cfg: CacheConfig) -> None:
        """Add the fleet-wide L2 level (KV buckets in the hub) behind the local L1 and L3."""
        from edge_node.cloud_link.kv_cache import KvCacheLevel

        if self.tts is not None:
            self.tts.l2 = KvCacheLevel(link, CACHE_BUCKETS["tts"], cfg.l2_ttl_s, cfg.l2_timeout_s)
        if self.answers is not None:
            level = KvCacheLevel(link, CACHE_BUCKETS["answer"], cfg.l2_ttl_s, cfg.l2_timeout_s)
            self.answers.tiered.l2 = level
            if self.answers.semantic is not None and cfg.semantic.share:
                from edge_node.cloud_link.semantic_share import SemanticShare

                self.semantic_share = SemanticShare(level, self.answers.semantic)
                self.answers.on_indexed = self.semantic_share.publish

    def stats(self) -> dict[str, Any]:
        """Hits, misses and ratios per cache and level (``GET /stats``, the load generator)."""
        out: dict[str, Any] = {}
        if self.tts is not None:
            out["tts"] = self.tts.stats()
        if self.answers is not None:
            out["answer"] = self.answers.stats()
        return out

    def close(self) -> None:
        for cache in (self.tts, self.answers):
            if cache is not None:
                cache.close()
