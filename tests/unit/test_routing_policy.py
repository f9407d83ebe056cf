"""The routing policy: schema errors, complexity and language, rule choice, the fallback chain, the breaker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_node.cloud_link.breaker import CircuitBreaker
from edge_node.config import EdgeConfig
from edge_node.engines.pool import BusyError
from edge_node.routing.intent import DeviceCapabilities
from edge_node.routing.router import APOLOGY, CUT_OFF, Router, TurnContext
from edge_node.routing.rules import complexity_score, text_language
from shared.nats.streaming import RemoteFailed, RemoteUnavailable
from shared.routing_config import RoutingConfigError, default_policy, load_routing_file, parse_routing

CFG = EdgeConfig()  # the defaults; the router takes its sections

EXAMPLE = """
version: 1
order: [intent, cache, llm]
llm:
  default: local_llm
  rules:
    - {name: not-english, when: {language: [zh, ja, ko]}, route: cloud}
    - {name: open-question, when: {complexity_at_least: 0.6}, route: cloud}
    - {name: fresh-facts, when: {keywords: [weather, news]}, route: cloud}
  overflow: {llm_queue_depth_at_least: 3, route: cloud}
routes:
  cloud: {accept_timeout_s: 0.5, first_token_timeout_s: 2.0, retries: 1, breaker: {failures: 2, open_s: 10}}
fallback:
  cloud: [local_llm, apology]
