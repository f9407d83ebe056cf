"""What escalates: the local model's measured score on a turn's kind of question, in its language.

The README's cloud try-out once escalated nothing: "why do cats purr when they are happy" scored 0.55
and "explain why the sky is blue" 0.59 against the keyword threshold of 0.6. Now a turn goes to the
better model when the bundled local model measurably gets its kind of question wrong. The remote
route is a fake here (``FakeRemote``): these tests are about the decision, not the cloud.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edge_node.config import EdgeConfig, ProviderConfig
from edge_node.provider.link import ProviderLink
from edge_node.routing.intent import DeviceCapabilities
from edge_node.routing.kinds import question_kind
from edge_node.routing.router import Route, Router, TurnContext
from shared.routing_config import default_policy, parse_routing

CFG = EdgeConfig()


@pytest.mark.parametrize(
    ("text", "language", "kind"),
    [
        ("Why do cats purr when they are happy?", "en", "explain"),
        ("Explain why the sky is blue.", "en", "explain"),
        ("How does a rainbow form?", "en", "explain"),
        ("What should I do if I burn my finger?", "en", "advice"),
        ("How can I fall asleep faster?", "en", "advice"),
        ("Make it a bit louder.", "en", "device"),
        ("What is seven plus eight?", "en", "arithmetic"),
        ("How many minutes are in three hours?", "en", "arithmetic"),
        ("Tell me a story about a dragon.", "en", "creative"),
        ("What is the capital of Japan?", "en", "fact"),
        ("Who wrote Romeo and Juliet?", "en", "fact"),
        ("为什么会打雷？", "zh", "explain"),
        ("彩虹是怎么形成的？", "zh", "explain"),
        ("手被烫伤了应该怎么办？", "zh", "advice"),
        ("把声音调小一点", "zh", "device"),
        ("十减四等于几？", "zh", "arithmetic"),
        ("给我讲个故事", "zh", "creative"),
        ("中国的首都是哪里？", "zh", "fact"),
    ],
)
def test_question_kinds(text: str, language: str, kind: str) -> None:
    assert question_kind(text, language) == kind


class FakeLocal:
    """Fake local LLM (the decision is under test)."""

    async def chat_stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[str]:
        yield "Local answer."


class FakeRemote(ProviderLink):
    """Fake provider: configured, always ready, answers at once without any HTTP."""

    def __init__(self) -> None:
        super().__init__(ProviderConfig(base_url="http://provider.invalid/v1", model="m"), api_key="")

    async def chat_stream(  # type: ignore[override]
        self, messages: list[dict[str, str]], max_tokens: int, limits: Any, device_id: str = ""
    ) -> AsyncIterator[str]:
        yield "Better answer."


class _Routing:
    def __init__(self, policy: Any) -> None:
        self.policy = policy


def _router(policy: Any, languages: list[str] | None = None) -> Router:
    return Router(
        CFG.llm,
        CFG.intent,
        CFG.mcp,
        FakeLocal(),  # type: ignore[arg-type]
        routing=_Routing(policy),  # type: ignore[arg-type]
        provider=FakeRemote(),
        languages=languages,
    )


async def _route(router: Router, text: str, language: str = "") -> tuple[str, Any]:
    ctx = TurnContext(
        text, [], DeviceCapabilities(), _no_action, logging.LoggerAdapter(logging.getLogger("t"), {}), language=language
    )
    result = await router.route(ctx)
    return "".join([d async for d in result.text]), result


async def _no_action(_action: Any) -> str:
    return "ok"


POLICY = """
local_scores:
  en: {fact: 0.95, explain: 0.4, advice: 0.92}
  zh: {fact: 0.9, explain: 0.6}
