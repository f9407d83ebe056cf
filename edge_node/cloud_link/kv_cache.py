"""L2: a cache level in a JetStream KV bucket of the hub, shared by every edge of the fleet.

A TTS sentence or a reusable answer that one edge computed is a hit for all the others. Keys are
the local cache keys' SHA-256 (KV keys allow only ``[-/_=.a-zA-Z0-9]``); the bucket's TTL expires
entries, so nothing here deletes. Every call is bounded by ``timeout_s`` and never raises: with the
link down, L2 is simply a miss and a skipped write, and L1/L3 keep serving.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import nats.errors
import nats.js.errors

from edge_node.cloud_link.link import CloudLink
from shared.nats.subjects import JS_DOMAIN

log = logging.getLogger("edge_node.kv_cache")

__all__ = ["KvCacheLevel"]

MAX_VALUE_BYTES = 512 * 1024  # under NATS's 1 MB payload with room for headers


class KvCacheLevel:
    def __init__(self, link: CloudLink, bucket: str, ttl_s: float, timeout_s: float = 0.5) -> None:
        self.link = link
        self.bucket = bucket
        self.ttl_s = ttl_s  # informational: the bucket's own TTL (set by the cloud) is what expires entries
        self.timeout_s = timeout_s
        self._kv: Any = None
        self._kv_nc: Any = None
        self.hits = 0
        self.misses = 0
        self.errors = 0

    @staticmethod
    def kv_key(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    async def _bucket(self) -> Any:
        nc = self.link.nc
        if nc is None or not nc.is_connected:
            return None
        if self._kv is not None and self._kv_nc is nc:
            return self._kv
        js = nc.jetstream(timeout=self.timeout_s * 4, domain=JS_DOMAIN)
        try:
            self._kv = await js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            # The cloud creates it (`xiaozhi-cloud buckets`): an edge may not create streams (an edge
            # that could would capture other edges' subjects), so until then L2 is a miss.
            log.debug("L2 bucket %s not created yet", self.bucket)
            return None
        self._kv_nc = nc
        return self._kv

    async def get(self, key: str) -> bytes | None:
        try:
            kv = await self._bucket()
            if kv is None:
                self.misses += 1
                return None
            entry = await kv.get(self.kv_key(key))
        except nats.js.errors.KeyNotFoundError:
            self.misses += 1
            return None
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            self.errors += 1
            self.misses += 1
            self._kv = None
            log.debug("L2 %s get failed: %r", self.bucket, exc)
            return None
        self.hits += 1
        return entry.value

    async def put(self, key: str, value: bytes) -> bool:
        return await self.put_raw(self.kv_key(key), value)

    async def put_raw(self, kv_key: str, value: bytes) -> bool:
        """Store under a KV key as given (one a watcher can filter on, ``sem.<language>.<id>``)."""
        if len(value) > MAX_VALUE_BYTES:
            return False
        try:
            kv = await self._bucket()
            if kv is None:
                return False
            # Through the domain's API prefix, as nats.go does: a plain publish to $KV.<bucket>.<key>
            # does not cross the leaf link to the hub's stream (nats-py's kv.put does the plain one).
            js = self.link.nc.jetstream(timeout=self.timeout_s * 4, domain=JS_DOMAIN)  # type: ignore[union-attr]
            await js.publish(f"$JS.{JS_DOMAIN}.API.$KV.{self.bucket}.{kv_key}", value)
            return True
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            self.errors += 1
            self._kv = None
            log.debug("L2 %s put failed: %r", self.bucket, exc)
            return False