"""


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(EXAMPLE)
    policy = load_routing_file(path)
    assert [r.name for r in policy.llm.rules] == ["not-english", "open-question", "fresh-facts"]
    assert policy.chain("cloud") == ["cloud", "local_llm", "apology"]
    assert policy.chain("local_llm") == ["local_llm", "apology"]
    assert policy.limits("cloud").breaker.failures == 2


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ("order: [intent, cache]", "order"),
        ("order: [intent, intent, llm]", "only once"),
        ("llm: {default: moon}", "llm.default"),
        ("llm: {rules: [{name: a, route: cloud}, {name: a, route: local_llm}]}", "unique"),
        ("llm: {rules: [{name: a, when: {complexity_at_least: 2}, route: cloud}]}", "complexity_at_least"),
        ("routes: {cloud: {retries: 9}}", "routes.cloud.retries"),
        ("fallback: {cloud: [cloud]}", "must not contain"),
        ("fallback: {cloud: [apology, local_llm]}", "apology must be last"),
        ("complexity: {keywords: {story: 3}}", "weight"),
        ("verison: 1", "verison"),
        ("- a list", "mapping"),
        ("key: [unclosed", "not valid YAML"),
    ],
)
def test_bad_configs_are_refused_with_the_key(doc: str, needle: str) -> None:
    with pytest.raises(RoutingConfigError) as exc:
        parse_routing(doc, "routing.yaml")
    assert needle in str(exc.value) and "routing.yaml" in str(exc.value)


def test_language_and_complexity() -> None:
    assert text_language("法国的首都是哪里？") == "zh"
    assert text_language("こんにちは") == "ja"
    assert text_language("안녕하세요") == "ko"
    assert text_language("What time is it?") == "en"
    assert text_language("Wie spät ist es?", "de") == "de"
    c = default_policy().complexity
    assert complexity_score("What time is it?", c) < 0.3
    assert complexity_score("Why do cats purr when they are happy?", c) >= 0.5
    long_q = "Explain the difference between a virus and a bacterium and how vaccines teach the body to fight them"
    assert complexity_score(long_q, c) >= 0.8


def test_circuit_breaker_opens_then_lets_one_trial_through() -> None:
    now = [0.0]
    b = CircuitBreaker(failures=2, open_s=10, clock=lambda: now[0])
    assert b.allow() and b.state == "closed"
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 10.5
    assert b.state == "half_open" and b.allow() and not b.allow()  # one trial at a time
    b.failure()
    assert b.state == "open"
    now[0] = 21.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()


# -- the router's choice and chain, with fake backends -----------------------------------------
class FakeLocalLlm:
    """Fake local LLM (the router is what is tested): says a fixed reply, or fails as told."""

    def __init__(self, reply: str = "Local answer.", fail: BaseException | None = None) -> None:
        self.reply, self.fail, self.calls = reply, fail, 0

    async def chat_stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[str]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        for word in self.reply.split(" "):
            yield word + " "


class FakeCloud:
    """Fake cloud link: streams a fixed reply, or fails before/after its first word."""

    configured = True

    def __init__(
        self,
        reply: str = "Cloud answer.",
        fail_before: BaseException | None = None,
        fail_after: int | None = None,
        up: bool = True,
    ) -> None:
        self.reply, self.fail_before, self.fail_after, self.up, self.calls = reply, fail_before, fail_after, up, 0

    def ready(self, kind: str = "llm") -> bool:
        return self.up

    async def chat_stream(
        self,
        messages: Any,
        max_tokens: int,
        turn_id: str,
        gen: int,
        limits: Any,
        temperature: float = 0.3,
        device_id: str = "",
        session_id: str = "",
    ) -> AsyncIterator[str]:
        self.calls += 1
        if self.fail_before is not None:
            raise self.fail_before
        for i, word in enumerate(self.reply.split(" ")):
            if self.fail_after is not None and i >= self.fail_after:
                raise RemoteFailed("worker vanished", "stream")
            yield word + " "


class FakeRouting:
    def __init__(self, text: str) -> None:
        self.policy = parse_routing(text)


def _ctx(text: str, language: str = "en") -> TurnContext:
    async def no_action(action: Any) -> str:
        return "ok"

    return TurnContext(
        text,
        [],
        DeviceCapabilities(),
        no_action,
        logging.LoggerAdapter(logging.getLogger("t"), {}),
        language=language,
        turn_id="t1",
        gen=1,
    )


async def _say(router: Router, text: str, language: str = "en") -> tuple[str, Any]:
    result = await router.route(_ctx(text, language))
    words = "".join([d async for d in result.text]).strip()
    return words, result


async def test_rules_pick_the_cloud_for_complex_or_foreign_turns() -> None:
    local, cloud = FakeLocalLlm(), FakeCloud()
    router = Router(CFG.llm, CFG.intent, CFG.mcp, local, routing=FakeRouting(EXAMPLE), cloud=cloud)  # type: ignore[arg-type]
    words, result = await _say(router, "What colour is the sky?")
    assert (words, result.route, result.chosen) == ("Local answer.", "local_llm", "local_llm")
    words, result = await _say(router, "Explain why the sky is blue and how sunsets get their colours")
    assert (words, result.route) == ("Cloud answer.", "cloud") and "open-question" in result.reason
    words, result = await _say(router, "法国的首都是哪里？", language="zh")
    assert result.route == "cloud" and "not-english" in result.reason
    words, result = await _say(router, "Is there news about the match?")
    assert result.route == "cloud" and "fresh-facts" in result.reason


async def test_overflow_sends_turns_to_the_cloud_when_the_local_queue_is_deep() -> None:
    depth = [0]
    router = Router(
        CFG.llm,
        CFG.intent,
        CFG.mcp,
        FakeLocalLlm(),
        routing=FakeRouting(EXAMPLE),
        cloud=FakeCloud(),  # type: ignore[arg-type]
        llm_queue_depth=lambda: depth[0],
    )
    assert (await _say(router, "What colour is the sky?"))[1].route == "local_llm"
    depth[0] = 3
    words, result = await _say(router, "What colour is the sky?")
    assert result.route == "cloud" and result.reason.startswith("overflow")


async def test_cloud_unreachable_falls_back_to_the_local_llm() -> None:
    local = FakeLocalLlm()
    cloud = FakeCloud(fail_before=RemoteUnavailable("no responders", "accept"))
    router = Router(CFG.llm, CFG.intent, CFG.mcp, local, routing=FakeRouting(EXAMPLE), cloud=cloud)  # type: ignore[arg-type]
    words, result = await _say(router, "Explain why the sky is blue and how sunsets get their colours")
    assert words == "Local answer." and result.chosen == "cloud" and result.route == "local_llm"
    assert result.fell_back == ["cloud->local_llm"]


async def test_everything_failing_ends_in_the_spoken_apology() -> None:
    local = FakeLocalLlm(fail=RuntimeError("model crashed"))
    cloud = FakeCloud(fail_before=RemoteUnavailable("link down", "accept"))
    router = Router(CFG.llm, CFG.intent, CFG.mcp, local, routing=FakeRouting(EXAMPLE), cloud=cloud)  # type: ignore[arg-type]
    words, result = await _say(router, "Explain why the sky is blue and how sunsets get their colours")
    assert words == APOLOGY and result.route == "apology"


async def test_cloud_failing_mid_answer_ends_the_turn_with_a_short_apology() -> None:
    local = FakeLocalLlm()
    cloud = FakeCloud(reply="The sky is blue because of scattering.", fail_after=3)
    router = Router(CFG.llm, CFG.intent, CFG.mcp, local, routing=FakeRouting(EXAMPLE), cloud=cloud)  # type: ignore[arg-type]
    words, result = await _say(router, "Explain why the sky is blue and how sunsets get their colours")
    assert words == f"The sky is … {CUT_OFF}" and result.route == "cloud" and local.calls == 0
    assert result.fell_back == ["cut_off"]


async def test_a_busy_local_llm_says_busy_without_a_cloud() -> None:
    router = Router(CFG.llm, CFG.intent, CFG.mcp, FakeLocalLlm(fail=BusyError("llm", "queue full")))  # type: ignore[arg-type]
    result = await router.route(_ctx("What colour is the sky?"))
    with pytest.raises(BusyError):
        _ = [d async for d in result.text]


async def test_no_cloud_link_configured_skips_the_cloud() -> None:
    local = FakeLocalLlm()
    router = Router(CFG.llm, CFG.intent, CFG.mcp, local, routing=FakeRouting(EXAMPLE), cloud=None)  # type: ignore[arg-type]
    words, result = await _say(router, "Explain why the sky is blue and how sunsets get their colours")
    assert words == "Local answer." and result.route == "local_llm" and not result.fell_back
    assert "no cloud link on this node" in result.reason


def test_the_shipped_example_and_the_defaults_agree_on_the_basics() -> None:
    example = load_routing_file(Path(__file__).resolve().parents[2] / "deploy" / "routing.example.yaml")
    defaults = default_policy()
    assert example.order == defaults.order == ["intent", "cache", "llm"]
    assert [r.name for r in defaults.llm.rules] == ["weak-local-model"]
    assert {r.name for r in defaults.llm.rules} <= {r.name for r in example.llm.rules}
