"""The cache building blocks: LRU by bytes, disk cache across restarts, tiers, packets, keys, policy."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edge_node.cache.answers import AnswerCache, decode_answer, encode_answer
from edge_node.cache.disk import DiskCache
from edge_node.cache.keys import answer_key, normalize_question, tts_key
from edge_node.cache.lru import ENTRY_OVERHEAD, LruCache
from edge_node.cache.packets import pack_packets, unpack_packets
from edge_node.cache.policy import is_reusable_question
from edge_node.cache.tiered import TieredCache


# L1 ----------------------------------------------------------------------------------------------
def test_lru_evicts_least_recently_used_by_bytes() -> None:
    entry = 1000 + 1 + ENTRY_OVERHEAD  # value + one-character key + overhead
    lru = LruCache(3 * entry)
    for key in "abc":
        assert lru.put(key, bytes(1000))
    assert lru.size_bytes == 3 * entry and len(lru) == 3
    assert lru.get("a") is not None  # a is now the most recent
    lru.put("d", bytes(1000))
    assert "b" not in lru and {"a", "c", "d"} <= {k for k in "acd" if k in lru}
    assert lru.size_bytes == 3 * entry and lru.evictions == 1
    # A big value pushes out as many small ones as it needs.
    lru.put("e", bytes(2000))
    assert lru.size_bytes <= lru.max_bytes and "e" in lru and "a" not in lru and "c" not in lru
    # A value bigger than the whole budget is not stored and evicts nothing.
    assert not lru.put("huge", bytes(10 * entry)) and "e" in lru
    assert lru.get("nope") is None
    assert lru.hits == 1 and lru.misses == 1


def test_lru_replacing_a_key_keeps_the_size_right() -> None:
    lru = LruCache(10_000)
    lru.put("k", bytes(100))
    lru.put("k", bytes(300))
    assert len(lru) == 1 and lru.size_bytes == 300 + 1 + ENTRY_OVERHEAD
    lru.delete("k")
    assert lru.size_bytes == 0


# L3 ----------------------------------------------------------------------------------------------
def test_disk_cache_survives_a_restart(tmp_path: Path) -> None:
    first = DiskCache(tmp_path, 1 << 20)
    assert first.put("tts:hello", b"packets" * 10)
    assert first.get("tts:hello") == b"packets" * 10
    second = DiskCache(tmp_path, 1 << 20)  # a new process on the same directory
    assert len(second) == 1 and second.size_bytes == first.size_bytes
    assert second.get("tts:hello") == b"packets" * 10
    assert second.get("tts:other") is None
    assert second.hits == 1 and second.misses == 1
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_disk_cache_evicts_least_recently_used_over_the_cap(tmp_path: Path) -> None:
    value = bytes(1000)
    cache = DiskCache(tmp_path, 3500)  # three entries of 1000 + 12 header bytes fit
    for key in ["a", "b", "c"]:
        cache.put(key, value)
        time.sleep(0.01)
    assert cache.get("a") == value  # a is now the most recently used
    cache.put("d", value)
    assert cache.size_bytes <= 3500 and len(cache) == 3 and cache.evictions == 1
    assert cache.get("b") is None
    assert cache.get("a") == value and cache.get("c") == value and cache.get("d") == value
    assert len(list(tmp_path.glob("*.bin"))) == 3
    # The cap also applies when a smaller budget opens an existing directory.
    smaller = DiskCache(tmp_path, 2100)
    assert len(smaller) == 2 and len(list(tmp_path.glob("*.bin"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage"])
def test_disk_cache_corrupt_entry_is_a_miss_and_removed(tmp_path: Path, damage: str) -> None:
    cache = DiskCache(tmp_path, 1 << 20)
    cache.put("k", b"x" * 500)
    (path,) = tmp_path.glob("*.bin")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:-100])
    elif damage == "flip":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(os.urandom(300))
    reopened = DiskCache(tmp_path, 1 << 20)
    assert reopened.get("k") is None
    assert not path.exists() and reopened.corrupt == 1 and reopened.size_bytes == 0
    assert reopened.put("k", b"fresh") and reopened.get("k") == b"fresh"


def test_disk_cache_removes_leftover_temp_files(tmp_path: Path) -> None:
    (tmp_path / ".tmpabc123").write_bytes(b"half a write")
    DiskCache(tmp_path, 1 << 20)
    assert not (tmp_path / ".tmpabc123").exists()


def test_disk_cache_on_an_unusable_dir_is_empty_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = DiskCache(blocker / "sub", 1 << 20)
    assert not cache.usable
    assert cache.put("k", b"v") is False and cache.get("k") is None


# tiers -------------------------------------------------------------------------------------------
async def test_tiered_promotes_an_l3_hit_into_l1(tmp_path: Path) -> None:
    writer = TieredCache(LruCache(1 << 20), DiskCache(tmp_path, 1 << 20), "tts")
    await writer.put("k", b"value")
    writer.close()
    # A restart: empty L1, same L3.
    cache = TieredCache(LruCache(1 << 20), DiskCache(tmp_path, 1 << 20), "tts")
    try:
        assert "k" not in cache.l1
        assert await cache.get("k") == b"value"  # L1 miss, L3 hit
        assert "k" in cache.l1
        assert await cache.get("k") == b"value"  # L1 hit
        assert await cache.get("other") is None  # L1 miss, L3 miss
        stats = cache.stats()
        assert stats["l1"]["hits"] == 1 and stats["l1"]["misses"] == 2
        assert stats["l3"]["hits"] == 1 and stats["l3"]["misses"] == 1
        assert stats["hits"] == 2 and stats["misses"] == 1 and stats["ratio"] == pytest.approx(2 / 3, abs=1e-3)
        cache.put_nowait("n", b"later")
        assert await cache.get("n") == b"later"
    finally:
        cache.close()
    assert DiskCache(tmp_path, 1 << 20).get("n") == b"later"  # the queued write reached the disk


async def test_cache_bytes_gauge_follows_both_levels(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    def gauge(level: str) -> float | None:
        return REGISTRY.get_sample_value("xiaozhi_cache_bytes", {"cache": "gauge-test", "level": level})

    cache = TieredCache(LruCache(1 << 20), DiskCache(tmp_path, 1 << 20), "gauge-test")
    try:
        assert gauge("l1") == 0 and gauge("l3") == 0
        await cache.put("k", bytes(5000))
        assert gauge("l1") == cache.l1.size_bytes == 5000 + 1 + ENTRY_OVERHEAD
        assert gauge("l3") == cache.l3.size_bytes > 5000  # type: ignore[union-attr]
    finally:
        cache.close()


async def test_answer_cache_ttl_expires_entries(tmp_path: Path) -> None:
    answers = AnswerCache(LruCache(1 << 20), DiskCache(tmp_path, 1 << 20), ttl_s=60)
    try:
        await answers.put("What is the capital of France?", "Paris is the capital of France.")
        assert await answers.get("what is the capital of france") == "Paris is the capital of France."
        old = encode_answer("Stale.", stored_at=time.time() - 120)
        await answers.tiered.put(answer_key("Who wrote Hamlet?"), old)
        assert await answers.get("Who wrote Hamlet?") is None
        assert answers.tiered.l3 is not None and answers.tiered.l3.get(answer_key("Who wrote Hamlet?")) is None
        assert answers.stats()["l1"]["misses"] >= 1
    finally:
        answers.close()
    assert decode_answer(encode_answer("hi", 5.0)) == (5.0, "hi")


# packets, keys -----------------------------------------------------------------------------------
def test_pack_unpack_round_trip() -> None:
    packets = [os.urandom(n) for n in (1, 60, 120, 1275)] + [b""]
    assert unpack_packets(pack_packets(packets)) == packets
    assert unpack_packets(pack_packets([])) == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00",
        b"\x02\x00\x00\x00\x03\x00abc",
        b"\x01\x00\x00\x00\x05\x00abc",
        b"\x01\x00\x00\x00\x01\x00ab",
        b"\xff\xff\xff\xff",
    ],
)
def test_unpack_rejects_corruption(data: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_packets(data)


def test_keys() -> None:
    assert normalize_question("  What's the   capital of FRANCE?! ") == "whats the capital of france"
    assert answer_key("What is the capital of France?") == answer_key("what is the capital of france")
    assert answer_key("What is the capital of France?") != answer_key("What is the capital of Spain?")
    base = tts_key("piper:joe", "Paris.", 24000, 60)
    assert base != tts_key("piper:joe", "Paris!", 24000, 60)
    assert base != tts_key("piper:amy", "Paris.", 24000, 60)
    assert base != tts_key("piper:joe", "Paris.", 16000, 60)
    assert base != tts_key("piper:joe", "Paris.", 24000, 20)
    # Chinese has no spaces between words: an ASR's stray space does not make another question.
    assert answer_key("中国 的首都是哪里？", "zh") == answer_key("中国的首都是哪里", "zh")
    assert answer_key("中国的首都是哪里", "zh") != answer_key("中国的首都是哪里", "en")


# policy ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "How many legs does a spider have?",
        "Who wrote Romeo and Juliet?",
        "What is the boiling point of water",
        "Tell me a joke.",
        "Give me a fun fact about octopuses.",
        "法国的首都是哪里？",
        "中国最长的河流是什么？",
        "水在多少摄氏度沸腾",
        "熊猫最喜欢吃什么？",
    ],
)
def test_reusable_questions(text: str) -> None:
    """English, and Chinese by the same rules (法国的首都 is as reusable as "the capital of France")."""
    assert is_reusable_question(text, 0)
    assert is_reusable_question(text, 4)  # self-contained, so it may be looked up mid-conversation


@pytest.mark.parametrize(
    "text",
    [
        "What time is it?",
        "What's the weather today?",
        "Tell me more about it",
        "Why?",
        "And Germany?",
        "What about Spain?",
        "Say that again",
        "What is the latest news?",
        "What should I eat for dinner?",
        "What is my name?",
        "Tell me about my day.",
        "Remind me to water the plants.",
        "Can you help me?",
        "Is there a restaurant near here?",
        "What is the current price of gold?",
        "Who is the president of France?",
        "What is the volume now?",
        "What is this?",
        "",
        # Chinese: the same rules in Chinese words
        "它是什么？",
        "那德国呢？",
        "还有别的吗？",
        "今天天气怎么样？",
        "现在几点了？",
        "我应该吃什么？",
        "你喜欢什么颜色？",
        "音量是多少？",
        "谁是现在的总统？",
        "为什么？",
        "法国的首都是哪里？Paris？",
    ],
)
def test_not_reusable_questions(text: str) -> None:
    assert not is_reusable_question(text, 0)


# configuration -----------------------------------------------------------------------------------
def test_cache_config_defaults_and_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_node.cache.build import Caches, cache_dir
    from edge_node.config import load_config

    cfg = load_config(environ={})
    from shared.routing_config import default_policy

    assert default_policy().order == ["intent", "cache", "llm"]
    assert cfg.cache.enabled and cfg.cache.l1_max_mb == 64 and cfg.cache.l3_max_mb == 512
    assert cfg.cache.answer_ttl_s == 7 * 24 * 3600
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir(cfg.cache) == tmp_path / "xdg" / "xiaozhi-edge"
    cfg = load_config(environ={"XIAOZHI__CACHE__DIR": str(tmp_path / "c"), "XIAOZHI__CACHE__L3_MAX_MB": "8"})
    caches = Caches.build(cfg.cache)
    tts, answers = caches.tts, caches.answers
    assert tts is not None and answers is not None
    try:
        assert tts.l3 is not None and tts.l3.dir == tmp_path / "c" / "tts" and (tmp_path / "c" / "answer").is_dir()
        assert tts.l3.max_bytes + answers.tiered.l3.max_bytes == 8 * 1024 * 1024  # type: ignore[union-attr]
    finally:
        caches.close()
    assert Caches.build(load_config(environ={"XIAOZHI__CACHE__ENABLED": "false"}).cache) == Caches(None, None)
