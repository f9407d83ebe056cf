"""The edge's direct route to an OpenAI-compatible LLM provider: Ollama, vLLM, DeepSeek, DashScope...

Most operators of Xiaozhi servers answer with a hosted or self-hosted model behind the OpenAI chat
API. This route asks it straight from the edge, without the NATS cloud tier: the routing policy
names it ``provider`` and gives it the same treatment as the cloud route (per-route timeouts from
``routes.provider``, a circuit breaker, the fallback chain to the local LLM and the spoken apology).

The API key is read once at start from a secret file or an environment variable (``ProviderConfig``)
and lives only in the ``Authorization`` header; it is never logged: error texts from the provider are
scrubbed of it before they reach a log line or an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from edge_node import metrics
from edge_node.cloud_link.breaker import CircuitBreaker
from edge_node.config import ProviderConfig
from shared.openai_stream import OpenAIError, stream_chat
from shared.routing_config import RouteLimits

log = logging.getLogger("edge_node.provider")

__all__ = ["ProviderError", "ProviderLink", "read_api_key"]


class ProviderError(RuntimeError):
    """The provider could not answer (refused, unreachable, silent, or its stream broke)."""


def read_api_key(cfg: ProviderConfig, environ: dict[str, str] | None = None) -> str:
    """The key from ``api_key_file`` (whitespace trimmed) or else the ``api_key_env`` variable; "" for
    none (a local Ollama or vLLM needs none). A named file that cannot be read is a start-up error."""
    if cfg.api_key_file:
        try:
            return Path(cfg.api_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"provider.api_key_file {cfg.api_key_file}: cannot read it ({exc})") from exc
    env = os.environ if environ is None else environ
    return env.get(cfg.api_key_env, "").strip() if cfg.api_key_env else ""


class ProviderLink:
    """One provider, one pooled HTTP client, one breaker; created once per node."""

    def __init__(self, cfg: ProviderConfig, api_key: str | None = None) -> None:
        self.cfg = cfg
        self._key = read_api_key(cfg) if api_key is None else api_key
        self.breaker = CircuitBreaker()
        self._client: httpx.AsyncClient | None = None

    @property
    def configured(self) -> bool:
        return bool(self.cfg.base_url)

    def ready(self) -> bool:
        """Worth trying now: configured and the circuit is not open (no side effects)."""
        return self.configured and self.breaker.state != "open"

    def configure_breaker(self, limits: RouteLimits) -> None:
        self.breaker.configure(limits.breaker.failures, limits.breaker.open_s)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # Per-read timeouts are the routing policy's (first word, between words); this bounds the
            # connection only, so a provider that is down fails fast.
            timeout = httpx.Timeout(None, connect=self.cfg.connect_timeout_s)
            self._client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=16))
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    async def chat_stream(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int,
        limits: RouteLimits,
        device_id: str = "",
        tools: list[dict[str, Any]] | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> AsyncIterator[str]:
        """Yield the reply's text deltas. Raises ProviderError before the first delta when the provider
        cannot answer (the router falls back), or after it when the stream breaks (the router ends
        the turn with an apology). ``limits.chunk_timeout_s`` bounds each wait after the first word;
        the router bounds the first one (``first_token_timeout_s``)."""
        if not self.configured:
            raise ProviderError("no provider configured")
        if not self.breaker.allow():
            metrics.PROVIDER_REQUESTS.labels(provider=self.cfg.name, result="circuit_open").inc()
            raise ProviderError(f"provider {self.cfg.name}: circuit open after repeated failures")
        started = time.perf_counter()
        attempt = 0
        while True:
            produced = 0
            stream = stream_chat(
                self._http(),
                self.cfg.base_url,
                self.cfg.model,
                messages,
                max_tokens,
                self.cfg.temperature,
                self._key,
                tools=tools,
                tool_calls=tool_calls,
            )
            try:
                while True:
                    wait = None if produced == 0 else limits.chunk_timeout_s
                    try:
                        delta = await asyncio.wait_for(anext(stream), wait)
                    except StopAsyncIteration:
                        break
                    if produced == 0:
                        metrics.STAGE_SECONDS.labels(stage="provider_first_chunk").observe(
                            time.perf_counter() - started
                        )
                    produced += 1
                    yield delta
            except (GeneratorExit, asyncio.CancelledError):
                metrics.PROVIDER_REQUESTS.labels(provider=self.cfg.name, result="cancelled").inc()
                raise
            except (OpenAIError, httpx.HTTPError, TimeoutError, ValueError) as exc:
                result = "timeout" if isinstance(exc, TimeoutError | httpx.TimeoutException) else "failed"
                detail = self._scrub(str(exc) or type(exc).__name__)
                # A refused or unreachable provider may take the next try; a broken stream may not.
                if produced == 0 and attempt < limits.retries and _worth_retry(exc):
                    attempt += 1
                    metrics.PROVIDER_REQUESTS.labels(provider=self.cfg.name, result="retried").inc()
                    log.info("provider %s: %s; retry %d of %d", self.cfg.name, detail, attempt, limits.retries)
                    continue
                self.breaker.failure()
                metrics.PROVIDER_REQUESTS.labels(provider=self.cfg.name, result=result).inc()
                where = "mid-answer" if produced else "before its first word"
                raise ProviderError(f"provider {self.cfg.name} failed {where}: {detail}") from None
            finally:
                await stream.aclose()
            if produced == 0 and not tool_calls:  # only calls is an answer too
                self.breaker.failure()
                metrics.PROVIDER_REQUESTS.labels(provider=self.cfg.name, result="empty").inc()
                raise ProviderError(f"provider {self.cfg.name} ended without a word")
            self.breaker.success()
            metrics.PROVIDER_REQUESTS.labels(provider=self.cfg.name, result="ok").inc()
            log.info(
                "provider %s (%s): answered %s in %.0f ms (%d chunks)",
                self.cfg.name,
                self.cfg.model,
                f"device {device_id}" if device_id else "a turn",
                (time.perf_counter() - started) * 1000,
                produced,
            )
            return


def _worth_retry(exc: BaseException) -> bool:
    """A busy or briefly unreachable provider: HTTP 429/5xx or a refused connection. A 4xx (a wrong
    key, an unknown model) fails the same way every time."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return True
    if isinstance(exc, OpenAIError):
        return exc.status in (429, 500, 502, 503, 504)
    return False
