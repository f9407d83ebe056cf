"""The naive baseline: the same utterances through the same models, one turn at a time, in one process.

What a straightforward server does per turn, with nothing shared between turns: Whisper with
faster-whisper's standard 30 s encoder window, then the local LLM (the node's system prompt and
``max_tokens``, no intent fast path, no answer cache), then Piper on each sentence of the reply,
resampled and Opus-encoded for the device (24 kHz / 60 ms by default). Stages run back to back, so
one turn's first audio is ASR + the whole LLM reply + the first sentence's synthesis.

Each utterance gets 0.3 s of silence on either side, about what the edge node's VAD hands its ASR
(pre-roll and end-of-speech hangover). The uplink Opus decode and the VAD are left out: they are a
few percent of a turn (docs/models.md §8) and leaving them out only flatters the baseline.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import numpy as np

from bench.loadgen.mix import MixSampler
from edge_node.config import EdgeConfig
from shared.engines.config import AsrConfig
from shared.settings import usable_cores

__all__ = ["naive_asr_config", "run_naive"]

PAD_S = 0.3


def naive_asr_config(cfg: AsrConfig) -> AsrConfig:
    """The node's ASR settings with the standard 30 s window (``encoder_window: full``) where that exists."""
    if "encoder_window" in type(cfg).model_fields:
        return cfg.model_copy(update={"encoder_window": "full"})
    return cfg


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def run_naive(
    cfg: EdgeConfig,
    bank: dict[str, np.ndarray],
    sampler: MixSampler,
    duration_s: float = 60.0,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run turns back to back for ``duration_s`` seconds (the last one finishes); returns the figures."""
    from edge_node.engines.llm import LlamaLlm
    from edge_node.engines.sentences import SentenceSplitter
    from edge_node.engines.tts import PiperTts, encode_for_device
    from shared.audio.opus import OpusEncoder
    from shared.engines.asr import WhisperAsr

    load_started = time.perf_counter()
    # One turn at a time, so each model gets every core (the node's pools use one thread per
    # instance and more instances instead): the strongest sequential baseline on this machine.
    cores = usable_cores()
    asr_cfg = naive_asr_config(cfg.asr).model_copy(update={"threads": cores})
    asr = WhisperAsr(asr_cfg)
    llm = LlamaLlm(cfg.llm.model_copy(update={"threads": cores}))
    tts = PiperTts(cfg.tts.model_copy(update={"threads": cores}))
    encoder = OpusEncoder(cfg.audio.downlink_sample_rate, cfg.audio.downlink_frame_ms)
    load_s = time.perf_counter() - load_started
    # Warm-up (not timed), like the edge node's own warm-up.
    asr.transcribe(np.zeros(16000, dtype=np.int16))
    for _ in llm.stream_chat([{"role": "user", "content": "hi"}], max_tokens=2):
        pass
    encode_for_device(tts.synthesize("Hello."), tts.sample_rate, encoder)

    pad = np.zeros(int(PAD_S * 16000), dtype=np.int16)
    stages: dict[str, list[float]] = {k: [] for k in ("asr_ms", "llm_ms", "tts_ms", "first_audio_ms", "turn_ms")}
    packets_total = 0
    turns = 0
    started = time.perf_counter()
    deadline = started + duration_s
    while time.perf_counter() < deadline:
        _category, phrase = sampler.sample()
        pcm = np.concatenate([pad, bank[phrase], pad])
        t0 = time.perf_counter()
        text = asr.transcribe(pcm).text
        t1 = time.perf_counter()
        messages = [{"role": "system", "content": cfg.llm.system_prompt}, {"role": "user", "content": text or phrase}]
        reply = "".join(llm.stream_chat(messages, max_tokens=cfg.llm.max_tokens))
        t2 = time.perf_counter()
        splitter = SentenceSplitter(cfg.tts.first_clause_min_chars)
        sentences = [s for s in [*splitter.push(reply), *splitter.flush()] if s.strip()] or ["Okay."]
        first_audio = None
        for sentence in sentences:
            packets = encode_for_device(tts.synthesize(sentence), tts.sample_rate, encoder)
            packets_total += len(packets)
            if first_audio is None:
                first_audio = time.perf_counter()
        t3 = time.perf_counter()
        turns += 1
        stages["asr_ms"].append((t1 - t0) * 1000)
        stages["llm_ms"].append((t2 - t1) * 1000)
        stages["tts_ms"].append((t3 - t2) * 1000)
        stages["first_audio_ms"].append(((first_audio or t3) - t0) * 1000)
        stages["turn_ms"].append((t3 - t0) * 1000)
        if verbose and sys.stderr.isatty():
            elapsed = time.perf_counter() - started
            print(
                f"\rnaive: {elapsed:5.1f}/{duration_s:.0f} s, {turns} turns, {turns / elapsed:.3f} turns/s",
                end="",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.perf_counter() - started
    if verbose and sys.stderr.isatty():
        print(file=sys.stderr)
    return {
        "turns": turns,
        "elapsed_s": round(elapsed, 2),
        "naive_turns_per_s": round(turns / elapsed, 4) if elapsed > 0 else None,
        "asr_encoder_window": getattr(asr_cfg, "encoder_window", "full"),
        "asr_threads": cores,
        "llm_threads": cores,
        "tts_threads": cores,
        "llm_max_tokens": cfg.llm.max_tokens,
        "model_load_s": round(load_s, 2),
        "downlink_packets": packets_total,
        "medians_ms": {k: _median(v) for k, v in stages.items()},
        "max_ms": {k: round(max(v), 1) if v else None for k, v in stages.items()},
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
