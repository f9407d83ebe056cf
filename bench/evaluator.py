"""Component evaluator: latency, throughput and CPU cost of each engine on its own, in one process.

    xiaozhi-eval --components vad,asr,llm,tts [--workers N] [--requests M] [--out eval.json] [--config edge.yaml]
                 [--vad-requests K]
    xiaozhi-eval --components vad,asr,llm,tts --workers 2 --requests 40 --out eval.json

Every component is loaded once per worker (the models are not thread safe: N workers, N instances,
each used only by its own thread, as the node's StagePool does) and then serves M requests in all,
handed out to the N worker threads as they finish their previous one. Inputs are realistic:

- vad: ``--vad-requests`` (default 500) batched Silero calls, each one 32 ms chunk (512 samples
  + 64 of context) for every stream, for 1, 8 and 32 streams, reported as ``vad_x1``, ``vad_x8``,
  ``vad_x32``; the streams read Piper speech at different offsets and carry their model state;
- asr: the Piper utterance bank of ``bench.asr_window`` (VAD-shaped), the configured backend
  and encoder window;
- llm: short questions with the configured system prompt and ``llm.max_tokens``;
- tts: short reply sentences, synthesised and encoded for the device (downlink rate, Opus);
- answers: correctness, not speed: every question of a bank with expected answers
  (``bench/banks/answers-<language>.yaml``, ``--language en|zh``) asked of that language's LLM with its
  system prompt, as the node asks it; reported as the share answered correctly, the share answered in
  the question's language, time to first token and to the whole answer, and the wrong answers.

    xiaozhi-eval --components answers --language zh --out answers-zh.json
    xiaozhi-eval --components answers --language en --with-rules   # rules first, as on a node
    xiaozhi-eval --quality --out quality.json        # = answers, rules first, en and zh, + local_scores
    xiaozhi-eval --semantic                          # the semantic cache on its paraphrase / near-miss banks
    xiaozhi-eval --quality --openai-url http://127.0.0.1:8100/v1 --model qwen-1.5b   # a remote model

Each answer is put in a kind (``edge_node/routing/kinds.py``: fact, explain, advice, device,
arithmetic, creative); the model's share correct per kind is printed as the ``local_scores`` block
the routing config's ``local_score_below`` rule reads. Device requests count as correct only when the
device is told to act (a rule or a tool call), never when a model merely says it did.

Per component: p50/p95/mean latency (ms), QPS (requests / wall time with all workers busy) and
CPU-seconds per request (the process's CPU time over the run / requests, so it counts every
thread, including the engines' own). One warm-up request per instance is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from shared import cli

COMPONENTS = ("vad", "asr", "llm", "tts", "answers")
BANKS = Path(__file__).resolve().parent / "banks"
VAD_STREAMS = (1, 8, 32)
VAD_REQUESTS = 500

QUESTIONS = [
    "What is the capital of France?",
    "How many days are in a week?",
    "Tell me a short joke.",
    "What is two plus two?",
    "Why is the sky blue?",
]
REPLIES = [
    "The capital of France is Paris.",
    "It is ten past four in the afternoon.",
    "Okay, I set a timer for ten minutes.",
    "Tomorrow will be sunny with a high of twenty two degrees.",
    "Sorry, I didn't catch that. Could you say it again?",
]

# A request: worker index, request number -> extra figures to aggregate (may be empty).
Request = Callable[[int, int], dict[str, float]]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


def run_load(workers: int, requests: int, request: Request) -> dict[str, Any]:
    """Serve ``requests`` requests from ``workers`` threads; latency, QPS and CPU per request."""
    latencies: list[float] = []
    extras: list[dict[str, float]] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_index = 0
    start = threading.Barrier(workers + 1)

    def worker(w: int) -> None:
        nonlocal next_index
        start.wait()
        while True:
            with lock:
                if next_index >= requests:
                    return
                i = next_index
                next_index += 1
            t0 = time.perf_counter()
            try:
                extra = request(w, i)
            except Exception as exc:  # report, keep the other workers going
                with lock:
                    errors.append(f"request {i}: {type(exc).__name__}: {exc}")
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(elapsed)
                extras.append(extra)

    threads = [threading.Thread(target=worker, args=(w,), name=f"eval-{w}", daemon=True) for w in range(workers)]
    for t in threads:
        t.start()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    done = len(latencies)
    result: dict[str, Any] = {
        "p50_ms": round(_percentile(latencies, 50), 2),
        "p95_ms": round(_percentile(latencies, 95), 2),
        "mean_ms": round(float(np.mean(latencies)), 2) if latencies else 0.0,
        "qps": round(done / wall, 3) if wall > 0 else 0.0,
        "cpu_s_per_req": round(cpu / done, 4) if done else 0.0,
        "requests": done,
        "workers": workers,
        "wall_s": round(wall, 3),
    }
    keys = sorted({k for e in extras for k in e})
    for key in keys:
        values = [e[key] for e in extras if key in e]
        result[f"mean_{key}"] = round(float(np.mean(values)), 3)
    if errors:
        result["errors"] = errors[:5]
        result["error_count"] = len(errors)
    return result


def _speech_stream(seconds: float = 20.0) -> np.ndarray:
    """Long int16 16 kHz Piper speech (the ASR bank end to end) for the VAD streams to read."""
    from bench.asr_window import utterance_bank

    pcm = np.concatenate([p for _, p in utterance_bank()])
    reps = int(np.ceil(seconds * 16000 / pcm.size))
    return np.tile(pcm, reps)


def _vad_request(models: list[Any], speech: np.ndarray, streams: int, threshold: float) -> Request:
    """One batched Silero call per request for ``streams`` streams; each worker owns its streams' state."""
    from edge_node.engines.vad import CHUNK, CONTEXT

    workers = len(models)
    # Streams start at different points of the speech, on chunk boundaries.
    offsets = [np.arange(streams) * (speech.size // streams) // CHUNK * CHUNK for _ in range(workers)]
    states = [np.zeros((2, streams, 128), dtype=np.float32) for _ in range(workers)]
    contexts = [np.zeros((streams, CONTEXT), dtype=np.float32) for _ in range(workers)]

    def request(w: int, i: int) -> dict[str, float]:
        pos = offsets[w] % (speech.size - CHUNK)
        chunks = np.empty((streams, CONTEXT + CHUNK), dtype=np.float32)
        chunks[:, :CONTEXT] = contexts[w]
        for s in range(streams):
            chunks[s, CONTEXT:] = speech[pos[s] : pos[s] + CHUNK]
        probs, states[w] = models[w].infer(chunks, states[w])
        contexts[w] = chunks[:, -CONTEXT:].copy()
        offsets[w] = offsets[w] + CHUNK
        return {"speech_ratio": float((probs >= threshold).mean())}

    return request


def eval_vad(cfg: Any, workers: int, requests: int) -> dict[str, dict[str, Any]]:
    from edge_node.engines.vad import SileroVad

    speech = _speech_stream().astype(np.float32) / 32768.0
    models = [SileroVad(cfg.vad.model_path or None) for _ in range(workers)]
    out: dict[str, dict[str, Any]] = {}
    for streams in VAD_STREAMS:
        request = _vad_request(models, speech, streams, cfg.vad.threshold)
        for w in range(workers):
            request(w, -1)
        result = run_load(workers, requests, request)
        result["streams"] = streams
        result["ms_per_stream_chunk"] = round(result["mean_ms"] / streams, 4)
        out[f"vad_x{streams}"] = result
    return out


def eval_asr(cfg: Any, workers: int, requests: int) -> dict[str, dict[str, Any]]:
    from bench.asr_window import utterance_bank, wer
    from shared.engines.asr import load_asr

    bank = utterance_bank()
    engines = [load_asr(cfg.asr) for _ in range(workers)]
    for engine in engines:
        engine.transcribe(bank[0][1])
        if hasattr(engine, "window_fallbacks"):
            engine.window_fallbacks = 0

    def request(w: int, i: int) -> dict[str, float]:
        text, pcm = bank[i % len(bank)]
        result = engines[w].transcribe(pcm)
        return {"audio_s": pcm.size / 16000, "wer": wer(text, result.text)}

    result = run_load(workers, requests, request)
    result["engine"] = engines[0].name
    result["encoder_window"] = getattr(cfg.asr, "encoder_window", "full")
    result["threads_per_worker"] = cfg.asr.threads
    result["window_fallbacks"] = sum(getattr(e, "window_fallbacks", 0) for e in engines)
    return {"asr": result}


def eval_llm(cfg: Any, workers: int, requests: int) -> dict[str, dict[str, Any]]:
    from edge_node.engines.llm import LlamaLlm

    engines = [LlamaLlm(cfg.llm) for _ in range(workers)]

    def messages(question: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": cfg.llm.system_prompt}, {"role": "user", "content": question}]

    for engine in engines:
        for _ in engine.stream_chat(messages("hi"), max_tokens=2):
            pass

    def request(w: int, i: int) -> dict[str, float]:
        started = time.perf_counter()
        first = None
        pieces = 0
        for _piece in engines[w].stream_chat(messages(QUESTIONS[i % len(QUESTIONS)])):
            if first is None:
                first = (time.perf_counter() - started) * 1000
            pieces += 1
        return {"ttft_ms": first or 0.0, "pieces": float(pieces)}

    result = run_load(workers, requests, request)
    result["engine"] = engines[0].name
    result["max_tokens"] = cfg.llm.max_tokens
    result["threads_per_worker"] = cfg.llm.threads
    return {"llm": result}


def eval_tts(cfg: Any, workers: int, requests: int) -> dict[str, dict[str, Any]]:
    from edge_node.engines.tts import PiperTts, encode_for_device
    from shared.audio.opus import OpusEncoder

    engines = [PiperTts(cfg.tts) for _ in range(workers)]
    rate, frame_ms = cfg.audio.downlink_sample_rate, cfg.audio.downlink_frame_ms
    encoders = [OpusEncoder(rate, frame_ms) for _ in range(workers)]

    def request(w: int, i: int) -> dict[str, float]:
        pcm = engines[w].synthesize(REPLIES[i % len(REPLIES)])
        packets = encode_for_device(pcm, engines[w].sample_rate, encoders[w])
        return {"audio_s": pcm.size / engines[w].sample_rate, "packets": float(len(packets))}

    for w in range(workers):
        request(w, 0)
    result = run_load(workers, requests, request)
    result["engine"] = engines[0].name
    result["downlink"] = f"opus {rate} Hz / {frame_ms} ms"
    result["threads_per_worker"] = cfg.tts.threads
    return {"tts": result}


_HAN = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


@dataclass(frozen=True, slots=True)
class BankItem:
    """One question of a bank: the answers that count as correct, and whether it asks the device to act
    (then only a rule or a tool call that acts is correct, not a model that says it did)."""

    q: str
    accept: list[str]
    action: bool = False


def load_bank(language: str) -> list[BankItem]:
    """The questions of ``bench/banks/answers-<language>.yaml``."""
    import yaml

    path = BANKS / f"answers-{language}.yaml"
    if not path.is_file():
        raise cli.CliError(f"no answer bank for {language!r} ({path})", cli.EXIT_USAGE)
    items = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [BankItem(str(i["q"]), [str(a) for a in i["accept"]], bool(i.get("action", False))) for i in items]


def score_answer(reply: str, accept: list[str], language: str) -> tuple[bool, bool]:
    """(correct, in the language): correct when the reply holds an accepted answer (simplified characters,
    spaces dropped, case ignored); Chinese when most of its letters are Han characters, English when none is."""
    from opencc import OpenCC

    folded = OpenCC("t2s").convert(reply) if language == "zh" else reply
    folded = re.sub(r"\s+", "", folded).lower()
    correct = any(re.sub(r"\s+", "", a).lower() in folded for a in accept)
    han, latin = len(_HAN.findall(reply)), len(_LATIN.findall(reply))
    in_language = han > 0 and han >= latin if language == "zh" else latin > 0 and han == 0
    return correct, in_language


@dataclass(frozen=True, slots=True)
class Remote:
    """An OpenAI-compatible endpoint to score instead of the node's local model (a provider, or the
    cloud's vLLM or its llama.cpp stand-in)."""

    base_url: str
    model: str
    api_key: str = ""
    max_tokens: int = 160


def _device_caps() -> Any:
    """A device with the firmware's usual controls, for the bank's device requests."""
    from edge_node.routing.intent import DeviceCapabilities

    tools = {"self.audio_speaker.set_volume": {}, "self.screen.set_brightness": {}}
    return DeviceCapabilities(tools=tools, state={"volume": 50, "brightness": 50})


def eval_answers(
    cfg: Any,
    workers: int,
    requests: int,
    language: str = "en",
    questions: int = 0,
    rules: bool = False,
    remote: Remote | None = None,
) -> dict[str, dict[str, Any]]:
    """Every question of the language's bank (or its first ``questions``), once, through that language's LLM
    and prompt. ``requests`` is not used: the bank sets the count, so two runs score the same questions.

    With ``rules`` the node's intent rules answer first, as they do on a node (arithmetic, time, commands),
    and only what they leave goes to the model: the score of the configuration rather than of the model.
    With ``remote`` the model is that endpoint, asked with the language's system prompt and ``max_tokens``
    (its CPU is the server's, not counted in ``cpu_s_per_req``)."""
    from edge_node.engines.llm import LlamaLlm
    from edge_node.engines.runtime import llm_config
    from edge_node.engines.sentences import SentenceSplitter
    from edge_node.routing.intent import IntentMatcher
    from edge_node.routing.kinds import question_kind

    matcher = IntentMatcher(cfg.intent.wake_words, cfg.intent.timezone_offset_min) if rules else None

    if language not in cfg.languages.serve:  # the bank's language is asked as a node serving it would
        cfg = cfg.model_copy(update={"languages": cfg.languages.model_copy(update={"serve": ["en", language]})})
    llm_cfg = llm_config(cfg, language)
    bank = load_bank(language)
    if questions > 0:
        bank = bank[:questions]
    engines = [] if remote is not None else [LlamaLlm(llm_cfg) for _ in range(workers)]
    for engine in engines:
        for _ in engine.stream_chat([{"role": "user", "content": bank[0].q}], max_tokens=2):
            pass
    answers: list[dict[str, Any]] = [{} for _ in bank]

    def ask(w: int, messages: list[dict[str, str]], started: float) -> tuple[str, float | None, float | None]:
        """(reply, first token ms, first clause ms): the first clause is the first chunk the node's
        sentence splitter would hand to TTS, what the device's first audio waits for."""
        if remote is not None:
            return asyncio.run(_ask_remote(remote, messages, llm_cfg.temperature, started))
        first: float | None = None
        clause: float | None = None
        splitter = SentenceSplitter(cfg.tts.first_clause_min_chars)
        pieces: list[str] = []
        for piece in engines[w].stream_chat(messages):
            if first is None:
                first = (time.perf_counter() - started) * 1000
            if clause is None and splitter.push(piece):
                clause = (time.perf_counter() - started) * 1000
            pieces.append(piece)
        if clause is None:
            clause = (time.perf_counter() - started) * 1000
        return "".join(pieces).strip(), first, clause

    def request(w: int, i: int) -> dict[str, float]:
        item = bank[i]
        started = time.perf_counter()
        match = matcher.match(item.q, _device_caps(), language) if matcher is not None else None
        if match is not None:
            reply = match.say
            first = clause = (time.perf_counter() - started) * 1000
        else:
            messages = [{"role": "system", "content": llm_cfg.system_prompt}, {"role": "user", "content": item.q}]
            reply, first, clause = ask(w, messages, started)
        correct, in_language = score_answer(reply, item.accept, language)
        acted = match is not None and match.action is not None
        correct = correct and (acted or not item.action)
        answers[i] = {
            "q": item.q,
            "kind": question_kind(item.q, language),
            "reply": reply,
            "correct": correct,
            "in_language": in_language,
            "by_rule": match is not None,
            "ttft_ms": first or 0.0,
            "clause_ms": clause or 0.0,
            "seconds": time.perf_counter() - started,
        }
        return {"ttft_ms": first or 0.0, "correct": float(correct), "in_language": float(in_language)}

    result = run_load(workers, len(bank), request)
    done = [a for a in answers if a]
    result["engine"] = f"{remote.model} at {remote.base_url}" if remote is not None else engines[0].name
    result["language"] = language
    result["questions"] = len(bank)
    result["correct_pct"] = round(100 * sum(a["correct"] for a in done) / len(bank), 1)
    result["in_language_pct"] = round(100 * sum(a["in_language"] for a in done) / len(bank), 1)
    result["correct_and_in_language_pct"] = round(
        100 * sum(a["correct"] and a["in_language"] for a in done) / len(bank), 1
    )
    by_model = [a for a in done if not a["by_rule"]]
    result["answered_by_rules"] = len(done) - len(by_model)
    # What a listener waits for and hears: the model's first token, and the answer's length.
    result["median_first_token_ms"] = round(statistics.median(a["ttft_ms"] for a in by_model), 1) if by_model else None
    result["median_first_clause_ms"] = (
        round(statistics.median(a["clause_ms"] for a in by_model), 1) if by_model else None
    )
    # CPU per answer the model gave (rule answers cost next to nothing); this process only, so 0 for a remote.
    result["cpu_s_per_model_answer"] = (
        round(result["cpu_s_per_req"] * len(done) / len(by_model), 3) if by_model and remote is None else None
    )
    result["median_model_answer_s"] = round(statistics.median(a["seconds"] for a in by_model), 2) if by_model else None
    result["median_reply_chars"] = statistics.median(len(a["reply"]) for a in done) if done else 0
    result["max_reply_chars"] = max((len(a["reply"]) for a in done), default=0)
    result["by_kind"] = _by_kind(done)
    result["system_prompt"] = llm_cfg.system_prompt
    result["answers"] = done
    result["wrong"] = [a for a in done if not (a["correct"] and a["in_language"])]
    return {f"answers_{language}": result}


def _by_kind(done: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per kind of question (edge_node/routing/kinds.py): how many, and the share the *model* got right
    (rule answers left out: the router asks the model only what the rules leave)."""
    kinds: dict[str, dict[str, float]] = {}
    for kind in sorted({a["kind"] for a in done}):
        mine = [a for a in done if a["kind"] == kind]
        model = [a for a in mine if not a["by_rule"]]
        kinds[kind] = {
            "questions": len(mine),
            "correct_pct": round(100 * sum(a["correct"] for a in mine) / len(mine), 1),
            "model_questions": len(model),
            "model_score": round(sum(a["correct"] and a["in_language"] for a in model) / len(model), 2)
            if model
            else None,
        }
    return kinds


async def _ask_remote(
    remote: Remote, messages: list[dict[str, str]], temperature: float, started: float
) -> tuple[str, float | None, float | None]:
    import httpx

    from edge_node.engines.sentences import SentenceSplitter
    from shared.openai_stream import stream_chat

    first: float | None = None
    clause: float | None = None
    splitter = SentenceSplitter()
    pieces: list[str] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0)) as client:
        async for piece in stream_chat(
            client, remote.base_url, remote.model, messages, remote.max_tokens, temperature, remote.api_key
        ):
            if first is None:
                first = (time.perf_counter() - started) * 1000
            if clause is None and splitter.push(piece):
                clause = (time.perf_counter() - started) * 1000
            pieces.append(piece)
    return "".join(pieces).strip(), first, clause or (time.perf_counter() - started) * 1000


def local_scores_yaml(results: dict[str, Any]) -> str:
    """The ``local_scores`` block of a routing config from answers results: the model's measured share
    correct per language and kind, which the rule ``local_score_below`` compares against."""
    lines = ["local_scores:"]
    for key, r in results.items():
        if not key.startswith("answers_") or "by_kind" not in r:
            continue
        scores = {k: v["model_score"] for k, v in r["by_kind"].items() if v["model_score"] is not None}
        inner = ", ".join(f"{k}: {v}" for k, v in scores.items())
        lines.append(f"  {r['language']}: {{{inner}}}")
    return "\n".join(lines)


EVALUATORS: dict[str, Callable[[Any, int, int], dict[str, dict[str, Any]]]] = {
    "vad": eval_vad,
    "asr": eval_asr,
    "llm": eval_llm,
    "tts": eval_tts,
    "answers": eval_answers,
}


def machine_info() -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpus_usable": affinity,
        "processor": platform.processor() or platform.machine(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _print_table(results: dict[str, Any]) -> None:
    header = f"{'component':10s} {'workers':>7} {'req':>5} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9} {'qps':>9}"
    print(f"{header} {'cpu s/req':>9}")
    for name, r in results.items():
        if name == "machine":
            continue
        print(
            f"{name:10s} {r['workers']:7d} {r['requests']:5d} {r['p50_ms']:9.2f} {r['p95_ms']:9.2f} "
            f"{r['mean_ms']:9.2f} {r['qps']:9.2f} {r['cpu_s_per_req']:9.4f}"
        )
        if r.get("errors"):
            print(f"    errors ({r['error_count']}): {r['errors'][0]}")
        if "correct_pct" in r:
            print(
                f"    {r['questions']} questions ({r['language']}): {r['correct_pct']}% correct, "
                f"{r['in_language_pct']}% in the language, {r['correct_and_in_language_pct']}% both; "
                f"{r['answered_by_rules']} by rules, median first token {r['median_first_token_ms']} ms, "
                f"first clause {r.get('median_first_clause_ms')} ms, median reply {r['median_reply_chars']} "
                f"characters, {r.get('cpu_s_per_model_answer')} CPU-s per model answer"
            )
            kinds = ", ".join(f"{k} {v['correct_pct']}% of {v['questions']}" for k, v in r.get("by_kind", {}).items())
            print(f"    by kind: {kinds}")
            for wrong in r["wrong"]:
                print(f"    wrong: {wrong['q']} -> {wrong['reply'][:80]!r}")
    if any("by_kind" in r for r in results.values() if isinstance(r, dict)):
        print("# the model's measured score per kind, for routing.yaml (rule: local_score_below):")
        print(local_scores_yaml(results))


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("xiaozhi-eval", __doc__)
    parser.add_argument("--components", default="vad,asr,llm,tts", help="comma-separated, from vad,asr,llm,tts,answers")
    parser.add_argument("--workers", type=int, default=1, help="worker threads, one engine instance each")
    parser.add_argument("--requests", type=int, default=20, help="requests per component (all workers together)")
    parser.add_argument(
        "--vad-requests",
        type=int,
        default=VAD_REQUESTS,
        help="VAD calls per stream count (sub-millisecond each, so more than --requests)",
    )
    parser.add_argument(
        "--language",
        default="",
        help="the answers component's banks and LLMs, comma-separated: en, zh (default en; --quality: en,zh)",
    )
    parser.add_argument(
        "--quality",
        action="store_true",
        help="score a configuration: the answers component with the rules first, in every language asked, "
        "with the local_scores block for routing.yaml",
    )
    parser.add_argument(
        "--semantic",
        action="store_true",
        help="the semantic answer cache on bench/banks: paraphrase hit rate, false hits on near misses, "
        "embedding cost, and a threshold sweep with and without the slot guard",
    )
    parser.add_argument(
        "--openai-url",
        default="",
        help="the answers component: score this OpenAI-compatible endpoint (up to /v1) instead of the local model",
    )
    parser.add_argument("--model", default="", help="with --openai-url: the model name to ask for")
    parser.add_argument(
        "--api-key-env", default="", help="with --openai-url: the environment variable that holds the API key"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=160, help="with --openai-url: max_tokens per answer (the remote routes')"
    )
    parser.add_argument(
        "--with-rules",
        action="store_true",
        help="the answers component: the node's intent rules answer first (the configuration, not the model alone)",
    )
    parser.add_argument(
        "--questions", type=int, default=0, help="the answers component: only the bank's first N questions (0: all)"
    )
    parser.add_argument("--out", metavar="FILE", help="write the results to this JSON file")
    cli.hidden_alias(parser, "--json", "out")
    parser.add_argument(
        "--config", metavar="FILE", help="edge node YAML config (defaults + XIAOZHI__ environment otherwise)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    return cli.run("xiaozhi-eval", lambda: _main(parser, cli.parse(parser, argv)))


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.semantic:
        return _semantic(args)
    if args.quality:
        args.components, args.with_rules = "answers", True
    languages = [x.strip() for x in (args.language or ("en,zh" if args.quality else "en")).split(",") if x.strip()]
    if args.openai_url and not args.model:
        parser.error("--openai-url needs --model")
    remote = (
        Remote(
            args.openai_url,
            args.model,
            os.environ.get(args.api_key_env, "") if args.api_key_env else "",
            args.max_tokens,
        )
        if args.openai_url
        else None
    )
    components = [c.strip() for c in args.components.split(",") if c.strip()]
    unknown = [c for c in components if c not in EVALUATORS]
    if unknown or not components:
        parser.error(f"unknown component(s) {unknown}; choose from {','.join(COMPONENTS)}")
    if args.workers < 1 or args.requests < 1 or args.vad_requests < 1:
        parser.error("--workers, --requests and --vad-requests must be at least 1")

    from edge_node.config import load_config
    from shared.engines.errors import ModelError

    cfg = load_config(args.config)  # ConfigError: one line, exit 2

    results: dict[str, Any] = {"machine": machine_info()}
    for name in components:
        loaded = time.perf_counter()
        print(f"xiaozhi-eval: {name}: {args.workers} worker(s), {args.requests} requests ...", file=sys.stderr)
        count = args.vad_requests if name == "vad" else args.requests
        try:
            if name == "answers":
                component_results = {}
                for language in languages:
                    component_results |= eval_answers(
                        cfg, args.workers, count, language, args.questions, rules=args.with_rules, remote=remote
                    )
            else:
                component_results = EVALUATORS[name](cfg, args.workers, count)
        except ModelError as exc:
            raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
        for value in component_results.values():
            value["component"] = name
            value["total_s"] = round(time.perf_counter() - loaded, 2)
        results.update(component_results)
    results["machine"]["rss_mb_end"] = round(psutil.Process().memory_info().rss / 2**20, 1)

    _print_table(results)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


def _semantic(args: argparse.Namespace) -> int:
    from bench import semantic_bank
    from edge_node.config import load_config
    from edge_node.engines.embedder import shared_embedder

    cfg = load_config(args.config).cache.semantic
    languages = [x.strip() for x in (args.language or "en,zh").split(",") if x.strip()]
    results = semantic_bank.evaluate(shared_embedder(cfg.threads), languages)
    semantic_bank.print_report(results, cfg.threshold)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(semantic_bank.public(results, cfg.threshold), f, indent=2, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
