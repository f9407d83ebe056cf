"""Per-device rate limits (token buckets, bounded memory, throttled logs) and the revocation list's
pieces that need no processes: the KV key codec and how a snapshot replaces the set."""

from __future__ import annotations

import logging

import pytest

from edge_node import metrics
from edge_node.auth.revocations import RevocationSource
from edge_node.config import LimitsConfig
from edge_node.limits import DeviceLimits, LogThrottle, TokenBuckets
from shared.nats.revoked import device_of, key_of, parse_record, record


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_evenly() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=0.5, burst=3, max_keys=10, clock=clock)
    assert [buckets.take("a") is None for _ in range(4)] == [True, True, True, False]
    assert buckets.take("b") is None  # another key has its own bucket
    clock.now += 1.9
    assert buckets.take("a") is not None  # 0.95 of a token: not yet
    clock.now += 0.2
    assert buckets.take("a") is None
    assert TokenBuckets(0, 1, 10, clock).take("a") is None  # rate 0: the limit is off


def test_memory_stays_bounded_and_idle_buckets_go() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=1.0, burst=5, max_keys=100, clock=clock)
    for i in range(1000):
        buckets.take(f"dev-{i}")
    assert len(buckets.buckets) <= 100
    clock.now += 10  # every bucket has refilled: forgetting them changes nothing
    for i in range(60):
        buckets.take(f"new-{i}")
    assert len(buckets.buckets) <= 61 and all(k.startswith("new-") for k in buckets.buckets)


def test_a_device_near_its_limit_keeps_its_bucket_while_active() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=0.1, burst=2, max_keys=1000, clock=clock)
    buckets.take("busy")
    buckets.take("busy")
    for i in range(50):  # other devices come and go; "busy" is not idle long enough to be full again
        clock.now += 0.1
        buckets.take(f"other-{i}")
    assert buckets.take("busy") is not None


def test_log_lines_are_throttled_per_device_and_say_how_many_were_dropped(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limits = DeviceLimits(LimitsConfig(connects_per_min=2, log_every_s=30), clock)
    before = metrics.RATE_LIMITED.labels(kind="connect")._value.get()
    with caplog.at_level(logging.WARNING, logger="edge_node.limits"):
        results = [limits.allow_connect("AA:BB") for _ in range(12)]
        assert limits.allow_connect("cc:dd")  # a well-behaved device is not affected
    assert results == [True, True] + [False] * 10
    assert metrics.RATE_LIMITED.labels(kind="connect")._value.get() - before == 10
    lines = [r for r in caplog.records if "rate limit" in r.getMessage()]
    assert len(lines) == 1 and "AA:BB" in lines[0].getMessage() and lines[0].device_id == "AA:BB"  # type: ignore[attr-defined]
    clock.now += 31
    with caplog.at_level(logging.WARNING, logger="edge_node.limits"):
        limits.allow_connect("aa:bb")  # refilled one token: allowed
        limits.allow_connect("aa:bb")
    last = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()][-1]
    assert "(10 refused since the last such line)" in last  # the 9 silent ones and this one


def test_log_throttle_is_bounded() -> None:
    clock = Clock()
    throttle = LogThrottle(10.0, 50, clock)
    assert throttle.due("x") == 1 and throttle.due("x") is None and throttle.due("x") is None
    clock.now += 11
    assert throttle.due("x") is not None
    for i in range(500):
        throttle.due(f"d{i}")
    assert len(throttle.keys) <= 50


@pytest.mark.parametrize("device", ["d8:3b:da:12:34:56", "anon-127.0.0.1", "x_y-z", "é 1", "a=b"])
def test_kv_keys_are_valid_and_read_back(device: str) -> None:
    from nats.js.kv import VALID_KEY_RE

    key = key_of(device)
    assert VALID_KEY_RE.match(key) and device_of(key) == device.lower()
    assert key_of(device.upper()) == key
    assert parse_record(record(device, "admin", "stolen"))["by"] == "admin"
    assert parse_record(b"not json") == {} and parse_record(None) == {}


def test_a_snapshot_replaces_the_set_and_only_new_devices_are_reported() -> None:
    source = RevocationSource(None)
    seen: list[str] = []
    source.on_revoked.append(seen.append)
    source.replace({"aa:01", "aa:02"})
    source.replace({"aa:02", "aa:03"})
    assert source.revoked == {"aa:02", "aa:03"} and seen == ["aa:01", "aa:02", "aa:03"]
    assert source.is_revoked("AA:03 ") and not source.is_revoked("aa:01")
    assert metrics.REVOKED_DEVICES._value.get() == 2
