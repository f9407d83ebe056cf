"""What a server-side tool is, and what it may use while it runs.

A tool is offered to the model as an OpenAI-style function (name, description, JSON-schema
parameters). Its ``call`` returns the sentence the device speaks: the result is spoken as the tool
phrased it rather than handed back to a small model to rephrase (which costs a second generation and
is where small models invent numbers). A tool that cannot do its job raises ``ToolError`` with a
reason for the log; the device hears an apology.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["ServerTool", "ToolContext", "ToolError", "function_spec"]


class ToolError(Exception):
    """A tool could not do what it was asked (bad arguments, an unreachable service)."""


@dataclass(slots=True)
class ToolContext:
    """One turn's view for a tool: whose device, which language, and how to speak later."""

    device_id: str
    language: str
    log: logging.LoggerAdapter[logging.Logger]
    timezone_offset_min: int | None = None
    # Speak ``text`` on this device in ``delay_s`` seconds (a timer or reminder); None when the turn
    # has no session to speak on (a text-only caller).
    announce: Callable[[str, float], bool] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ServerTool(Protocol):
    """A tool the server runs itself. ``name`` matches ``^[a-zA-Z0-9_-]{1,64}$`` (the OpenAI rule)."""

    name: str
    description: str
    parameters: dict[str, Any]

    def call(self, arguments: dict[str, Any], ctx: ToolContext) -> Awaitable[str]: ...


def function_spec(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI ``tools`` entry for one function."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}
