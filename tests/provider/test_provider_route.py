"""The direct provider route: an OpenAI-compatible LLM the edge asks itself (docs/providers.md).

Against a real ``llama_cpp.server`` serving Qwen2.5-Coder-1.5B-Instruct behind an API key: the reply
streams, the key is sent and never logged, and the route fails the way the cloud route does: before
its first word it hands the turn to the local model, mid-answer it ends with the spoken apology,
repeated failures open its circuit. The local model here is a fake (these tests are about the
provider route, not the local LLM), named ``FakeLocalChat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator

import pytest

from edge_node import metrics
from edge_node.config import EdgeConfig, ProviderConfig
from edge_node.language.phrases import say
from edge_node.provider.link import ProviderError, ProviderLink, read_api_key
from edge_node.routing.intent import DeviceCapabilities
from edge_node.routing.router import Route, Router, TurnContext
from shared import models
from shared.nats.server import free_port
from shared.routing_config import RouteLimits, parse_routing
from tests.provider.conftest import API_KEY
from tests.provider.servers import OpenAIServer, start_openai_server

CFG = EdgeConfig()
LIMITS = RouteLimits(first_token_timeout_s=60.0, chunk_timeout_s=30.0)  # a busy 2-core machine
LOCAL_ANSWER = "Answered by the local model."
log = logging.getLogger("test.provider")


class FakeLocalChat:
    """Fake local LLM: stands for the edge's own model in a fallback chain; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def chat_stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[str]:
        self.calls += 1
        yield LOCAL_ANSWER


class _Routing:
    def __init__(self, data: dict) -> None:
        self.policy = parse_routing(data)


def _provider(base_url: str, model: str = "qwen-1.5b", key: str = API_KEY) -> ProviderLink:
    return ProviderLink(ProviderConfig(base_url=base_url, model=model, name="test"), api_key=key)


def _router(provider: ProviderLink, policy: dict) -> tuple[Router, FakeLocalChat]:
    local = FakeLocalChat()
    router = Router(CFG.llm, CFG.intent, CFG.mcp, local, None, routing=_Routing(policy), provider=provider)  # type: ignore[arg-type]
    return router, local


def _ctx(text: str) -> TurnContext:
    async def no_action(_action: object) -> str:
        raise AssertionError("no device action expected")

    return TurnContext(
        text, [], DeviceCapabilities(), no_action, logging.LoggerAdapter(log, {}), device_id="dev-provider"
    )


async def _words(router: Router, text: str) -> tuple[str, Route, list[str]]:
    result = await router.route(_ctx(text))
    words = "".join([part async for part in result.text])
    return words, result.route, result.fell_back


def _count(result: str) -> float:
    return metrics.PROVIDER_REQUESTS.labels(provider="test", result=result)._value.get()


# -- the link on its own -------------------------------------------------------------------------


async def test_the_provider_streams_a_correct_answer(qwen15: OpenAIServer) -> None:
    link = _provider(qwen15.base_url)
    ok = _count("ok")
    messages = [
        {"role": "system", "content": CFG.llm.system_prompt},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    deltas = [d async for d in link.chat_stream(messages, 48, LIMITS, device_id="dev-1")]
    await link.close()
    assert len(deltas) > 1, "streamed, not one block"
    assert "paris" in "".join(deltas).lower()
    assert _count("ok") == ok + 1
    assert link.breaker.state == "closed"


async def test_a_wrong_key_fails_before_the_first_word_and_no_key_is_logged(
    qwen15: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-wrong-0c5d1e"
    link = _provider(qwen15.base_url, key=wrong)
    retried, failed = _count("retried"), _count("failed")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ProviderError, match="before its first word") as info:
        async for _ in link.chat_stream([{"role": "user", "content": "hi"}], 8, LIMITS):
            pass
    await link.close()
    assert "401" in str(info.value)
    assert _count("retried") == retried, "a refused key fails the same way every time: no retry"
    assert _count("failed") == failed + 1
    for secret in (wrong, API_KEY):
        assert secret not in str(info.value)
        assert not [r for r in caplog.records if secret in r.getMessage()]


def test_the_key_comes_from_a_secret_file_before_the_environment(tmp_path) -> None:  # noqa: ANN001
    secret = tmp_path / "key"
    secret.write_text("sk-from-file\n", encoding="utf-8")
    cfg = ProviderConfig(base_url="http://x/v1", model="m", api_key_file=str(secret), api_key_env="MY_KEY")
    assert read_api_key(cfg, {"MY_KEY": "sk-from-env"}) == "sk-from-file"
    cfg = ProviderConfig(base_url="http://x/v1", model="m", api_key_env="MY_KEY")
    assert read_api_key(cfg, {"MY_KEY": " sk-from-env "}) == "sk-from-env"
    assert read_api_key(cfg, {}) == ""
    with pytest.raises(ValueError, match="api_key_file"):
        read_api_key(ProviderConfig(api_key_file=str(tmp_path / "missing")), {})
    assert "sk-" not in repr(cfg) and "api_key" not in ProviderConfig.model_fields.keys() - {
        "api_key_env",
        "api_key_file",
    }


def test_a_provider_without_a_model_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="provider.model"):
        ProviderConfig(base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="http"):
        ProviderConfig(base_url="127.0.0.1:11434/v1", model="qwen")


