"""Only a turn that may need a device tool waits for the device's MCP tools list, and only briefly.

Firmware that announces ``mcp`` and answers it slowly (or never) must not delay the time, the date,
a greeting, a cached answer or an LLM question. The router is driven with a fake LLM (the test is
about the wait, not the answer) and a stand-in for the session's ``wait_for_tools``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edge_node.config import EdgeConfig
from edge_node.routing.intent import DeviceCapabilities, IntentMatcher
from edge_node.routing.router import Router, TurnContext

CFG = EdgeConfig()  # the defaults; the router takes its sections

VOLUME_TOOL = "self.audio_speaker.set_volume"


class FakeChat:
    """Fake LLM backend: one fixed sentence."""

    async def chat_stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None, deadline: float | None = None
    ) -> AsyncIterator[str]:
        yield "An answer from the model."


class SlowTools:
    """The session's wait for a tools list that arrives after ``arrives_after_s`` (None: never)."""

    def __init__(self, caps: DeviceCapabilities, arrives_after_s: float | None) -> None:
        self.caps = caps
        self.arrives_after_s = arrives_after_s
        self.waits: list[float] = []

    async def wait(self, timeout_s: float) -> bool:
        self.waits.append(timeout_s)
        if self.arrives_after_s is None or self.arrives_after_s > timeout_s:
            await asyncio.sleep(timeout_s)
            return False
        await asyncio.sleep(self.arrives_after_s)
        self.caps.tools = {VOLUME_TOOL: {}}
        self.caps.tools_pending = False
        return True


def _ctx(text: str, caps: DeviceCapabilities, tools: SlowTools, actions: list[Any]) -> TurnContext:
    async def run_action(action: Any) -> str:
        actions.append(action)
        return "ok"

    return TurnContext(
        text, [], caps, run_action, logging.LoggerAdapter(logging.getLogger("t"), {}), await_tools=tools.wait
    )


async def _route(text: str, arrives_after_s: float | None) -> tuple[str, str, SlowTools, list[Any], float]:
    router = Router(CFG.llm, CFG.intent, CFG.mcp, FakeChat())  # type: ignore[arg-type]
    caps = DeviceCapabilities(tools_pending=True)
    tools, actions = SlowTools(caps, arrives_after_s), []
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await router.route(_ctx(text, caps, tools, actions))
    elapsed = loop.time() - started
    words = "".join([d async for d in result.text])
    return result.route, words, tools, actions, elapsed


@pytest.mark.parametrize(
    "text", ["What time is it?", "What's the date today?", "Hello Xiaozhi!", "What is the capital of France?"]
)
async def test_turns_that_need_no_tool_never_wait(text: str) -> None:
    _route_name, _words, tools, _actions, _elapsed = await _route(text, None)
    assert tools.waits == []


async def test_a_command_waits_for_a_list_that_arrives_in_time_and_uses_it() -> None:
    route, words, tools, actions, _elapsed = await _route("Set the volume to 30.", 0.05)
    assert tools.waits == [EdgeConfig().mcp.tool_wait_s]
    assert route == "intent" and "volume set to 30" in words
    assert [a.name for a in actions] == [VOLUME_TOOL]


async def test_a_command_waits_at_most_the_bound_then_answers_without_the_tool() -> None:
    bound = EdgeConfig().mcp.tool_wait_s
    assert bound <= 0.3
    route, words, tools, actions, elapsed = await _route("Set the volume to 30.", None)
    assert tools.waits == [bound]
    assert elapsed < bound + 2.0  # the wait itself is the stand-in's; a generous margin for a busy machine
    assert route == "intent" and actions == []
    assert "yet" in words, words  # not "this device has no volume control": the list may still come


def test_which_turns_may_need_a_device_tool() -> None:
    matcher = IntentMatcher(["hi xiaozhi"])
    for text in [
        "Set the volume to 30.",
        "Louder please",
        "Make the screen brighter",
        "Switch to dark mode.",
        "Turn on the kitchen light.",
        "turn the fan off",
        "Open the curtains",
        "打开客厅的灯",
        "音量调大",
    ]:
        assert matcher.may_need_device(text), text
    for text in [
        "What time is it?",
        "What's the date today?",
        "hi xiaozhi",
        "What is the capital of France?",
        "Tell me a joke",
        "How many legs does a spider have?",
        "",
    ]:
        assert not matcher.may_need_device(text), text
