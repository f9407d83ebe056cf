"""One decision per turn: which route answers it, and what answers when that route fails.

The routing policy (``routing.yaml``, hot-reloaded from the hub's KV: ``shared/routing_config.py``)
orders the steps: the intent fast path (device commands, time, date), the answer cache, then an
LLM. Which LLM is decided by the policy's rules, first match wins: the turn's language, its
complexity score, keywords, or the edge's own load (overflow to the cloud when the local LLM queue
is deep). The chosen route runs inside its fallback chain (cloud -> local LLM -> spoken apology by
default): a route that fails before its first word hands the turn to the next, one that fails
mid-answer ends with a short apology, so the device always gets a complete turn ending in
``tts/stop``. Decisions and fallbacks are logged by the reply and counted in Prometheus.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edge_node import metrics
from edge_node.cache.answers import FoundAnswer
from edge_node.cache.policy import is_reusable_question
from edge_node.config import IntentConfig, LlmConfig, McpConfig, ToolsConfig
from edge_node.engines.pool import BusyError
from edge_node.language.phrases import say
from edge_node.routing.intent import DeviceAction, DeviceCapabilities, IntentMatcher
from edge_node.routing.kinds import question_kind
from edge_node.routing.rules import complexity_score, text_language
from shared.engines.asr import AsrResult
from shared.routing_config import Condition, RoutingPolicy, default_policy

if TYPE_CHECKING:
    from edge_node.cloud_link.link import CloudLink
    from edge_node.provider.link import ProviderLink
    from edge_node.routing.source import RoutingSource
    from edge_node.tools.toolbox import ToolBox, TurnTools

# The English phrases (edge_node/language/phrases.py has every language's).
APOLOGY = say("en", "apology")
CUT_OFF = say("en", "cut_off")


class Route(enum.StrEnum):
    """Who answers a turn. The values are the routing config's names and the metrics' ``route`` label."""

    NONE = "none"  # not decided yet (or no words: nothing to route)
    INTENT = "intent"
    CACHE = "cache"
    LOCAL_LLM = "local_llm"
    CLOUD = "cloud"
    PROVIDER = "provider"  # an OpenAI-compatible LLM the edge asks directly (edge_node/provider/)
    TOOL = "tool"  # a tool's result spoken on its own: a timer that came due
    APOLOGY = "apology"  # the end of a fallback chain
    FALLBACK = "fallback"  # no step of the order accepted the turn


# Answers that came from a model or the cache are conversation: the next turn's LLM prompt carries them.
_REMEMBERED = frozenset({Route.LOCAL_LLM, Route.CLOUD, Route.PROVIDER, Route.CACHE})
# Answers worth storing for other devices: a model's, complete (a fallback's words answer something else).
_STORED = frozenset({Route.LOCAL_LLM, Route.CLOUD, Route.PROVIDER})
# Routes that answer from outside the node: a turn sent to one is an escalation.
REMOTE_ROUTES = frozenset({Route.CLOUD, Route.PROVIDER})


class ChatBackend(Protocol):
    def chat_stream(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int | None = None,
        deadline: float | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> AsyncIterator[str]: ...


class AnswerStore(Protocol):
    async def find(self, question: str, language: str = "en") -> FoundAnswer | None: ...
    async def put(self, question: str, text: str, language: str = "en") -> None: ...
    def contains(self, question: str, language: str = "en") -> bool: ...


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
    language: str = ""  # what the ASR heard ("" for text turns)
    turn_id: str = ""  # unique per turn: names the turn in the cloud (cancel subject)
    gen: int = 0
    device_id: str = ""  # for the cloud worker's log lines only
    session_id: str = ""
    # Waits up to the given seconds for the device's MCP tools list; None when there is nothing to wait
    # for (no MCP, or the list is in). Only a turn that may need a device tool calls it.
    await_tools: Callable[[float], Awaitable[bool]] | None = None
    # Speak a sentence on this device after the given seconds (a timer tool); None: no session.
    announce: Callable[[str, float], bool] | None = None


@dataclass(slots=True)
class RouteResult:
    """``route`` is the route that is answering: it changes when the chain falls back, so the
    decisions that depend on it (``remember``, ``store``) are read once the words are spoken."""

    route: Route
    reason: str
    emotion: str
    text: AsyncIterator[str]
    cacheable: bool = False
    # The language the answer is in: its voice speaks it, and it keys the answer cache.
    language: str = "en"
    chosen: Route = Route.NONE  # the LLM route the rules picked (before any fallback)
    fell_back: list[str] = field(default_factory=list)

    @property
    def remember(self) -> bool:
        """Keep the exchange as conversation context for the device's next turn."""
        return self.route in _REMEMBERED

    @property
    def store(self) -> bool:
        """Store the answer for every device: a reusable question, answered in full by a model."""
        return self.cacheable and not self.fell_back and self.route in _STORED


