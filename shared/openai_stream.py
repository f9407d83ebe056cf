"""Streaming chat completions from an OpenAI-compatible endpoint with httpx: the cloud LLM worker's
vLLM, and an edge's direct provider route (Ollama, vLLM, DeepSeek, DashScope: docs/providers.md).

vLLM serves ``POST /v1/chat/completions`` with ``"stream": true`` as server-sent events: lines
``data: {chunk}`` with the text in ``choices[0].delta.content``, then ``data: [DONE]``. Production:

    vllm serve Qwen/Qwen2.5-7B-Instruct --served-model-name qwen-7b --max-model-len 8192 \\
        --gpu-memory-utilization 0.90 --port 8000

Tests and this machine serve the same API from ``llama-cpp-python[server]`` on the bundled model
(``python -m llama_cpp.server --model <gguf> --model_alias smollm2 --interrupt_requests False``).
Closing the iterator closes the HTTP response, which is how vLLM learns to stop generating.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["OpenAIError", "stream_chat"]


class OpenAIError(RuntimeError):
    """The endpoint answered with an error status (``status``) or a malformed stream (status 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


async def stream_chat(
    client: httpx.AsyncClient,
    base_url: str,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    temperature: float = 0.3,
    api_key: str = "",
    usage: dict[str, Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> AsyncIterator[str]:
    """Yield text deltas; ``usage`` (if given) is filled from the stream's final usage chunk.

    With ``tools`` the model may call them: the calls it streams (``delta.tool_calls``, in pieces
    keyed by index) are joined and appended to ``tool_calls`` as ``{id, name, arguments}`` (arguments
    the JSON text the model wrote) once the stream ends."""
    url = base_url.rstrip("/") + "/chat/completions"
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = tools
    calls: dict[int, dict[str, Any]] = {}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with client.stream("POST", url, json=body, headers=headers) as resp:
        if resp.status_code != 200:
            text = (await resp.aread()).decode("utf-8", errors="replace")[:300]
            raise OpenAIError(f"{url}: HTTP {resp.status_code}: {text}", resp.status_code)
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError as exc:
                raise OpenAIError(f"{url}: malformed stream line {data[:120]!r}") from exc
            if usage is not None and isinstance(chunk.get("usage"), dict):
                usage.update(chunk["usage"])
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    yield text
                for piece in delta.get("tool_calls") or []:
                    _join_call(calls, piece)
    if tool_calls is not None:
        tool_calls.extend(calls[i] for i in sorted(calls))


def _join_call(calls: dict[int, dict[str, Any]], piece: Any) -> None:
    """One streamed piece of a tool call: the first names it, the rest append to its arguments."""
    if not isinstance(piece, dict):
        return
    index = piece.get("index", len(calls))
    if not isinstance(index, int):
        return
    call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    call["id"] = piece.get("id") or call["id"]
    fn = piece.get("function") or {}
    if isinstance(fn, dict):
        call["name"] = fn.get("name") or call["name"]
        if isinstance(fn.get("arguments"), str):
            call["arguments"] += fn["arguments"]