# -- the route inside the router -----------------------------------------------------------------


async def test_an_escalated_turn_is_answered_by_the_provider(qwen15: OpenAIServer) -> None:
    link = _provider(qwen15.base_url)
    # No rules: the default decides (the built-in weak-local-model rule would escalate this fact too).
    policy = {"llm": {"default": "escalate", "rules": []}, "routes": {"provider": {"first_token_timeout_s": 60}}}
    router, local = _router(link, policy)
    decided = metrics.ROUTE_DECISIONS.labels(route="provider", reason="default")._value.get()
    words, route, fell_back = await _words(router, "How many legs does a spider have?")
    await link.close()
    assert route == Route.PROVIDER and not fell_back and local.calls == 0
    assert "8" in words or "eight" in words.lower()
    assert metrics.ROUTE_DECISIONS.labels(route="provider", reason="default")._value.get() == decided + 1


async def test_without_a_provider_or_cloud_escalation_stays_local() -> None:
    router, local = _router(ProviderLink(ProviderConfig()), {"llm": {"default": "escalate"}})
    words, route, _ = await _words(router, "Why is the sky blue?")
    assert (words, route, local.calls) == (LOCAL_ANSWER, Route.LOCAL_LLM, 1)


async def test_an_unreachable_provider_falls_back_to_local_and_its_circuit_opens() -> None:
    link = _provider(f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    policy = {
        "llm": {"default": "provider"},
        "routes": {"provider": {"retries": 0, "breaker": {"failures": 2, "open_s": 60}}},
    }
    router, local = _router(link, policy)
    for _ in range(2):
        words, route, fell_back = await _words(router, "What is the largest ocean?")
        assert (words, route, fell_back) == (LOCAL_ANSWER, Route.LOCAL_LLM, ["provider->local_llm"])
    assert link.breaker.state == "open"
    failed = _count("failed")
    started = time.perf_counter()
    words, route, fell_back = await _words(router, "What is the largest ocean?")
    assert (words, route, fell_back) == (LOCAL_ANSWER, Route.LOCAL_LLM, ["provider->local_llm"])
    assert _count("failed") == failed, "an open circuit is not even tried"
    assert time.perf_counter() - started < 1.0
    assert local.calls == 3
    await link.close()


async def test_a_silent_provider_times_out_to_the_local_model() -> None:
    """A fake provider that accepts the request and never answers (a hung endpoint)."""
    requests = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        requests += 1
        with contextlib.suppress(Exception):
            await reader.read(65536)
            await asyncio.sleep(30)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = _provider(f"http://127.0.0.1:{port}/v1")
    router, local = _router(
        link, {"llm": {"default": "provider"}, "routes": {"provider": {"first_token_timeout_s": 1}}}
    )
    started = time.perf_counter()
    words, route, fell_back = await _words(router, "What do pandas eat?")
    elapsed = time.perf_counter() - started
    server.close()
    await link.close()
    assert (words, route, fell_back) == (LOCAL_ANSWER, Route.LOCAL_LLM, ["provider->local_llm"])
    assert requests == 1 and 1.0 <= elapsed < 10.0


async def test_a_provider_that_vanishes_mid_answer_ends_with_the_apology() -> None:
    """A smaller stand-in (SmolLM2) is killed after the first words of a long answer."""
    server = start_openai_server(models.smollm2_gguf(), "smollm2")
    link = _provider(server.base_url, model="smollm2", key="")
    policy = {"llm": {"default": "provider"}, "routes": {"provider": {"first_token_timeout_s": 60, "max_tokens": 400}}}
    router, local = _router(link, policy)
    try:
        result = await router.route(_ctx("Count from one to two hundred, one number per line."))
        parts: list[str] = []
        async for part in result.text:
            parts.append(part)
            if len(parts) == 1:
                server.proc.proc.send_signal(signal.SIGKILL)
    finally:
        server.stop()
        await link.close()
    assert len(parts) >= 2
    assert parts[-1].endswith(say("en", "cut_off"))
    assert result.route == Route.PROVIDER and result.fell_back == ["cut_off"]
    assert local.calls == 0, "words already spoken are not followed by another model's answer"
