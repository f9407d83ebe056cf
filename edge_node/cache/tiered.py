"""L1 (memory) in front of L3 (disk), used from the event loop.

``get`` looks in L1 on the loop (a dictionary lookup), then in L3 on the cache's own I/O thread
-- file I/O never runs on the event loop -- and promotes an L3 hit into L1. ``put`` stores in L1
at once and writes L3 on the I/O thread. Every lookup is counted per level in
``xiaozhi_edge_cache_requests_total`` and in ``stats()`` (what the load generator reads from
``GET /stats``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from edge_node import metrics
from edge_node.cache.disk import DiskCache
from edge_node.cache.lru import LruCache

log = logging.getLogger(__name__)


def _ratio(hits: int, misses: int) -> float:
    total = hits + misses
    return round(hits / total, 4) if total else 0.0


class TieredCache:
    def __init__(
        self,
        l1: LruCache,
        l3: DiskCache | None,
        name: str,
        validate: Callable[[bytes], bool] | None = None,
    ) -> None:
        """``validate`` (optional) rejects a stored value (expired, unreadable): it counts as a miss
        at the level where it was found and is removed from both levels."""
        self.l1 = l1
        self.l3 = l3
        self.name = name
        self._validate = validate
        # One thread: the disk cache's index is then only touched by it, and writes stay ordered.
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"cache-{name}")
        self._counts = {("l1", "hit"): 0, ("l1", "miss"): 0, ("l3", "hit"): 0, ("l3", "miss"): 0}

    def _count(self, level: str, result: str) -> None:
        self._counts[(level, result)] += 1
        metrics.CACHE_REQUESTS.labels(cache=self.name, level=level, result=result).inc()

    def _valid(self, value: bytes) -> bool:
        if self._validate is None:
            return True
        try:
            return self._validate(value)
        except Exception as exc:  # noqa: BLE001 - a bad entry is a miss, never an error for the turn
            log.warning("%s cache: entry failed validation: %r", self.name, exc)
            return False

    async def get(self, key: str) -> bytes | None:
        value = self.l1.get(key)
        if value is not None:
            if self._valid(value):
                self._count("l1", "hit")
                return value
            self.l1.delete(key)
            await self._delete_l3(key)
        self._count("l1", "miss")
        if self.l3 is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            value = await loop.run_in_executor(self._io, self.l3.get, key)
        except Exception as exc:  # noqa: BLE001 - DiskCache does not raise; a closed executor might
            log.warning("%s cache: L3 lookup failed: %r", self.name, exc)
            value = None
        if value is not None and not self._valid(value):
            await self._delete_l3(key)
            value = None
        if value is None:
            self._count("l3", "miss")
            return None
        self._count("l3", "hit")
        self.l1.put(key, value)
        return value

    async def _delete_l3(self, key: str) -> None:
        if self.l3 is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self.l3.delete, key)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s cache: L3 delete failed: %r", self.name, exc)

    async def put(self, key: str, value: bytes) -> None:
        """Store in L1 now and in L3 on the I/O thread (awaited, so a test can rely on it)."""
        self.l1.put(key, value)
        if self.l3 is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self.l3.put, key, value)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s cache: L3 write failed: %r", self.name, exc)

    def put_nowait(self, key: str, value: bytes) -> None:
        """Store in L1 now and queue the L3 write on the I/O thread without waiting for it."""
        self.l1.put(key, value)
        if self.l3 is None:
            return
        try:
            self._io.submit(self.l3.put, key, value)
        except RuntimeError:  # shut down: the node is stopping, L1 was enough
            pass

    def stats(self) -> dict[str, Any]:
        """Hits, misses and hit ratio per level, plus overall (a hit at either level)."""
        c = self._counts
        hits = c[("l1", "hit")] + c[("l3", "hit")]
        out: dict[str, Any] = {
            "hits": hits,
            "misses": c[("l3", "miss")] if self.l3 is not None else c[("l1", "miss")],
            "l1": {
                "hits": c[("l1", "hit")],
                "misses": c[("l1", "miss")],
                "ratio": _ratio(c[("l1", "hit")], c[("l1", "miss")]),
                "entries": len(self.l1),
                "bytes": self.l1.size_bytes,
            },
        }
        out["ratio"] = _ratio(hits, out["misses"])
        if self.l3 is not None:
            out["l3"] = {
                "hits": c[("l3", "hit")],
                "misses": c[("l3", "miss")],
                "ratio": _ratio(c[("l3", "hit")], c[("l3", "miss")]),
                "entries": len(self.l3),
                "bytes": self.l3.size_bytes,
                "corrupt": self.l3.corrupt,
            }
        return out

    def close(self) -> None:
        self._io.shutdown(wait=True)
