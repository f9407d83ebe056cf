"""L1 (memory), then L3 (disk), then L2 (the fleet's NATS KV), used from the event loop.

``get`` looks in L1 on the loop (a dictionary lookup), then in L3 on the cache's own I/O thread
-- file I/O never runs on the event loop -- then, when the edge has a cloud link, in L2 (a KV
bucket every edge shares, bounded by a short timeout). A hit is copied into the faster levels.
``put`` stores in L1 at once, writes L3 on the I/O thread and L2 in the background. L3 before L2:
the local disk answers in well under a millisecond, the hub over the leaf link does not. Every
lookup is counted per level in ``xiaozhi_cache_requests_total`` and in ``stats()`` (what the
load generator reads from ``GET /stats``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from edge_node import metrics
from edge_node.cache.disk import DiskCache
from edge_node.cache.lru import LruCache

log = logging.getLogger(__name__)


class SharedLevel(Protocol):
    """L2 (``edge_node.cloud_link.kv_cache.KvCacheLevel``): bounded, never raises."""

    async def get(self, key: str) -> bytes | None: ...
    async def put(self, key: str, value: bytes) -> bool: ...


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
        l2: SharedLevel | None = None,
    ) -> None:
        """``validate`` (optional) rejects a stored value (expired, unreadable): it counts as a miss
        at the level where it was found and is removed from both levels."""
        self.l1 = l1
        self.l3 = l3
        self.l2 = l2
        self.name = name
        self._background: set[asyncio.Task[Any]] = set()
        self._validate = validate
        # One thread: the disk cache's index is then only touched by it, and writes stay ordered.
        self._io = ThreadPoolExecutor(1, thread_name_prefix=f"cache-{name}")
        self._counts = {(lv, r): 0 for lv in ("l1", "l3", "l2") for r in ("hit", "miss")}
        metrics.CACHE_BYTES.labels(cache=name, level="l1").set_function(lambda: l1.size_bytes)
        if l3 is not None:
            metrics.CACHE_BYTES.labels(cache=name, level="l3").set_function(lambda: l3.size_bytes)

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
        if self.l3 is not None:
            loop = asyncio.get_running_loop()
            try:
                value = await loop.run_in_executor(self._io, self.l3.get, key)
            except Exception as exc:  # noqa: BLE001 - DiskCache does not raise; a closed executor might
                log.warning("%s cache: L3 lookup failed: %r", self.name, exc)
                value = None
            if value is not None and not self._valid(value):
                await self._delete_l3(key)
                value = None
            if value is not None:
                self._count("l3", "hit")
                self.l1.put(key, value)
                return value
            self._count("l3", "miss")
        if self.l2 is None:
            return None
        value = await self.l2.get(key)  # bounded and never raises: a miss when the link is down
        if value is None or not self._valid(value):
            self._count("l2", "miss")
            return None
        self._count("l2", "hit")
        self.l1.put(key, value)
        if self.l3 is not None:
            self._io.submit(self.l3.put, key, value)
        return value

    async def _delete_l3(self, key: str) -> None:
        if self.l3 is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self.l3.delete, key)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s cache: L3 delete failed: %r", self.name, exc)

    def _share(self, key: str, value: bytes) -> None:
        """Write L2 in the background: another edge's hit is worth a round trip, this turn is not."""
        if self.l2 is None:
            return
        task = asyncio.get_running_loop().create_task(self.l2.put(key, value))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def put(self, key: str, value: bytes) -> None:
        """Store in L1 now, in L3 on the I/O thread (awaited, so a test can rely on it), L2 behind."""
        self.l1.put(key, value)
        self._share(key, value)
        if self.l3 is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self.l3.put, key, value)
        except Exception as exc:  # noqa: BLE001
            log.warning("%s cache: L3 write failed: %r", self.name, exc)

    def put_nowait(self, key: str, value: bytes) -> None:
        """Store in L1 now and queue the L3 and L2 writes without waiting for them."""
        self.l1.put(key, value)
        self._share(key, value)
        if self.l3 is None:
            return
        try:
            self._io.submit(self.l3.put, key, value)
        except RuntimeError:  # shut down: the node is stopping, L1 was enough
            pass

    def stats(self) -> dict[str, Any]:
        """Hits, misses and hit ratio per level, plus overall (a hit at either level)."""
        c = self._counts
        hits = c[("l1", "hit")] + c[("l3", "hit")] + c[("l2", "hit")]
        last = "l2" if self.l2 is not None else "l3" if self.l3 is not None else "l1"
        out: dict[str, Any] = {
            "hits": hits,
            "misses": c[(last, "miss")],
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
        if self.l2 is not None:
            out["l2"] = {
                "hits": c[("l2", "hit")],
                "misses": c[("l2", "miss")],
                "ratio": _ratio(c[("l2", "hit")], c[("l2", "miss")]),
            }
        return out

    def close(self) -> None:
        self._io.shutdown(wait=True)
