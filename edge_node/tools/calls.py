"""Reading a model's tool calls, in the forms models actually write them.

OpenAI-style providers (vLLM with a tool parser, DeepSeek, DashScope) return structured
``tool_calls``; ``shared/openai_stream.py`` collects those. A GGUF model on llama.cpp writes the call
as text, shaped by its chat template and its size: Qwen2.5 writes ``<tool_call>{...}</tool_call>``,
the Qwen2.5-Coder models a bare JSON object, often in a Markdown code fence and sometimes with its
braces doubled (``{{"name": ...}}``). ``parse_text_calls`` accepts all of these, and only for tools
that were offered, so an answer that merely contains JSON is not taken for a call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ToolCall", "looks_like_call", "parse_structured_calls", "parse_text_calls"]


@dataclass(slots=True)
class ToolCall:
    name: str  # the name the model used (the offered, sanitised name)
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = ""


_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def looks_like_call(head: str) -> bool:
    """Whether a reply that starts with ``head`` (leading space stripped) may be a tool call, so it must
    not be spoken until it is complete: JSON, a code fence or a ``<tool_call>`` tag."""
    return head[:1] in ("{", "[", "`") or head.startswith("<tool_call>") or "<tool_call>".startswith(head)


def _objects(text: str) -> list[Any]:
    text = text.strip()
    tagged = _TAGGED.findall(text)
    chunks = tagged if tagged else [_FENCE.sub("", text).strip()]
    found: list[Any] = []
    for chunk in chunks:
        for candidate in (chunk, _undouble(chunk)):
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            found.extend(value if isinstance(value, list) else [value])
            break
    return found


def _undouble(text: str) -> str:
    """``{{"name": "x", "arguments": {...}}}`` -> the single-braced object (a small model's slip)."""
    if text.startswith("{{") and text.endswith("}}"):
        inner = text[1:-1]
        # The doubled form may have one brace too many at the end ("...}}}}"): trim until it parses.
        for cut in range(0, 3):
            candidate = inner[: len(inner) - cut] if cut else inner
            try:
                json.loads(candidate)
                return candidate
            except ValueError:
                continue
    return text


def _arguments(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return None
    return raw if isinstance(raw, dict) else None


def parse_text_calls(text: str, offered: set[str]) -> list[ToolCall]:
    """The calls in a model's text reply, keeping only offered tools; [] when it is not a call."""
    calls: list[ToolCall] = []
    for obj in _objects(text):
        if not isinstance(obj, dict):
            continue
        fn = obj.get("function") if isinstance(obj.get("function"), dict) else obj
        name = fn.get("name")
        args = _arguments(fn.get("arguments", fn.get("parameters", {})))
        if isinstance(name, str) and name in offered and args is not None:
            calls.append(ToolCall(name, args, str(obj.get("id") or f"call_{len(calls)}")))
    return calls


def parse_structured_calls(raw: list[dict[str, Any]], offered: set[str]) -> list[ToolCall]:
    """OpenAI ``tool_calls`` as ``shared.openai_stream`` collected them ({id, name, arguments})."""
    calls: list[ToolCall] = []
    for item in raw:
        args = _arguments(item.get("arguments", ""))
        if item.get("name") in offered and args is not None:
            calls.append(ToolCall(str(item["name"]), args, str(item.get("id") or f"call_{len(calls)}")))
    return calls
