"""Local chat LLM on llama.cpp (llama-cpp-python), streamed token by token.

Why in-process rather than ``llama_cpp.server``: no HTTP hop, no server that cancels concurrent
requests by default (docs/models.md §10), and cancellation is a flag checked between tokens. The
model context is not thread safe, so the caller runs every call on one dedicated LLM thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Protocol

from edge_node import metrics
from edge_node.config import LlmConfig
from shared import models
from shared.engines.errors import ModelError

__all__ = ["ChatModel", "LlamaLlm"]


class ChatModel(Protocol):
    """What an LLM worker needs from a chat model (LlamaLlm, or the fleet run's TimingLlm)."""

    name: str

    def stream_chat(
        self,
        messages: list[dict[str, str]],
        max_tokens: int | None = None,
        cancel: threading.Event | None = None,
        tools: list[dict] | None = None,
    ) -> Iterator[str]: ...


class LlamaLlm:
    """One llama.cpp model, loaded once; the GGUF's own chat template formats the messages."""

    def __init__(self, cfg: LlmConfig) -> None:
        import llama_cpp

        try:
            path = models.llm_path(cfg.model_path) if cfg.model_path else models.smollm2_gguf()
        except models.ModelNotFound as exc:
            raise ModelError(str(exc)) from exc
        if not path.is_file():
            raise ModelError(f"LLM model file not found: {path}")
        self.cfg = cfg
        self.path = path
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=cfg.n_ctx,
                n_threads=cfg.threads,
                n_threads_batch=cfg.threads,
                verbose=False,
            )
        except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError on bad files
            raise ModelError(f"cannot load LLM {path}: {exc}") from exc
        self.name = f"llama.cpp:{path.name}"

    def stream_chat(
        self,
        messages: list[dict[str, str]],
        max_tokens: int | None = None,
        cancel: threading.Event | None = None,
        tools: list[dict] | None = None,
    ) -> Iterator[str]:
        """Yield the reply's text deltas; stops within one token once ``cancel`` is set.

        Not thread safe: the caller serialises calls. The underlying generator is always closed,
        so an abandoned or cancelled reply frees the context for the next one.
        """
        if cancel is not None and cancel.is_set():
            return
        kwargs: dict[str, Any] = {
            "messages": messages,
            "stream": True,
            "temperature": self.cfg.temperature,
            "repeat_penalty": self.cfg.repeat_penalty,
            "max_tokens": max_tokens if max_tokens is not None else self.cfg.max_tokens,
        }
        if tools:
            kwargs["tools"] = tools
        stream = self._llm.create_chat_completion(**kwargs)
        produced = 0
        try:
            for chunk in stream:
                if cancel is not None and cancel.is_set():
                    break
                choices = chunk.get("choices") or []
                if not choices:
                    continue
                delta = choices[0].get("delta") or {}
                text = delta.get("content")
                if text:
                    produced += 1  # llama.cpp streams one token per chunk
                    yield text
                if cancel is not None and cancel.is_set():
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            # After the call the context holds the prompt and the reply: the difference is the prompt.
            prompt = max(0, int(getattr(self._llm, "n_tokens", 0)) - produced)
            metrics.LLM_TOKENS.labels(direction="prompt", model=self.name).inc(prompt)
            metrics.LLM_TOKENS.labels(direction="completion", model=self.name).inc(produced)
