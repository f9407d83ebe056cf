"""The timing stand-in for vLLM: the project's own streaming client must read it, and its timing must hold.

The cloud LLM worker streams with ``shared.openai_stream.stream_chat``, so the tests use that client:
if the stand-in's SSE format drifted from what the worker parses, these fail, not the fleet run.
Timing assertions are lower bounds with a 0.8 margin (sleeps never end early), so a slow machine
cannot make them flake.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.fleet.timing_openai import MODEL_PREFIX, TimingLlmSpec, start_server
from shared.openai_stream import stream_chat

ROOT = Path(__file__).resolve().parents[2]
FIRST_TOKEN_S = 0.2
PER_TOKEN_S = 0.01
MESSAGES = [{"role": "user", "content": "How long is a piece of string?"}]


@asynccontextmanager
async def serve(spec: TimingLlmSpec) -> AsyncIterator[str]:
    """The stand-in on a free loopback port for one test; yields its base URL (…/v1)."""
    runner, port = await start_server(spec, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def fast_spec(**kw: Any) -> TimingLlmSpec:
    return TimingLlmSpec(first_token_s=FIRST_TOKEN_S, per_token_s=PER_TOKEN_S, **kw)


async def timed_stream(
    client: httpx.AsyncClient, url: str, max_tokens: int = 512, usage: dict[str, Any] | None = None
) -> tuple[str, float, float, float]:
    """(text, start, first-delta time, end) of one streamed request, on the monotonic clock."""
    start = time.monotonic()
    first = 0.0
    parts: list[str] = []
    async for delta in stream_chat(client, url, "qwen-7b", MESSAGES, max_tokens, usage=usage):
        if not parts:
            first = time.monotonic()
        parts.append(delta)
    return "".join(parts), start, first, time.monotonic()


async def test_stream_through_project_client() -> None:
    spec = fast_spec()
    async with serve(spec) as url, httpx.AsyncClient(timeout=10) as client:
        usage: dict[str, Any] = {}
        text, start, first, end = await timed_stream(client, url, usage=usage)
        assert text.split() == spec.reply.split()
        assert first - start >= FIRST_TOKEN_S
        words = len(spec.reply.split())
        assert end - start >= 0.8 * (FIRST_TOKEN_S + (words - 1) * PER_TOKEN_S)
        assert usage["completion_tokens"] == words
        assert usage["prompt_tokens"] == len(MESSAGES[0]["content"].split())

        usage = {}
        text, *_ = await timed_stream(client, url, max_tokens=5, usage=usage)
        assert text.split() == spec.reply.split()[:5]
        assert usage["completion_tokens"] == 5


async def test_raw_stream_shape_and_plain_completion() -> None:
    """Model id, finish_reason and the [DONE] end, as vLLM sends them; and the non-streaming answer."""
    spec = fast_spec(model="m1")
    async with serve(spec) as url, httpx.AsyncClient(timeout=10) as client:
        body = {"model": "anything", "messages": MESSAGES, "max_tokens": 3, "stream": True}
        resp = await client.post(url + "/chat/completions", json=body)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in resp.text.split("\n\n") if line]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert {c["model"] for c in chunks} == {MODEL_PREFIX + "m1"}
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert "usage" not in chunks[-1]  # only sent when stream_options.include_usage asks for it

        resp = await client.post(url + "/chat/completions", json={"messages": MESSAGES})
        assert resp.status_code == 200
        data = resp.json()
        assert data["object"] == "chat.completion"
        assert data["choices"][0]["message"]["content"] == spec.reply
        assert data["choices"][0]["finish_reason"] == "stop"

        models = (await client.get(url + "/models")).json()
        assert [m["id"] for m in models["data"]] == [MODEL_PREFIX + "m1"]


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[1, 2]",
        b'{"model": "x"}',
        b'{"messages": "hi"}',
        b'{"messages": [], "max_tokens": 5}',
        b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}',
    ],
)
async def test_bad_body_is_400(content: bytes) -> None:
    async with serve(fast_spec()) as url, httpx.AsyncClient(timeout=10) as client:
        resp = await client.post(url + "/chat/completions", content=content)
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"]


async def test_concurrency_limit_queues_the_second_request() -> None:
    spec = fast_spec(reply=" ".join(f"w{i}" for i in range(20)), max_concurrency=1)
    async with serve(spec) as url, httpx.AsyncClient(timeout=10) as client:
        a, b = await asyncio.gather(timed_stream(client, url), timed_stream(client, url))
        first, second = sorted([a, b], key=lambda r: r[2])  # by time of first token
        assert first[0] == second[0] == spec.reply
        # The second waits for the first's whole stream, then its own prefill.
        expected = (first[3] - first[1]) + FIRST_TOKEN_S
        assert second[2] - second[1] >= 0.8 * expected
        assert second[2] >= first[3] - 0.05  # its first token comes after the first stream ended


async def test_client_disconnect_frees_the_slot() -> None:
    # 400 words at 0.05 s: a stream left running would hold the only slot for 20 s.
    spec = TimingLlmSpec(first_token_s=0.2, per_token_s=0.05, reply=" ".join(["word"] * 400), max_concurrency=1)
    async with serve(spec) as url, httpx.AsyncClient(timeout=10) as client:
        stream = stream_chat(client, url, "qwen-7b", MESSAGES, 512)
        got = [await anext(stream) for _ in range(3)]
        assert got == ["word", " word", " word"]
        await stream.aclose()  # closes the response, as the cloud worker does on cancel

        # Disconnect while still waiting for the first token, too.
        async with client.stream("POST", url + "/chat/completions", json={"messages": MESSAGES, "stream": True}):
            await asyncio.sleep(0.05)

        start = time.monotonic()
        text, *_ = await asyncio.wait_for(timed_stream(client, url, max_tokens=3), timeout=5)
        assert text == "word word word"
        assert time.monotonic() - start < 3

        health = (await client.get(url.removesuffix("/v1") + "/health")).json()
        assert health["active"] == 0 and health["waiting"] == 0
        assert health["cancelled"] >= 2


def _readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """One stdout line, or fail after ``timeout`` instead of hanging the test run."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no line from the stand-in within {timeout}s")
    return proc.stdout.readline()


def test_cli_ready_health_and_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "bench.fleet.timing_openai", "--port", "0", "--model", "m2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _readline(proc, 30).strip()
        assert line.startswith("READY timing-openai url=http://127.0.0.1:"), line
        url = line.split("url=", 1)[1]
        assert url.endswith("/v1")
        health = httpx.get(url.removesuffix("/v1") + "/health", timeout=5).json()
        assert health["status"] == "ok" and health["model"] == MODEL_PREFIX + "m2"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read() == ""  # exactly one line on stdout
        assert "timing stand-in" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
