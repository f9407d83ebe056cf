"""Per-device rate limits (config ``limits``): handshakes and turns per device, text frames per connection.

Token buckets keyed by device id, kept in one ordered dict per limit in least-recently-used order.
Memory stays bounded two ways: a bucket that has been idle long enough to be full again is the
same as no bucket, so the idlest ones are dropped as they refill (a couple per call, O(1)); and
past ``limits.max_devices`` the least recently seen is dropped whatever its state, which can only
be generous to that device. Each bucket also carries its log throttle: a device over a limit gets
one log line per ``limits.log_every_s`` saying how many it had dropped since, never one per drop.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from edge_node import metrics
from edge_node.config import LimitsConfig

log = logging.getLogger("edge_node.limits")

__all__ = ["Bucket", "DeviceLimits", "LogThrottle", "TokenBuckets"]


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: float  # when ``tokens`` was last brought up to date
    logged_at: float = -1e18  # when the last line about this key was written
    dropped: int = 0  # refused since that line

    def take(self, rate_per_s: float, burst: float, now: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.at) * rate_per_s)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def log_due(self, every_s: float, now: float) -> int | None:
        """Count a refusal; the number refused since the last line when a line is due now, else None."""
        self.dropped += 1
        if now - self.logged_at < every_s:
            return None
        dropped, self.dropped, self.logged_at = self.dropped, 0, now
        return dropped


class TokenBuckets:
    """One bucket per key: ``burst`` tokens, refilled at ``rate_per_s``; ``rate_per_s`` 0 allows everything."""

    def __init__(
        self, rate_per_s: float, burst: float, max_keys: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1.0, burst)
        self.max_keys = max_keys
        self.clock = clock
        self.buckets: OrderedDict[str, Bucket] = OrderedDict()
        # A bucket idle this long has refilled completely: dropping it changes nothing.
        self._refill_s = self.burst / rate_per_s if rate_per_s > 0 else 0.0

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def take(self, key: str, now: float | None = None) -> Bucket | None:
        """None when ``key`` may go ahead (a token was taken); else its bucket, for the log throttle."""
        if not self.enabled:
            return None
        now = self.clock() if now is None else now
        self._evict_idle(now)
        bucket = self.buckets.get(key)
        if bucket is None:
            while len(self.buckets) >= self.max_keys:  # full: forget the least recently seen
                self.buckets.popitem(last=False)
            bucket = self.buckets[key] = Bucket(self.burst, now)
        else:
            self.buckets.move_to_end(key)
        return None if bucket.take(self.rate_per_s, self.burst, now) else bucket

    def _evict_idle(self, now: float) -> None:
        """Drop up to two of the idlest buckets if they have refilled (amortised O(1) per call)."""
        for _ in range(2):
            if not self.buckets:
                return
            key, oldest = next(iter(self.buckets.items()))
            if now - oldest.at < self._refill_s:
                return
            del self.buckets[key]


class LogThrottle:
    """At most one line per key per ``every_s``, for the least recently used ``max_keys`` keys."""

    def __init__(self, every_s: float, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.max_keys = max_keys
        self.clock = clock
        self.keys: OrderedDict[str, Bucket] = OrderedDict()

    def due(self, key: str) -> int | None:
        """Count one event; how many since the last line when a line is due now, else None."""
        now = self.clock()
        while self.keys and (len(self.keys) >= self.max_keys or now - next(iter(self.keys.values())).at > self.every_s):
            self.keys.popitem(last=False)
        bucket = self.keys.get(key)
        if bucket is None:
            bucket = self.keys[key] = Bucket(0.0, now)
        self.keys.move_to_end(key)
        bucket.at = now
        return bucket.log_due(self.every_s, now)


class DeviceLimits:
    """The edge's per-device limits; one per server, shared by every session."""

    def __init__(self, cfg: LimitsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.connects = TokenBuckets(cfg.connects_per_min / 60.0, cfg.connects_per_min, cfg.max_devices, clock)
        self.turns = TokenBuckets(cfg.turns_per_min / 60.0, cfg.turns_per_min, cfg.max_devices, clock)

    def text_bucket(self) -> TokenBuckets:
        """A connection's own text-frame limit (per connection, so one key, one bucket)."""
        return TokenBuckets(self.cfg.text_per_s, self.cfg.text_burst, 1, self.clock)

    def audio_bucket(self) -> TokenBuckets:
        """A connection's own binary-frame (audio) limit, like ``text_bucket``."""
        return TokenBuckets(self.cfg.audio_per_s, self.cfg.audio_burst, 1, self.clock)

    def allow_connect(self, device_id: str) -> bool:
        return self._allow(self.connects, "connect", device_id, "WebSocket handshakes", "answered 429")

    def allow_turn(self, device_id: str) -> bool:
        return self._allow(self.turns, "turn", device_id, "turns", "answered with the slow-down message")

    def refused(self, kind: str, device_id: str, bucket: Bucket, what: str, outcome: str, limit: str) -> None:
        """Count one refusal and log it, at most once per ``log_every_s`` for this device and limit."""
        metrics.RATE_LIMITED.labels(kind=kind).inc()
        dropped = bucket.log_due(self.cfg.log_every_s, self.clock())
        if dropped is not None:
            log.warning(
                "rate limit: %s from %s over %s: %s (%d refused since the last such line)",
                what,
                device_id,
                limit,
                outcome,
                dropped,
                extra={"device_id": device_id},
            )

    def _allow(self, buckets: TokenBuckets, kind: str, device_id: str, what: str, outcome: str) -> bool:
        bucket = buckets.take(device_id.lower())
        if bucket is None:
            return True
        per_min = self.cfg.connects_per_min if kind == "connect" else self.cfg.turns_per_min
        self.refused(kind, device_id, bucket, what, outcome, f"{per_min:g}/min")
        return False
