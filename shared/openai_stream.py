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
) -> AsyncIterator[str]:
    """Yield text deltas; ``usage`` (if given) is filled from the stream's final usage chunk."""
    url = base_url.rstrip("/") + "/chat/completions"
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
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
                return
            try:
                chunk = json.loads(data)
            except ValueError as exc:
                raise OpenAIError(f"{url}: malformed stream line {data[:120]!r}") from exc
            if usage is not None and isinstance(chunk.get("usage"), dict):
                usage.update(chunk["usage"])
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text
