"""One LLM turn with tools: ask, run what the model calls, speak the result.

The reply streams as usual unless its first characters look like a call (JSON, a code fence, a
``<tool_call>`` tag, or structured ``tool_calls`` from an OpenAI-style provider); then nothing of it
is spoken, the calls run, and what they return is said. A call that only reads something (the
device's status) is handed back to the model for another round, up to ``max_rounds``. A call that
fails or times out is answered with a spoken apology. An empty delta is yielded as soon as a call is
recognised: the route has answered (the router must not fall back and run the tool twice).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from edge_node.language.phrases import say
from edge_node.routing.intent import DeviceAction
from edge_node.tools.base import ToolContext
from edge_node.tools.calls import ToolCall, looks_like_call, parse_structured_calls, parse_text_calls
from edge_node.tools.toolbox import TurnTools

__all__ = ["Ask", "answer_with_tools"]

# (messages, tools, structured tool calls out) -> the reply's text deltas
Ask = Callable[[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]], AsyncIterator[str]]


async def answer_with_tools(
    ask: Ask,
    messages: list[dict[str, Any]],
    tools: TurnTools,
    ctx: ToolContext,
    run_action: Callable[[DeviceAction], Awaitable[str]],
    max_rounds: int = 3,
    call_timeout_s: float = 5.0,
) -> AsyncIterator[str]:
    history = list(messages)
    announced = False
    for _ in range(max_rounds):
        structured: list[dict[str, Any]] = []
        head = ""
        speaking = False
        stream = ask(history, tools.specs, structured)
        try:
            async for delta in stream:
                if speaking:
                    yield delta
                    continue
                head += delta
                stripped = head.lstrip()
                if not stripped:
                    continue
                if looks_like_call(stripped):
                    if not announced:
                        announced = True
                        yield ""  # the route is answering: see the module doc
                    continue
                speaking = True
                yield head
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        if speaking:
            return
        calls = parse_structured_calls(structured, tools.names) or parse_text_calls(head, tools.names)
        if not calls:
            if head.strip():  # JSON or code that names no offered tool: say it rather than nothing
                ctx.log.info("model reply looked like a tool call but names no offered tool: %r", head[:200])
                yield head
            return
        if not announced:
            announced = True
            yield ""
        outcomes = [await tools.run(call, ctx, run_action, call_timeout_s) for call in calls]
        if any(o.failed for o in outcomes):
            yield say(ctx.language, "tool_failed")
            return
        if all(o.spoken for o in outcomes):
            yield " ".join(o.spoken for o in outcomes)
            return
        history += _exchange(calls, outcomes, head, bool(structured))
    ctx.log.warning("tool calls did not end within %d rounds", max_rounds)
    yield say(ctx.language, "tool_failed")


def _exchange(calls: list[ToolCall], outcomes: list[Any], text: str, structured: bool) -> list[dict[str, Any]]:
    """The model's calls and their results, as the next round's messages: OpenAI ``tool_calls`` for a
    provider that made them, the model's own text for one that wrote them (its template renders the
    ``tool`` role as a tool response)."""
    if structured:
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
                }
                for c in calls
            ],
        }
    else:
        assistant = {"role": "assistant", "content": text.strip()}
    results = [
        {"role": "tool", "tool_call_id": c.id, "name": c.name, "content": o.feed or o.spoken}
        for c, o in zip(calls, outcomes, strict=True)
    ]
    return [assistant, *results]