"""


async def test_a_kind_the_local_model_gets_wrong_escalates_and_one_it_gets_right_stays() -> None:
    router = _router(parse_routing(POLICY), ["en", "zh"])
    words, result = await _route(router, "Why do cats purr when they are happy?")
    assert (words, result.route) == ("Better answer.", Route.PROVIDER)
    assert "weak-local-model" in result.reason and "kind explain" in result.reason and "0.40" in result.reason
    words, result = await _route(router, "Explain why the sky is blue.")
    assert result.route == Route.PROVIDER
    words, result = await _route(router, "What is the capital of Japan?")
    assert (words, result.route) == ("Local answer.", Route.LOCAL_LLM)
    words, result = await _route(router, "How can I stop hiccups?")  # advice: 0.92, above the bar
    assert result.route == Route.LOCAL_LLM
    # Each language has its own scores: zh explain 0.6 escalates, zh advice is unmeasured and stays.
    words, result = await _route(router, "为什么会打雷？", "zh")
    assert result.route == Route.PROVIDER and "language zh" in result.reason
    words, result = await _route(router, "手被烫伤了应该怎么办？", "zh")
    assert result.route == Route.LOCAL_LLM and "unmeasured" in result.reason


async def test_the_shipped_scores_escalate_the_questions_the_keyword_score_missed() -> None:
    """With the measured defaults, the two questions of the README's try-out go to the better model."""
    policy = default_policy()
    assert policy.local_score("en", "explain") is not None and policy.local_score("en", "explain") < 0.9
    router = _router(policy)
    for question in ("why do cats purr when they are happy", "explain why the sky is blue"):
        _words, result = await _route(router, question)
        assert result.route == Route.PROVIDER, (question, result.reason)


def test_scores_out_of_range_are_refused() -> None:
    from shared.routing_config import RoutingConfigError

    with pytest.raises(RoutingConfigError, match="local_scores"):
        parse_routing("local_scores: {en: {fact: 1.5}}")
    with pytest.raises(RoutingConfigError, match="local_score_below"):
        parse_routing("llm: {rules: [{name: a, when: {local_score_below: 2}, route: escalate}]}")


class RecordingLocal(FakeLocal):
    """Fake local LLM that records the system prompt it was given."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    async def chat_stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[str]:
        self.prompts.append(messages[0]["content"])
        yield "Local answer."


async def test_a_persona_set_for_a_device_or_its_site_is_the_system_prompt() -> None:
    """prompts.devices beats prompts.sites beats the node's prompt for the language; a persona device
    neither reads nor writes the fleet's shared answers (they are in another voice)."""
    from edge_node.cache.answers import AnswerCache
    from edge_node.cache.lru import LruCache

    policy = parse_routing(
        """
llm: {rules: []}
prompts:
  sites: {shop-12: {en: "You are Mia, the shop's assistant."}}
  devices: {"dev-kid": {en: "You help children learn. Use simple words."}}
"""
    )
    local = RecordingLocal()
    cache = AnswerCache(LruCache(1 << 20), None, ttl_s=3600)
    await cache.put("What is a cat?", "A cat is a small animal.")
    router = Router(CFG.llm, CFG.intent, CFG.mcp, local, cache, routing=_Routing(policy), site="shop-12")  # type: ignore[arg-type]
    for device in ("dev-kid", "dev-other"):
        ctx = TurnContext(
            "What is a cat?",
            [],
            DeviceCapabilities(),
            _no_action,
            logging.LoggerAdapter(logging.getLogger("t"), {}),
            device_id=device,
        )
        result = await router.route(ctx)
        _ = [d async for d in result.text]
        assert result.route == Route.LOCAL_LLM and not result.cacheable
    assert local.prompts == ["You help children learn. Use simple words.", "You are Mia, the shop's assistant."]
    elsewhere = Router(CFG.llm, CFG.intent, CFG.mcp, local, cache, routing=_Routing(policy), site="depot")  # type: ignore[arg-type]
    ctx = TurnContext(
        "What is a cat?", [], DeviceCapabilities(), _no_action, logging.LoggerAdapter(logging.getLogger("t"), {})
    )
    result = await elsewhere.route(ctx)
    assert result.route == Route.CACHE, "no persona here: the shared answer serves"
    with pytest.raises(Exception, match="more than 1000"):
        parse_routing({"prompts": {"devices": {"d": {"en": "x" * 1001}}}})