async def _once(text: str) -> AsyncIterator[str]:
    yield text


@dataclass(frozen=True, slots=True)
class TurnFacts:
    """What the routing rules test about one turn."""

    language: str
    complexity: float
    words: list[str]
    depth: int  # jobs waiting for the edge's own LLM
    kind: str  # edge_node/routing/kinds.py
    local_score: float | None  # the local model's measured score on this kind in this language

    def describe(self) -> str:
        local = "unmeasured" if self.local_score is None else f"{self.local_score:.2f}"
        return f"language {self.language}, kind {self.kind}, local score {local}, complexity {self.complexity:.2f}"


def _matches(when: Condition, facts: TurnFacts) -> bool:
    if when.language is not None and facts.language not in when.language:
        return False
    if when.complexity_at_least is not None and facts.complexity < when.complexity_at_least:
        return False
    if when.words_at_least is not None and len(facts.words) < when.words_at_least:
        return False
    if when.llm_queue_depth_at_least is not None and facts.depth < when.llm_queue_depth_at_least:
        return False
    if when.kinds is not None and facts.kind not in when.kinds:
        return False
    if when.local_score_below is not None and (
        facts.local_score is None or facts.local_score >= when.local_score_below
    ):
        return False
    if when.keywords is not None:
        padded = f" {' '.join(facts.words)} "
        if not any(f" {k.lower()} " in padded for k in when.keywords):
            return False
    return True


def _reason_label(reason: str) -> str:
    """A bounded label for a route decision: ``rule:<name>`` (names come from the operator's
    config, so they are few), ``overflow``, ``default``, or ``no_cloud`` / ``no_provider`` /
    ``no_remote`` when a remote choice fell to the local LLM because this node does not have it."""
    for suffix, label in _NOT_HERE.items():
        if reason.endswith(suffix):
            return label
    head, _, rest = reason.partition(" ")
    if head == "rule":
        return f"rule:{rest.split(' ', 1)[0]}"
    return head.rstrip(":")


