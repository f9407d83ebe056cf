"""The models of one edge process and the pools that run them: loaded once, shared by every session,
run off the event loop.

Each stage (ASR, LLM, TTS) is a StagePool: one model instance per worker thread, a bounded
priority queue in front. The models are not thread-safe (llama.cpp contexts, Piper's
phonemizer), but CTranslate2, onnxruntime and llama.cpp release the GIL while they compute, so
ASR, LLM and TTS of different sessions overlap on different cores while the event loop only
moves bytes. Sessions never hold a model; they hold a reference to this object.

What is built around the models lives elsewhere: the caches in ``edge_node/cache`` (the TTS cache in
front of ``synthesize``: ``cache/speech.py``), the pre-encoded phrases in ``engines/canned.py``, and
the LLM stream that crosses from a pool thread to the loop in ``engines/llm_stream.py``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_node import metrics
from edge_node.config import EdgeConfig
from edge_node.engines.llm import ChatModel, LlamaLlm
from edge_node.engines.pool import FIRST, NORMAL, StagePool
from edge_node.engines.tts import PiperTts, SpeechModel, encode_for_device
from edge_node.engines.vad import SileroVad, VadBatcher
from shared.audio.opus import OpusDecoder, OpusEncoder
from shared.engines.asr import AsrEngine, AsrResult, load_asr
from shared.settings import pool_size

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SpeechAudio:
    """One synthesised chunk of a reply, already encoded for the device."""

    text: str
    packets: list[bytes]
    synth_ms: float


class Engines:
    """Holds the models and the worker pools that run them."""

    def __init__(
        self,
        cfg: EdgeConfig,
        vad: SileroVad,
        asr: list[AsrEngine],
        llm: list[ChatModel],
        tts: list[SpeechModel],
        reload: dict[str, Callable[[int], Any]] | None = None,
    ) -> None:
        """``reload`` (stage -> factory of a fresh instance for worker i): a pool replaces an instance
        that raised with a new one from it (StagePool's restart); without, instances are kept."""
        self.cfg = cfg
        self.vad = vad
        q = cfg.queues
        make = reload or {}
        self.asr_pool = StagePool("asr", asr, q.max_queue, q.asr_max_wait_s, reload=make.get("asr"))
        self.llm_pool = StagePool("llm", llm, q.max_queue, q.llm_max_wait_s, reload=make.get("llm"))
        self.tts_pool = StagePool(
            "tts", tts, q.max_queue, q.tts_max_wait_s, cfg.tts.reserved_first, reload=make.get("tts")
        )
        self._vad_pool = ThreadPoolExecutor(1, thread_name_prefix="vad")
        # Bulk Opus work that is not TTS (decoding a push-to-talk utterance).
        self._audio_pool = ThreadPoolExecutor(1, thread_name_prefix="audio")
        self.vad_batcher = VadBatcher(vad, tick_ms=cfg.vad.tick_ms, executor=self._vad_pool)
        # One encoder per TTS worker thread, reset per sentence: sessions hold no encoder.
        self._encoders = threading.local()

    @classmethod
    def load(cls, cfg: EdgeConfig) -> Engines:
        """Load every model once per worker; the figures go to the log so an operator sees start-up cost."""
        started = time.perf_counter()
        vad = SileroVad(cfg.vad.model_path or None)
        n_asr = pool_size(cfg.asr.workers)
        n_llm = pool_size(cfg.llm.workers, per_core=2)
        n_tts = pool_size(cfg.tts.workers, extra=cfg.tts.reserved_first)
        # One factory per stage: it loads the workers' instances now and replaces one that raised later.
        make: dict[str, Callable[[int], Any]]
        if cfg.timing.profile:
            from edge_node.engines.timing import TimingAsr, TimingLlm, TimingTts, load_profile

            profile = load_profile(cfg.timing.profile)
            log.warning(
                "TIMING ENGINES: ASR, LLM and TTS sleep the times measured by %s and understand "
                "nothing (fleet runs only; timing.profile=%s)",
                profile.source,
                cfg.timing.profile,
            )
            make = {
                "asr": lambda i: TimingAsr(profile, i),
                "llm": lambda _i: TimingLlm(profile),
                "tts": lambda _i: TimingTts(profile),
            }
        else:
            make = {
                "asr": lambda _i: load_asr(cfg.asr),
                "llm": lambda _i: LlamaLlm(cfg.llm),
                "tts": lambda _i: PiperTts(cfg.tts),
            }
        asr: list[AsrEngine] = [make["asr"](i) for i in range(n_asr)]
        llm: list[ChatModel] = [make["llm"](i) for i in range(n_llm)]
        tts: list[SpeechModel] = [make["tts"](i) for i in range(n_tts)]
        log.info(
            "engines loaded in %.2f s: vad=silero asr=%s x%d llm=%s x%d tts=%s@%d Hz x%d",
            time.perf_counter() - started,
            asr[0].name,
            len(asr),
            llm[0].name,
            len(llm),
            tts[0].name,
            tts[0].sample_rate,
            len(tts),
        )
        engines = cls(cfg, vad, asr, llm, tts, reload=make)
        for stage, name in engines.model_names().items():
            metrics.MODEL_INFO.labels(stage=stage, model=name).set(1)
        engines.warm_up()
        return engines

    # The first worker's instance of each stage (names, warm-up): read from the pool, so an instance the
    # pool replaced after a failure is not kept alive here.
    @property
    def asr(self) -> AsrEngine:
        return self.asr_pool.models[0]

    @property
    def llm(self) -> ChatModel:
        return self.llm_pool.models[0]

    @property
    def tts(self) -> SpeechModel:
        return self.tts_pool.models[0]

    def model_names(self) -> dict[str, str]:
        """What each stage runs, for /ready and the validator."""
        return {"vad": "silero", "asr": self.asr.name, "llm": self.llm.name, "tts": self.tts.name}

    def warm_up(self) -> None:
        """Run ASR and the LLM once so the first device does not pay for lazy initialisation (TTS is
        warmed by the node's canned phrases, ``engines/canned.py``, which it synthesises next)."""
        started = time.perf_counter()
        self.asr.transcribe(np.zeros(16000, dtype=np.int16))
        for _ in self.llm.stream_chat(
            [{"role": "system", "content": self.cfg.llm.system_prompt}, {"role": "user", "content": "hi"}],
            max_tokens=2,
        ):
            pass
        log.info("engines warmed up in %.2f s", time.perf_counter() - started)

    async def start(self) -> None:
        self.vad_batcher.start()

    async def stop(self) -> None:
        await self.vad_batcher.stop()
        for pool in (self.asr_pool, self.llm_pool, self.tts_pool):
            pool.close()
        for executor in (self._vad_pool, self._audio_pool):
            executor.shutdown(wait=False, cancel_futures=True)

    async def transcribe(self, pcm: np.ndarray, deadline: float | None = None) -> AsrResult:
        # The device is waiting in silence for this one: ahead of queued TTS tails.
        return await self.asr_pool.run(lambda asr: asr.transcribe(pcm), FIRST, deadline)

    async def decode_opus(self, packets: list[bytes], sample_rate: int = 16000) -> tuple[np.ndarray, int]:
        """Decode a whole push-to-talk utterance off the loop; returns (pcm, bad packet count)."""

        def work() -> tuple[np.ndarray, int]:
            decoder = OpusDecoder(sample_rate)
            parts: list[np.ndarray] = []
            bad = 0
            for packet in packets:
                try:
                    parts.append(decoder.decode(packet))
                except ValueError:
                    bad += 1
            pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
            return pcm, bad

        started = time.perf_counter()
        result = await asyncio.get_running_loop().run_in_executor(self._audio_pool, work)
        metrics.STAGE_SECONDS.labels(stage="opus_decode").observe(time.perf_counter() - started)
        return result

    def _synthesize_on(self, tts: SpeechModel, text: str, sample_rate: int, frame_ms: int) -> SpeechAudio:
        started = time.perf_counter()
        encoders: dict[tuple[int, int], OpusEncoder] = getattr(self._encoders, "by_format", None) or {}
        self._encoders.by_format = encoders
        encoder = encoders.get((sample_rate, frame_ms))
        if encoder is None:
            encoder = encoders[(sample_rate, frame_ms)] = OpusEncoder(sample_rate, frame_ms)
        pcm = tts.synthesize(text)
        packets = encode_for_device(pcm, tts.sample_rate, encoder)
        return SpeechAudio(text, packets, (time.perf_counter() - started) * 1000)

    def synthesize_blocking(self, text: str, sample_rate: int, frame_ms: int) -> SpeechAudio:
        """Synthesise on the first TTS instance, on the calling thread: start-up only (canned phrases)."""
        return self._synthesize_on(self.tts, text, sample_rate, frame_ms)

    async def synthesize(
        self, text: str, sample_rate: int, frame_ms: int, priority: int = NORMAL, deadline: float | None = None
    ) -> SpeechAudio:
        """Piper, resampling and Opus encoding all on a TTS worker: the loop gets packets."""
        return await self.tts_pool.run(
            lambda tts: self._synthesize_on(tts, text, sample_rate, frame_ms), priority, deadline
        )
