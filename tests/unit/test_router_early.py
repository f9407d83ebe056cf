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


def _router(order: list[str] | None = None) -> tuple[Router, AnswerCache]:
    cache = AnswerCache(LruCache(1 << 20), None, ttl_s=3600)
    routing = _Routing(order) if order is not None else None
    return Router(CFG.llm, CFG.intent, CFG.mcp, FakeChat(), cache, routing=routing), cache  # type: ignore[arg-type]


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
