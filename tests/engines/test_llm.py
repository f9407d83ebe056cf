from __future__ import annotations

import threading
import time

import pytest

from edge_node.config import LlmConfig

pytest.importorskip("llama_cpp")

from edge_node.engines.llm import LlamaLlm  # noqa: E402


@pytest.fixture(scope="module")
def llm() -> LlamaLlm:
    return LlamaLlm(LlmConfig(temperature=0.0))


def messages(question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."},
        {"role": "user", "content": question},
    ]


def test_stream_chat_answers(llm: LlamaLlm) -> None:
    assert llm.name.startswith("llama.cpp:") and llm.name.endswith(".gguf")
    started = time.perf_counter()
    first: float | None = None
    deltas: list[str] = []
    for delta in llm.stream_chat(messages("What is the capital of France?"), max_tokens=24):
        if first is None:
            first = time.perf_counter() - started
        deltas.append(delta)
    total = time.perf_counter() - started
    text = "".join(deltas)
    assert text.strip(), deltas
    assert all(isinstance(d, str) and d for d in deltas)
    assert "paris" in text.lower(), text
    print(f"\nllm: TTFT {first * 1000:.0f} ms, {len(deltas)} deltas in {total * 1000:.0f} ms: {text!r}")


def test_cancel_stops_early(llm: LlamaLlm) -> None:
    cancel = threading.Event()
    got: list[str] = []
    question = messages("Write a long story about a dragon who learns to cook.")
    for delta in llm.stream_chat(question, max_tokens=200, cancel=cancel):
        got.append(delta)
        if len(got) == 3:
            cancel.set()
    assert len(got) == 3

    # Cancelled before the start: nothing at all; the model still works afterwards.
    cancel_now = threading.Event()
    cancel_now.set()
    assert list(llm.stream_chat(question, cancel=cancel_now)) == []
    assert "".join(llm.stream_chat(messages("Say hello."), max_tokens=8)).strip()


def test_closing_the_iterator_frees_the_model(llm: LlamaLlm) -> None:
    it = llm.stream_chat(messages("Count from one to fifty."), max_tokens=100)
    next(it)
    it.close()  # the caller abandons the reply (barge-in)
    assert "".join(llm.stream_chat(messages("What is two plus two?"), max_tokens=8)).strip()