class Router:
    """Every per-turn decision: the words (the edge's transcript or the cloud's), the route, its
    fallbacks, and what of the answer is remembered and stored."""

    def __init__(
        self,
        llm: LlmConfig,
        intent: IntentConfig,
        mcp: McpConfig,
        chat: ChatBackend,
        answer_cache: AnswerStore | None = None,
        routing: RoutingSource | None = None,
        cloud: CloudLink | None = None,
        provider: ProviderLink | None = None,
        llm_queue_depth: Callable[[], int] | None = None,
        languages: list[str] | None = None,
        chats: dict[str, ChatBackend] | None = None,
        system_prompts: dict[str, str] | None = None,
        tools: ToolBox | None = None,
        tools_cfg: ToolsConfig | None = None,
        site: str = "",
    ) -> None:
        """``languages``: those the node answers in (default English only); a turn in another one is
        answered in the first of them. ``chats`` / ``system_prompts``: the local LLM and its prompt per
        non-English language (English: ``chat`` and ``llm.system_prompt``)."""
        self._llm_cfg = llm
        self.languages = languages or ["en"]
        self._chats = chats or {}
        self._prompts = system_prompts or {}
        self._intent_cfg = intent
        self._mcp = mcp
        self._chat = chat
        self.answer_cache = answer_cache
        self.routing = routing
        self.cloud = cloud
        self.provider = provider
        self._depth = llm_queue_depth or (lambda: 0)
        self._intents = IntentMatcher(intent.wake_words, intent.timezone_offset_min)
        self.tools = tools
        self.site = site  # this edge's site: the routing policy's prompts.sites key
        self._tools_cfg = tools_cfg or ToolsConfig()

    def answer_language(self, text: str, heard: str = "") -> str:
        """The language a turn is answered in: what was said (its script, else what the ASR heard)
        when the node serves it, else the node's first language."""
        language = text_language(text, heard)
        return language if language in self.languages else self.languages[0]

    @property
    def intents(self) -> IntentMatcher:
        return self._intents

    @property
    def policy(self) -> RoutingPolicy:
        return self.routing.policy if self.routing is not None else _DEFAULT

    def answers_at_once(self, text: str, caps: DeviceCapabilities, history_len: int, heard: str = "") -> bool:
        """Whether ``text`` would be answered by a rule or from the in-memory answer cache.

        Used to end a turn at a short pause instead of waiting out the full end-of-speech
        silence: only when the answer is certain and costs no model. A peek: no device state
        changes (the matcher works on a copy) and no cache statistics are counted. ``heard`` is the
        ASR's language, as for the turn itself (``answer_language``).
        """
        order = self.policy.order
        language = self.answer_language(text, heard)
        if Route.INTENT in order and self._intent_cfg.enabled:
            peek = DeviceCapabilities(caps.tools, caps.iot_methods, dict(caps.state), caps.tools_pending)
            if self._intents.match(text, peek, language) is not None:
                return True
        cache = self.answer_cache
        if Route.CACHE in order and cache is not None and is_reusable_question(text, history_len):
            return cache.contains(text, language)
        return False

    # -- the words ---------------------------------------------------------------------------
    async def confirm_transcript(
        self, heard: AsrResult, pcm: np.ndarray, log: logging.LoggerAdapter[logging.Logger]
    ) -> tuple[str, str]:
        """(text, language) of a spoken turn: the edge ASR's, or the cloud's multilingual ASR's when
        the routing policy says so (``asr.cloud``: always, or when the edge's model was unsure or
        heard nothing in audible speech). A cloud that fails keeps what the edge heard."""
        text, language = heard.text.strip(), heard.language
        reason = self._asr_escalation(heard)
        if reason is None:
            return text, language
        assert self.cloud is not None
        limits = self.policy.limits("cloud")
        metrics.ESCALATIONS.labels(kind="asr", reason=reason).inc()
        try:
            remote = await self.cloud.transcribe(pcm, limits.accept_timeout_s + limits.first_token_timeout_s)
        except Exception as exc:  # noqa: BLE001 - keep what the edge heard
            log.warning("cloud ASR unavailable (%s): keeping the edge's %r", exc, text)
            return text, language
        log.info("cloud asr (%s): %r replaces %r", remote.get("worker", "?"), remote["text"], text)
        return str(remote["text"]).strip(), str(remote.get("language") or language)

    def _asr_escalation(self, heard: AsrResult) -> str | None:
        """Why this utterance goes to the cloud's ASR (routing policy ``asr.cloud``), or None."""
        if self.cloud is None or not self.cloud.ready("asr"):
            return None
        rule = self.policy.asr
        if rule.cloud == "always":
            return "always"
        if rule.cloud == "never":
            return None
        unsure = heard.avg_logprob is not None and heard.avg_logprob < rule.min_avg_logprob
        return "low_confidence" if unsure or (not heard.text.strip() and heard.audio_ms > 800) else None

    async def store_answer(
        self, question: str, answer: str, log: logging.LoggerAdapter[logging.Logger], language: str = "en"
    ) -> None:
        """A complete answer to a reusable question goes to the answer cache (never fails the turn)."""
        if self.answer_cache is None:
            return
        try:
            await self.answer_cache.put(question, answer, language)
        except Exception as exc:  # noqa: BLE001
            log.warning("answer cache store failed: %r", exc)

    # -- the route ---------------------------------------------------------------------------
    async def route(self, ctx: TurnContext) -> RouteResult:
        policy = self.policy
        language = self.answer_language(ctx.text, ctx.language)
        for step in policy.order:
            if step == "intent" and self._intent_cfg.enabled:
                result = await self._intent(ctx, language)
            elif step == "cache":
                result = await self._cache(ctx, language)
            elif step == "llm":
                if ctx.await_tools is not None and self._tools_cfg.enabled and self.tools is not None:
                    if question_kind(ctx.text, language) == "device":  # the model needs the device's tools
                        await ctx.await_tools(self._mcp.tool_wait_s)
                result = self._llm(ctx, policy, language)
            else:
                result = None
            if result is not None:
                result.language = language
                return result
        return RouteResult(
            Route.FALLBACK, "no route accepted the turn", "sad", _once(say(language, "apology")), language=language
        )

    async def _intent(self, ctx: TurnContext, language: str) -> RouteResult | None:
        if ctx.await_tools is not None and self._intents.may_need_device(ctx.text):
            # A new device's tools list may still be on its way: a command waits for it, briefly.
            await ctx.await_tools(self._mcp.tool_wait_s)
        match = self._intents.match(ctx.text, ctx.caps, language)
        if match is None:
            return None
        if match.action is not None:
            try:
                await ctx.run_action(match.action)
            except Exception as exc:  # noqa: BLE001 - any device failure becomes a spoken answer
                ctx.log.warning("device action %s failed: %r", match.action.name, exc)
                return RouteResult(
                    Route.INTENT, f"{match.intent} action failed", "sad", _once(say(language, "device_no_response"))
                )
        return RouteResult(Route.INTENT, f"rule {match.intent}", match.emotion, _once(match.say))

    async def _cache(self, ctx: TurnContext, language: str) -> RouteResult | None:
        if self.answer_cache is None or not is_reusable_question(ctx.text, len(ctx.history)):
            return None
        if self.policy.prompt_for(ctx.device_id, self.site, language) is not None:
            return None  # a persona of its own: the fleet's shared answers are in another voice
        try:
            found = await self.answer_cache.find(ctx.text, language)
        except Exception as exc:  # noqa: BLE001 - a cache failure only means "ask the next route"
            ctx.log.warning("answer cache lookup failed: %r", exc)
            return None
        if found is None or not found.text:
            return None
        if found.via is None:
            return RouteResult(Route.CACHE, "answer cache hit", "neutral", _once(found.text))
        ctx.log.info("semantic cache hit: %r answered as %r (%.3f)", ctx.text, found.via.question, found.via.similarity)
        return RouteResult(Route.CACHE, "semantic cache hit", "neutral", _once(found.text))

    # -- the LLM step ---------------------------------------------------------------------------
    def choose(self, ctx: TurnContext, policy: RoutingPolicy) -> tuple[str, str]:
        """(choice, reason) for a turn that needs an LLM, by the policy's rules: a route's name or
        "escalate" (``_resolve`` says what that is on this node)."""
        facts = self.facts(ctx, policy)
        for rule in policy.llm.rules:
            if _matches(rule.when, facts):
                return rule.route, f"rule {rule.name} ({facts.describe()})"
        overflow = policy.llm.overflow
        if overflow is not None and facts.depth >= overflow.llm_queue_depth_at_least:
            return overflow.route, f"overflow: {facts.depth} LLM jobs queued"
        return policy.llm.default, f"default ({facts.describe()})"

    def facts(self, ctx: TurnContext, policy: RoutingPolicy) -> TurnFacts:
        language = text_language(ctx.text, ctx.language)
        kind = question_kind(ctx.text, language)
        return TurnFacts(
            language=language,
            complexity=complexity_score(ctx.text, policy.complexity),
            words=[w for w in "".join(c.lower() if c.isalnum() or c in " '" else " " for c in ctx.text).split() if w],
            depth=self._depth(),
            kind=kind,
            local_score=policy.local_score(self.answer_language(ctx.text, ctx.language), kind),
        )

    def _messages(self, ctx: TurnContext, language: str, policy: RoutingPolicy) -> list[dict[str, str]]:
        prompt = policy.prompt_for(ctx.device_id, self.site, language)
        if prompt is None:
            prompt = self._prompts.get(language, self._llm_cfg.system_prompt)
        messages = [{"role": "system", "content": prompt}]
        messages += ctx.history[-2 * self._llm_cfg.history_turns :] if self._llm_cfg.history_turns else []
        messages.append({"role": "user", "content": ctx.text})
        return messages

    def _llm(self, ctx: TurnContext, policy: RoutingPolicy, language: str) -> RouteResult:
        choice, reason = self.choose(ctx, policy)
        route, reason = self._resolve(choice, reason, policy)
        metrics.ROUTE_DECISIONS.labels(route=route, reason=_reason_label(reason)).inc()
        if route in REMOTE_ROUTES:
            kind = "llm" if route == Route.CLOUD else "provider"
            metrics.ESCALATIONS.labels(kind=kind, reason=_reason_label(reason)).inc()
        messages = self._messages(ctx, language, policy)
        # Stored for other devices only when the answer cannot depend on this conversation: a
        # reusable question that the LLM answered without any history in its prompt.
        cacheable = (
            self.answer_cache is not None
            and Route.CACHE in policy.order
            and len(messages) == 2
            and is_reusable_question(ctx.text, len(ctx.history))
            and policy.prompt_for(ctx.device_id, self.site, language) is None
        )
        result = RouteResult(route, reason, "neutral", _once(""), cacheable=cacheable, chosen=route, language=language)
        result.text = self._chain(ctx, policy, policy.chain(route), messages, result)
        return result

    def _has(self, route: str) -> bool:
        """Whether this node has the remote route at all (configured; it may still be failing)."""
        if route == Route.CLOUD:
            return self.cloud is not None and self.cloud.configured
        if route == Route.PROVIDER:
            return self.provider is not None and self.provider.configured
        return True

    def _ready(self, route: str) -> bool:
        if route == Route.CLOUD:
            return self.cloud is not None and self.cloud.ready()
        if route == Route.PROVIDER:
            return self.provider is not None and self.provider.ready()
        return True

    def _resolve(self, choice: str, reason: str, policy: RoutingPolicy) -> tuple[Route, str]:
        """The route a rule's choice means on this node: "escalate" is the first route of
        ``llm.escalation`` that is ready (else the first this node has, whose chain then falls back);
        a remote route the node lacks is the local LLM."""
        if choice == "escalate":
            have = [r for r in policy.llm.escalation if self._has(r)]
            if not have:
                return Route.LOCAL_LLM, f"{reason}; no cloud or provider on this node"
            ready = [r for r in have if self._ready(r)]
            return Route((ready or have)[0]), reason
        if choice == Route.CLOUD and not self._has(choice):
            return Route.LOCAL_LLM, f"{reason}; no cloud link on this node"
        if choice == Route.PROVIDER and not self._has(choice):
            return Route.LOCAL_LLM, f"{reason}; no provider on this node"
        return Route(choice), reason

    def _open(
        self, step: str, ctx: TurnContext, policy: RoutingPolicy, messages: list[dict[str, str]], language: str
    ) -> AsyncIterator[str]:
        limits = policy.limits(step)
        max_tokens = limits.max_tokens or self._llm_cfg.max_tokens
        if step == "cloud":
            if self.cloud is None or not self.cloud.configured:
                raise _Skip("no cloud link configured")
            return self.cloud.chat_stream(
                messages,
                max_tokens,
                ctx.turn_id or "turn",
                ctx.gen,
                limits,
                self._llm_cfg.temperature,
                device_id=ctx.device_id,
                session_id=ctx.session_id,
            )
        if step == "provider":
            provider = self.provider
            if provider is None or not provider.configured:
                raise _Skip("no provider configured")
            provider.configure_breaker(limits)
            if not provider.ready():
                raise _Skip("provider circuit open after repeated failures")

            def ask(msgs: list[dict[str, Any]], tools: _Tools, calls: _Tools) -> AsyncIterator[str]:
                if tools is None:
                    return provider.chat_stream(msgs, max_tokens, limits, device_id=ctx.device_id)
                return provider.chat_stream(msgs, max_tokens, limits, ctx.device_id, tools, calls)

        else:
            chat = self._chats.get(language, self._chat)

            def ask(msgs: list[dict[str, Any]], tools: _Tools, calls: _Tools) -> AsyncIterator[str]:
                # A local model writes its calls as text (edge_node/tools/calls.py): ``calls`` stays empty.
                if tools is None:
                    return chat.chat_stream(msgs, max_tokens, deadline=ctx.deadline)
                return chat.chat_stream(msgs, max_tokens, deadline=ctx.deadline, tools=tools)

        offered = self._tools_for(step, ctx, language)
        if offered is None:
            return ask(messages, None, None)
        from edge_node.tools.base import ToolContext
        from edge_node.tools.loop import answer_with_tools

        tool_ctx = ToolContext(
            ctx.device_id, language, ctx.log, self._intent_cfg.timezone_offset_min, announce=ctx.announce
        )
        cfg = self._tools_cfg
        return answer_with_tools(ask, messages, offered, tool_ctx, ctx.run_action, cfg.max_rounds, cfg.call_timeout_s)

    def _tools_for(self, step: str, ctx: TurnContext, language: str) -> TurnTools | None:
        """The tools this turn offers on this route, or None (tools off, another kind of turn, the cloud)."""
        cfg = self._tools_cfg
        if self.tools is None or not cfg.enabled or step not in cfg.routes:
            return None
        if cfg.kinds and question_kind(ctx.text, language) not in cfg.kinds:
            return None
        offered = self.tools.for_turn(ctx.caps)
        return offered if offered.specs else None

    async def _chain(
        self,
        ctx: TurnContext,
        policy: RoutingPolicy,
        chain: list[str],
        messages: list[dict[str, str]],
        result: RouteResult,
    ) -> AsyncIterator[str]:
        """Try each route of the chain until one produces words; see the module doc."""
        for i, step in enumerate(chain):
            nxt = chain[i + 1] if i + 1 < len(chain) else None
            if step == "apology":
                result.route, result.emotion = Route.APOLOGY, "sad"
                yield say(result.language, "apology")
                return
            try:
                stream = self._open(step, ctx, policy, messages, result.language)
            except _Skip as skip:
                ctx.log.info("route %s skipped (%s): trying %s", step, skip, nxt)
                self._fell_back(result, step, nxt)
                continue
            produced = False
            timeout = policy.limits(step).first_token_timeout_s
            iterator = aiter(stream)
            try:
                try:
                    first = await asyncio.wait_for(anext(iterator), timeout)
                except StopAsyncIteration:
                    raise _Skip("ended without a word") from None
                except TimeoutError:
                    raise _Skip(f"no first word within {timeout:.1f} s") from None
                produced = True
                result.route = Route(step)
                yield first
                async for delta in iterator:
                    yield delta
                return
            except BusyError:
                if produced or nxt not in REMOTE_ROUTES or not self._ready(nxt):
                    raise  # the reply says "busy" (nothing said yet) or ends (mid-answer)
                ctx.log.info("route %s saturated: trying %s", step, nxt)
                self._fell_back(result, step, nxt)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - any route failure goes down the chain
                if produced:
                    ctx.log.warning("route %s failed mid-answer: %s; ending the turn", step, exc)
                    metrics.FALLBACKS.labels(from_route=step, to_route="cut_off").inc()
                    result.fell_back.append("cut_off")
                    # Its own sentence: the device hears the break, then the apology.
                    yield "… " + say(result.language, "cut_off")
                    return
                ctx.log.warning("route %s failed before its first word (%s): trying %s", step, exc, nxt)
                self._fell_back(result, step, nxt)
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception:  # noqa: BLE001 - closing a broken stream must not mask the turn
                        pass

    @staticmethod
    def _fell_back(result: RouteResult, step: str, nxt: str | None) -> None:
        metrics.FALLBACKS.labels(from_route=step, to_route=nxt or "none").inc()
        result.fell_back.append(f"{step}->{nxt}")


_Tools = list[dict[str, Any]] | None

_NOT_HERE = {
    "no cloud link on this node": "no_cloud",
    "no provider on this node": "no_provider",
    "no cloud or provider on this node": "no_remote",
}


class _Skip(Exception):
    """A route that cannot be used for this turn (not configured, silent): go down the chain."""


_DEFAULT = default_policy()
