"""A timing stand-in for vLLM's OpenAI-compatible chat API: no model, only a GPU's timing.

    .venv/bin/python -m bench.fleet.timing_openai --host 127.0.0.1 --port 0 \\
        --first-token-s 0.35 --per-token-s 0.03 --max-concurrency 64

The fleet run needs a cloud LLM endpoint on a machine without a GPU. Running a real model on the
CPU would make the cloud's answer time a CPU benchmark, and leaving the endpoint out would skip the
escalation path. This server sits in between: it speaks the same HTTP API as ``vllm serve``
(``POST /v1/chat/completions``, streamed as server-sent events or answered as one JSON completion,
``GET /v1/models``) plus ``GET /health``, so the real cloud LLM worker (``cloud/workers/llm.py``,
streaming with ``shared/openai_stream.py``) and the whole NATS escalation path run unchanged, while
what the GPU would do is simulated:

- each request waits for one of ``max_concurrency`` slots (vLLM's batch limit; the wait counts
  toward the time to first token, as queueing in vLLM does),
- then sleeps ``first_token_s`` (prefill), then streams a canned reply one word per token, one
  every ``per_token_s`` (decode), stopping after the request's ``max_tokens``,
- and stops at once when the client goes away (the worker closes the response to cancel).

It is a TIMING STAND-IN and says so everywhere: the model id it reports is
``timing-stand-in:<model>``, the canned reply says it, and its log lines start with "timing
stand-in". A report that quotes its answers or its throughput as a model's would be wrong; what it
measures is everything around the model.

Once listening it prints one line, ``READY timing-openai url=http://<host>:<port>/v1``, to stdout.
SIGTERM or SIGINT stop it (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

__all__ = ["DEFAULT_REPLY", "MODEL_PREFIX", "TimingLlmSpec", "build_app", "main", "start_server"]

log = logging.getLogger("bench.fleet.timing_openai")

MODEL_PREFIX = "timing-stand-in:"
DEFAULT_REPLY = (
    "This is a timed stand-in answer from the fleet benchmark, not a real model: it only reproduces "
    "how long a GPU serving the real model takes to start and to stream each word of its reply."
)
# Graceful stop: how long in-flight streams may run on after SIGTERM before they are cancelled. A
# stand-in has nothing worth finishing, so this is short and the fleet run's teardown stays fast.
_SHUTDOWN_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class TimingLlmSpec:
    """How the simulated GPU behaves; the defaults are a 7B model on one GPU under light load."""

    first_token_s: float = 0.35  # prefill: slot acquired -> first token
    per_token_s: float = 0.03  # decode: one token (here: one word) every this many seconds
    reply: str = DEFAULT_REPLY  # the canned answer, streamed word by word
    max_concurrency: int = 64  # vLLM's batch limit: further requests queue for a slot
    model: str = "qwen2.5-7b-instruct"  # reported as timing-stand-in:<model>

    def __post_init__(self) -> None:
        if self.first_token_s < 0 or self.per_token_s < 0:
            raise ValueError("first_token_s and per_token_s must be >= 0")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if not self.reply.split():
            raise ValueError("reply must contain at least one word")

    @property
    def model_id(self) -> str:
        """The id every answer carries, so no log or report can mistake this for the real model."""
        return MODEL_PREFIX + self.model

    def tokens(self) -> list[str]:
        """The reply as stream deltas: one word each, later words with their leading space."""
        words = self.reply.split()
        return [words[0]] + [" " + w for w in words[1:]]


class _BadRequest(ValueError):
    """The request body is not a chat request; the message goes back in an OpenAI-style 400."""


@dataclass(frozen=True)
class _ChatRequest:
    stream: bool
    max_tokens: int | None
    include_usage: bool
    prompt_tokens: int


class _State:
    """The slot pool and counters shared by all requests of one app."""

    def __init__(self, spec: TimingLlmSpec) -> None:
        self.spec = spec
        self.slots = asyncio.Semaphore(spec.max_concurrency)
        self.waiting = 0
        self.active = 0
        self.served = 0
        self.cancelled = 0


_STATE = web.AppKey("timing_state", _State)


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    """An error in OpenAI's shape, which clients (and ``stream_chat``'s error text) expect."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status)


