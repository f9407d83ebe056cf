"""One decision per turn: which route answers it.

Routes are tried in the configured order (intent fast path, answer cache, local LLM, remote);
a route that cannot answer passes to the next, a route that fails falls back to a spoken
apology so the device always gets a complete turn. The decision and its reason are logged by
the caller and counted per route. The answer cache (``edge_node.cache``) answers a reusable
question that an earlier turn answered; the remote route (the cloud issue) declines until configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_node.cache.policy import is_reusable_question
from edge_node.routing.intent import DeviceAction, DeviceCapabilities, IntentMatcher
from shared.config import EdgeConfig

APOLOGY = "Sorry, I can't answer that right now."


class ChatBackend(Protocol):
    def chat_stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[str]: ...


class AnswerStore(Protocol):
    async def get(self, question: str) -> str | None: ...
    async def put(self, question: str, text: str) -> None: ...


@dataclass(slots=True)
class TurnContext:
    """What the router may look at and do for one turn."""

    text: str
    history: list[dict[str, str]]
    caps: DeviceCapabilities
    run_action: Callable[[DeviceAction], Awaitable[str]]
    log: logging.LoggerAdapter[logging.Logger]
    extra: dict[str, Any] = field(default_factory=dict)
    # time.monotonic() by which an engine must have started this turn's first work (the node's
    # first-audio budget); None: only the stages' own limits.
    deadline: float | None = None


@dataclass(slots=True)
class RouteResult:
    route: str
    reason: str
    emotion: str
    text: AsyncIterator[str]
    cacheable: bool = False


async def _once(text: str) -> AsyncIterator[str]:
    yield text


async def _first_within(stream: AsyncIterator[str], timeout_s: float) -> AsyncIterator[str]:
    """A route that has said nothing after ``timeout_s`` has failed: the reply falls back."""
    iterator = aiter(stream)
    try:
        try:
            first = await asyncio.wait_for(anext(iterator), timeout_s)
        except StopAsyncIteration:
            return
        yield first
        async for delta in iterator:
            yield delta
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


class Router:
    def __init__(self, cfg: EdgeConfig, chat: ChatBackend, answer_cache: AnswerStore | None = None) -> None:
        self._cfg = cfg
        self._chat = chat
        # The answer cache lives with the engines (``Engines.answer_cache``) unless one is given.
        self.answer_cache = answer_cache if answer_cache is not None else getattr(chat, "answer_cache", None)
        self._intents = IntentMatcher(cfg.intent.wake_words, cfg.intent.timezone_offset_min)

    @property
    def intents(self) -> IntentMatcher:
        return self._intents

    def answers_at_once(self, text: str, caps: DeviceCapabilities, history_len: int) -> bool:
        """Whether ``text`` would be answered by a rule or from the in-memory answer cache.

        Used to end a turn at a short pause instead of waiting out the full end-of-speech
        silence: only when the answer is certain and costs no model. A peek: no device state
        changes (the matcher works on a copy) and no cache statistics are counted.
        """
        order = self._cfg.routing.order
        if "intent" in order and self._cfg.intent.enabled:
            peek = DeviceCapabilities(caps.tools, caps.iot_methods, dict(caps.state))
            if self._intents.match(text, peek) is not None:
                return True
        cache = self.answer_cache
        if "cache" in order and cache is not None and is_reusable_question(text, history_len):
            contains = getattr(cache, "contains", None)
            return bool(contains is not None and contains(text))
        return False

    async def route(self, ctx: TurnContext) -> RouteResult:
        for name in self._cfg.routing.order:
            if name == "intent" and self._cfg.intent.enabled:
                result = await self._intent(ctx)
            elif name == "cache":
                result = await self._cache(ctx)
            elif name == "local_llm":
                result = self._local_llm(ctx)
            else:
                result = None  # remote: not configured on this node yet
            if result is not None:
                return result
        return RouteResult("fallback", "no route accepted the turn", "sad", _once(APOLOGY))

    async def _intent(self, ctx: TurnContext) -> RouteResult | None:
        match = self._intents.match(ctx.text, ctx.caps)
        if match is None:
            return None
        say = match.say
        if match.action is not None:
            try:
                await ctx.run_action(match.action)
            except Exception as exc:  # noqa: BLE001 - any device failure becomes a spoken answer
                ctx.log.warning("device action %s failed: %r", match.action.name, exc)
                return RouteResult("intent", f"{match.intent} action failed", "sad",
                                   _once("Sorry, the device did not respond."))  # fmt: skip
        return RouteResult("intent", f"rule {match.intent}", match.emotion, _once(say))

    async def _cache(self, ctx: TurnContext) -> RouteResult | None:
        if self.answer_cache is None or not is_reusable_question(ctx.text, len(ctx.history)):
            return None
        try:
            text = await self.answer_cache.get(ctx.text)
        except Exception as exc:  # noqa: BLE001 - a cache failure only means "ask the next route"
            ctx.log.warning("answer cache lookup failed: %r", exc)
            return None
        if not text:
            return None
        return RouteResult("cache", "answer cache hit", "neutral", _once(text))

    def _local_llm(self, ctx: TurnContext) -> RouteResult:
        messages = [{"role": "system", "content": self._cfg.llm.system_prompt}]
        messages += ctx.history[-2 * self._cfg.llm.history_turns :] if self._cfg.llm.history_turns else []
        messages.append({"role": "user", "content": ctx.text})
        stream = self._chat.chat_stream(messages, self._cfg.llm.max_tokens, deadline=ctx.deadline)
        # Stored for other devices only when the answer cannot depend on this conversation: a
        # reusable question that the LLM answered without any history in its prompt.
        cacheable = (
            self.answer_cache is not None
            and "cache" in self._cfg.routing.order
            and len(messages) == 2
            and is_reusable_question(ctx.text, len(ctx.history))
        )
        return RouteResult(
            "local_llm",
            "no rule matched",
            "neutral",
            _first_within(stream, self._cfg.routing.local_llm_timeout_s),
            cacheable=cacheable,
        )
