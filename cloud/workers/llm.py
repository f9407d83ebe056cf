"""The cloud LLM worker: chat requests from edges, streamed from an OpenAI-compatible endpoint.

Requests arrive on ``xz.cloud.llm`` in the ``llm`` queue group, so any number of workers (each a
thin proxy: vLLM does the batching) share the load and a dead one is just a missing responder.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx

from cloud.config import LlmWorkerConfig
from shared import metrics
from shared.openai_stream import stream_chat

log = logging.getLogger("cloud.llm")

__all__ = ["LlmRequestError", "LlmWorker", "parse_chat_request"]


class LlmRequestError(ValueError):
    """A chat request an edge should not have sent: the message says what is wrong."""


def parse_chat_request(body: bytes, cap: int) -> tuple[list[dict[str, str]], int, float]:
    """(messages, max_tokens, temperature) from a request body, validated."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise LlmRequestError(f"body is not JSON: {exc}") from exc
    except RecursionError:  # found by fuzzing: deeply nested arrays are not a ValueError
        raise LlmRequestError("body is not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise LlmRequestError("body must be a JSON object")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise LlmRequestError("messages must be a non-empty list")
    clean: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise LlmRequestError(f"messages[{i}] needs a role of system, user or assistant")
        if not isinstance(m.get("content"), str):
            raise LlmRequestError(f"messages[{i}].content must be a string")
        clean.append({"role": m["role"], "content": m["content"]})
    max_tokens = data.get("max_tokens", 128)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise LlmRequestError("max_tokens must be a positive integer")
    temperature = data.get("temperature", 0.3)
    if not isinstance(temperature, int | float) or isinstance(temperature, bool) or temperature < 0:
        raise LlmRequestError("temperature must be a number >= 0")
    # Found by fuzzing: NaN/Infinity (Python's json accepts them) passed the check above, and an
    # integer too large for a float raised OverflowError in float().
    too_big = isinstance(temperature, int) and temperature > 1e6  # no float() of a 400-digit int
    if too_big or not math.isfinite(temperature):
        raise LlmRequestError("temperature must be a finite number >= 0")
    return clean, min(max_tokens, cap), float(temperature)


class LlmWorker:
    def __init__(self, cfg: LlmWorkerConfig) -> None:
        self.cfg = cfg
        timeout = httpx.Timeout(connect=cfg.connect_timeout_s, read=cfg.read_timeout_s, write=10.0, pool=10.0)
        limits = httpx.Limits(max_connections=cfg.max_inflight, max_keepalive_connections=cfg.max_inflight)
        self.http = httpx.AsyncClient(timeout=timeout, limits=limits)
        self.tokens_out = 0

    async def close(self) -> None:
        await self.http.aclose()

    async def generate(self, body: bytes, headers: dict[str, str], cancelled: asyncio.Event) -> AsyncIterator[bytes]:
        messages, max_tokens, temperature = parse_chat_request(body, self.cfg.max_tokens_cap)
        usage: dict[str, Any] = {}
        stream = stream_chat(
            self.http, self.cfg.base_url, self.cfg.model, messages, max_tokens, temperature, self.cfg.api_key, usage
        )
        deltas = 0
        try:
            async for delta in stream:
                if cancelled.is_set():
                    break
                deltas += 1
                yield delta.encode("utf-8")
        finally:
            await stream.aclose()  # closes the HTTP response: vLLM stops generating
            # vLLM reports usage at the end of the stream; a server that does not (llama.cpp's), or
            # a stream cut short, is counted by its deltas: both stream one token per delta.
            completion = int(usage.get("completion_tokens") or deltas)
            self.tokens_out += completion
            prompt = int(usage.get("prompt_tokens") or 0)
            metrics.LLM_TOKENS.labels(direction="prompt", model=self.cfg.model).inc(prompt)
            metrics.LLM_TOKENS.labels(direction="completion", model=self.cfg.model).inc(completion)