def _count_words(content: Any) -> int:
    """A rough prompt token count (words), so the worker's usage metrics are not all zero."""
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
        return sum(len(p["text"].split()) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def _parse(raw: bytes) -> _ChatRequest:
    """Validate the body as far as the timing depends on it; anything else in it is ignored."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("messages must be a non-empty list")
    if not all(isinstance(m, dict) for m in messages):
        raise _BadRequest("each message must be an object")
    max_tokens = data.get("max_tokens", data.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise _BadRequest("max_tokens must be a positive integer")
    options = data.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    prompt_tokens = sum(_count_words(m.get("content")) for m in messages)
    return _ChatRequest(data.get("stream") is True, max_tokens, include_usage, prompt_tokens)


async def _sleep_until(deadline: float) -> None:
    """Sleep to an absolute loop time: token times stay on schedule instead of drifting per sleep."""
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


def _chunk(cid: str, created: int, model: str, delta: dict[str, str], finish: str | None) -> bytes:
    """One SSE event in vLLM's chunk shape (``choices[0].delta.content`` carries the text)."""
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n"


async def _chat(request: web.Request) -> web.StreamResponse:
    state = request.app[_STATE]
    spec = state.spec
    try:
        req = _parse(await request.read())
    except _BadRequest as exc:
        return _error(400, str(exc))
    tokens = spec.tokens()
    if req.max_tokens is not None:
        tokens = tokens[: req.max_tokens]
    finish = "length" if len(tokens) < len(spec.tokens()) else "stop"
    usage = {
        "prompt_tokens": req.prompt_tokens,
        "completion_tokens": len(tokens),
        "total_tokens": req.prompt_tokens + len(tokens),
    }
    cid = f"chatcmpl-timing-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    loop = asyncio.get_running_loop()
    arrived = loop.time()

    resp: web.StreamResponse | None = None
    if req.stream:
        # Headers go out at once, as vLLM's do; the queueing and prefill show as a silent stream.
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

    state.waiting += 1
    queued = True
    try:
        # The handler is cancelled when the client disconnects (handler_cancellation in start_server),
        # which ends the sleep, releases the slot and leaves nothing running.
        async with state.slots:
            state.waiting -= 1
            queued = False
            state.active += 1
            try:
                start = loop.time()
                first_at = start + spec.first_token_s
                if resp is None:
                    await _sleep_until(first_at + spec.per_token_s * max(len(tokens) - 1, 0))
                    out: web.StreamResponse = _completion(cid, created, spec.model_id, "".join(tokens), finish, usage)
                else:
                    for i, token in enumerate(tokens):
                        await _sleep_until(first_at + i * spec.per_token_s)
                        delta = {"role": "assistant", "content": token} if i == 0 else {"content": token}
                        await resp.write(_chunk(cid, created, spec.model_id, delta, None))
                    await resp.write(_chunk(cid, created, spec.model_id, {}, finish))
                    if req.include_usage:  # vLLM's last chunk: no choices, only usage
                        final = {
                            "id": cid,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": spec.model_id,
                            "choices": [],
                            "usage": usage,
                        }
                        await resp.write(b"data: " + json.dumps(final).encode("utf-8") + b"\n\n")
                    await resp.write(b"data: [DONE]\n\n")
                    await resp.write_eof()
                    out = resp
            finally:
                state.active -= 1
    except (asyncio.CancelledError, ConnectionResetError):
        # The client went away (the worker closed the stream) or the server is stopping: stop here.
        state.cancelled += 1
        log.debug("timing stand-in: %s cancelled (client gone or stopping) after %.3fs", cid, loop.time() - arrived)
        raise
    finally:
        if queued:  # cancelled while still waiting for a slot
            state.waiting -= 1
    state.served += 1
    log.debug("timing stand-in: %s waited %.3fs for a slot, %d tokens", cid, start - arrived, len(tokens))
    return out


def _completion(cid: str, created: int, model: str, text: str, finish: str, usage: dict[str, int]) -> web.Response:
    """The non-streaming answer in OpenAI's ``chat.completion`` shape."""
    body = {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}
        ],
        "usage": usage,
    }
    return web.json_response(body)


async def _models(request: web.Request) -> web.Response:
    spec = request.app[_STATE].spec
    entry = {"id": spec.model_id, "object": "model", "created": 0, "owned_by": "timing-stand-in"}
    return web.json_response({"object": "list", "data": [entry]})


async def _health(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return web.json_response(
        {
            "status": "ok",
            "kind": "timing-stand-in",
            "model": state.spec.model_id,
            "active": state.active,
            "waiting": state.waiting,
            "served": state.served,
            "cancelled": state.cancelled,
        }
    )


def build_app(spec: TimingLlmSpec) -> web.Application:
    """The aiohttp app; its slot pool is created here, on the loop that will serve it."""
    app = web.Application()
    app[_STATE] = _State(spec)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    return app


async def start_server(spec: TimingLlmSpec, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve ``spec`` on host:port (0: a free port) in the running loop; returns (runner, bound port).

    Call ``await runner.cleanup()`` to stop. Handler cancellation is on so that a client that
    disconnects while its request waits for a slot or for the first token frees the slot at once,
    as vLLM aborts a request whose connection closed.
    """
    runner = web.AppRunner(
        build_app(spec), handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT_S, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    shown = {**asdict(spec), "reply": f"{len(spec.tokens())} words: {spec.reply[:60]}..."}
    log.info("timing stand-in listening on %s:%d (no model runs here): %s", host, bound, shown)
    return runner, int(bound)


async def _serve(spec: TimingLlmSpec, host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner, bound = await start_server(spec, host, port)
    url_host = f"[{host}]" if ":" in host else host
    print(f"READY timing-openai url=http://{url_host}:{bound}/v1", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("timing stand-in stopping")
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench.fleet.timing_openai", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = TimingLlmSpec()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: any free port (default 8000, vLLM's)")
    p.add_argument("--first-token-s", type=float, default=d.first_token_s, help="prefill time once a slot is free")
    p.add_argument("--per-token-s", type=float, default=d.per_token_s, help="time per streamed word")
    p.add_argument("--reply", default=d.reply, help="the canned answer, streamed word by word")
    p.add_argument("--max-concurrency", type=int, default=d.max_concurrency, help="batch slots; others queue")
    p.add_argument("--model", default=d.model, help="reported as timing-stand-in:<model>")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = p.parse_args(argv)
    fmt = "%(asctime)s %(name)s %(levelname)s %(message)s"
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format=fmt)
    try:
        spec = TimingLlmSpec(
            first_token_s=args.first_token_s,
            per_token_s=args.per_token_s,
            reply=args.reply,
            max_concurrency=args.max_concurrency,
            model=args.model,
        )
    except ValueError as exc:
        p.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(spec, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
