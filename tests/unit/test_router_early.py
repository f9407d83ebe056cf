"""Router.answers_at_once: the check that lets a turn end at a short pause (early commit)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from edge_node.cache.answers import AnswerCache
from edge_node.cache.lru import LruCache
from edge_node.config import EdgeConfig
from edge_node.routing.intent import DeviceCapabilities
from edge_node.routing.router import Router
from shared.routing_config import parse_routing

CFG = EdgeConfig()  # the defaults; the router takes its sections


class FakeChat:
    """Fake LLM backend (the router's peek is what is tested; it must never call the LLM)."""

    def chat_stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[str]:
        raise AssertionError("answers_at_once must not call the LLM")


class _Routing:
    """The routing policy from a literal order (no file, no KV)."""

    def __init__(self, order: list[str]) -> None:
        self.policy = parse_routing({"order": order})


def _router(order: list[str] | None = None, languages: list[str] | None = None) -> tuple[Router, AnswerCache]:
    cache = AnswerCache(LruCache(1 << 20), None, ttl_s=3600)
    routing = _Routing(order) if order is not None else None
    router = Router(CFG.llm, CFG.intent, CFG.mcp, FakeChat(), cache, routing=routing, languages=languages)  # type: ignore[arg-type]
    return router, cache


async def test_rules_and_cached_questions_answer_at_once() -> None:
    router, cache = _router()
    caps = DeviceCapabilities(tools={"self.audio_speaker.set_volume": {}}, state={"volume": 50})
    assert router.answers_at_once("What time is it?", caps, 0)
    assert router.answers_at_once("Set the volume to 40.", caps, 0)
    assert caps.state["volume"] == 50, "a peek must not change the device state"
    assert not router.answers_at_once("What is the capital of France?", caps, 0)
    await cache.put("What is the capital of France?", "Paris.")
    assert router.answers_at_once("what is the capital of france", caps, 0)
    # The peek counted nothing: stats are only for real lookups.
    assert cache.stats()["l1"]["hits"] == 0 and cache.stats()["l1"]["misses"] == 0
    # Not reusable (time-dependent): never answered from the cache, even if stored.
    await cache.put("What is the news today?", "Nothing.")
    assert not router.answers_at_once("What is the news today?", caps, 0)


async def test_routes_left_out_of_the_order_do_not_count() -> None:
    router, cache = _router(["llm"])
    await cache.put("What is the capital of France?", "Paris.")
    caps = DeviceCapabilities()
    assert not router.answers_at_once("What time is it?", caps, 0)
    assert not router.answers_at_once("What is the capital of France?", caps, 0)


async def test_chinese_rules_and_cached_questions_answer_at_once_on_a_bilingual_node() -> None:
    """The peek asks the Chinese rules and the Chinese side of the cache, as the turn itself will."""
    router, cache = _router(languages=["en", "zh"])
    caps = DeviceCapabilities(tools={"self.audio_speaker.set_volume": {}}, state={"volume": 50})
    assert router.answers_at_once("音量调到30", caps, 0, "zh")
    assert router.answers_at_once("现在几点了", caps, 0, "zh")
    assert caps.state["volume"] == 50
    assert not router.answers_at_once("音量调到", caps, 0, "zh"), "a command cut off before its number"
    assert not router.answers_at_once("中国最长的河流是什么", caps, 0, "zh")
    await cache.put("中国最长的河流是什么？", "长江。", "zh")
    assert router.answers_at_once("中国最长的河流是什么", caps, 0, "zh")
    await cache.put("What is the capital of France?", "巴黎。", "zh")  # a Chinese answer to English words
    assert not router.answers_at_once("What is the capital of France?", caps, 0, "en")
