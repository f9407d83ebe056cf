"""The tools one turn offers its model, and running the ones it calls.

A turn offers the server's tools (built-in and plugins, shared by every session) and the device's own
MCP tools from its ``tools/list``. Device tool names are dotted (``self.audio_speaker.set_volume``),
which the OpenAI function-name rule does not allow, so they are offered with dots as underscores and
mapped back. Where the node knows a setting's current level (the device reported it, or a rule set
it), the tool's description says so: "a bit louder" then needs one call instead of two, and a small
model does not have to guess the starting point.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from edge_node import metrics
from edge_node.language.phrases import SETTING_NAMES, say
from edge_node.routing.intent import DeviceAction, DeviceCapabilities
from edge_node.tools.base import ServerTool, ToolContext, function_spec
from edge_node.tools.calls import ToolCall

__all__ = ["Outcome", "ToolBox", "TurnTools"]

_NAME_OK = re.compile(r"[^a-zA-Z0-9_-]")
# Settings the node tracks in DeviceCapabilities.state, by the tool argument that carries them.
_LEVELS = ("volume", "brightness")


@dataclass(slots=True)
class Outcome:
    """What one call produced: a sentence to speak, or (``feed``) a result the model must read first."""

    spoken: str = ""
    feed: str = ""
    failed: bool = False


class TurnTools:
    """The offered tools of one turn: their specs, and how to run a call by its offered name."""

    def __init__(
        self,
        server: dict[str, ServerTool],
        device: dict[str, str],
        specs: list[dict[str, Any]],
        caps: DeviceCapabilities,
    ) -> None:
        self._server = server
        self._device = device  # offered name -> device tool name
        self.specs = specs
        self.caps = caps

    @property
    def names(self) -> set[str]:
        return set(self._server) | set(self._device)

    async def run(
        self,
        call: ToolCall,
        ctx: ToolContext,
        run_action: Callable[[DeviceAction], Awaitable[str]],
        timeout_s: float,
    ) -> Outcome:
        """Run one call within ``timeout_s``; a failure is logged and becomes an apology, never raised."""
        started = time.perf_counter()
        kind = "device" if call.name in self._device else "server"
        label = call.name if kind == "server" else "device"
        try:
            if kind == "server":
                spoken = await asyncio.wait_for(self._server[call.name].call(call.arguments, ctx), timeout_s)
                outcome = Outcome(spoken=spoken)
            else:
                outcome = await asyncio.wait_for(self._device_call(call, ctx, run_action), timeout_s)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except TimeoutError:
            metrics.TOOL_CALLS.labels(tool=label, result="timeout").inc()
            ctx.log.warning("tool %s timed out after %.1f s (arguments %s)", call.name, timeout_s, call.arguments)
            return Outcome(failed=True)
        except Exception as exc:  # noqa: BLE001 - ToolError, a device error, a plugin's bug: all spoken as failure
            metrics.TOOL_CALLS.labels(tool=label, result="error").inc()
            ctx.log.warning("tool %s failed: %s (arguments %s)", call.name, exc, call.arguments)
            return Outcome(failed=True)
        metrics.TOOL_CALLS.labels(tool=label, result="ok").inc()
        ctx.log.info(
            "tool %s(%s) -> %r in %.0f ms",
            call.name,
            json.dumps(call.arguments, ensure_ascii=False)[:200],
            (outcome.spoken or outcome.feed)[:120],
            (time.perf_counter() - started) * 1000,
        )
        return outcome

    async def _device_call(
        self, call: ToolCall, ctx: ToolContext, run_action: Callable[[DeviceAction], Awaitable[str]]
    ) -> Outcome:
        name = self._device[call.name]
        result = await run_action(DeviceAction("mcp", name, call.arguments))
        level = next((k for k in _LEVELS if isinstance(call.arguments.get(k), int | float)), None)
        if level is not None:
            value = int(call.arguments[level])
            self.caps.state[level] = value
            spoken_name = SETTING_NAMES.get(ctx.language, {}).get(level, level)
            return Outcome(spoken=say(ctx.language, "setting_set", key=level, name=spoken_name, level=value))
        if name.rsplit(".", 1)[-1].startswith(("get", "read", "list")):
            return Outcome(feed=result)  # information for the model, not an answer yet
        return Outcome(spoken=say(ctx.language, "tool_done"))


class ToolBox:
    """The node's server tools, loaded once; ``for_turn`` adds a device's own tools."""

    def __init__(self, tools: list[ServerTool]) -> None:
        self.server: dict[str, ServerTool] = {}
        for tool in tools:
            if _NAME_OK.search(tool.name) or not 1 <= len(tool.name) <= 64:
                raise ValueError(f"tool name {tool.name!r}: letters, digits, _ and - only, at most 64")
            if tool.name in self.server:
                raise ValueError(f"two tools are named {tool.name!r}")
            self.server[tool.name] = tool

    def for_turn(self, caps: DeviceCapabilities) -> TurnTools:
        specs = [function_spec(t.name, t.description, t.parameters) for t in self.server.values()]
        device: dict[str, str] = {}
        for name, schema in sorted(caps.tools.items()):
            offered = _NAME_OK.sub("_", name)[:64]
            if offered in self.server or offered in device:
                continue
            device[offered] = name
            specs.append(function_spec(offered, _describe(name, caps), schema or {"type": "object", "properties": {}}))
        return TurnTools(self.server, device, specs, caps)


def _describe(name: str, caps: DeviceCapabilities) -> str:
    """The device's description, plus the level the node knows for a setting it sets."""
    text = caps.descriptions.get(name, "") or f"Device tool {name}."
    schema = caps.tools.get(name) or {}
    for level in _LEVELS:
        if level in (schema.get("properties") or {}) and isinstance(caps.state.get(level), int | float):
            now = int(caps.state[level])
            text += (
                f" The {level} is now {now}: more is a higher number (a bit more: {min(100, now + 10)}),"
                f" less a lower one (a bit less: {max(0, now - 10)})."
            )
    return text
