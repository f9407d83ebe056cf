"""The engines of one edge process: loaded once, shared by every session, run off the event loop.

Each model gets its own single-thread executor. The models are not thread-safe (llama.cpp
contexts, Piper's phonemizer), but CTranslate2, onnxruntime and llama.cpp release the GIL while
they compute, so ASR, LLM and TTS of different sessions overlap on different cores while the
event loop only moves bytes. Sessions never hold a model; they hold a reference to this object.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from edge_node import metrics
from edge_node.engines.asr import AsrEngine, AsrResult, load_asr
from edge_node.engines.llm import LlamaLlm
from edge_node.engines.tts import PiperTts, encode_for_device
from edge_node.engines.vad import SileroVad, VadBatcher
from shared.audio.opus import OpusDecoder, OpusEncoder
from shared.config import EdgeConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class SpeechAudio:
    """One synthesised chunk of a reply, already encoded for the device."""

    text: str
    packets: list[bytes]
    synth_ms: float


class Engines:
    """Holds the models and the executors that run them."""

    def __init__(
        self,
        cfg: EdgeConfig,
        vad: SileroVad,
        asr: AsrEngine,
        llm: LlamaLlm,
        tts: PiperTts,
    ) -> None:
        self.cfg = cfg
        self.vad = vad
        self.asr = asr
        self.llm = llm
        self.tts = tts
        self._asr_pool = ThreadPoolExecutor(1, thread_name_prefix="asr")
        self._llm_pool = ThreadPoolExecutor(1, thread_name_prefix="llm")
        self._tts_pool = ThreadPoolExecutor(1, thread_name_prefix="tts")
        self._vad_pool = ThreadPoolExecutor(1, thread_name_prefix="vad")
        # Bulk Opus work that is not TTS (decoding a push-to-talk utterance).
        self._audio_pool = ThreadPoolExecutor(1, thread_name_prefix="audio")
        self.vad_batcher = VadBatcher(vad, tick_ms=cfg.vad.tick_ms, executor=self._vad_pool)
        # One encoder per TTS thread: encoders are reset per sentence, so sessions share it.
        self._encoders: dict[tuple[int, int], OpusEncoder] = {}

    @classmethod
    def load(cls, cfg: EdgeConfig) -> Engines:
        """Load every model once; the figures go to the log so an operator sees start-up cost."""
        started = time.perf_counter()
        vad = SileroVad(cfg.vad.model_path or None)
        asr = load_asr(cfg.asr)
        llm = LlamaLlm(cfg.llm)
        tts = PiperTts(cfg.tts)
        log.info(
            "engines loaded in %.2f s: vad=silero asr=%s llm=%s tts=piper@%d Hz",
            time.perf_counter() - started,
            asr.name,
            llm.name,
            tts.sample_rate,
        )
        engines = cls(cfg, vad, asr, llm, tts)
        engines.warm_up()
        return engines

    def warm_up(self) -> None:
        """Run each model once so the first device does not pay for lazy initialisation."""
        started = time.perf_counter()
        self.asr.transcribe(np.zeros(16000, dtype=np.int16))
        for _ in self.llm.stream_chat(
            [{"role": "system", "content": self.cfg.llm.system_prompt}, {"role": "user", "content": "hi"}],
            max_tokens=2,
        ):
            pass
        self.tts.synthesize("Ready.")
        log.info("engines warmed up in %.2f s", time.perf_counter() - started)

    async def start(self) -> None:
        self.vad_batcher.start()

    async def stop(self) -> None:
        await self.vad_batcher.stop()
        for pool in (self._asr_pool, self._llm_pool, self._tts_pool, self._vad_pool, self._audio_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, pool: ThreadPoolExecutor, stage: str, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        queued = time.perf_counter()
        started: list[float] = []

        def timed() -> T:
            started.append(time.perf_counter())
            return fn(*args)

        try:
            return await loop.run_in_executor(pool, timed)
        finally:
            done = time.perf_counter()
            if started:
                metrics.STAGE_SECONDS.labels(stage=stage).observe(done - started[0])
                metrics.QUEUE_WAIT_SECONDS.labels(stage=stage).observe(started[0] - queued)

    async def transcribe(self, pcm: np.ndarray) -> AsrResult:
        return await self._run(self._asr_pool, "asr", self.asr.transcribe, pcm)

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

        return await self._run(self._audio_pool, "opus_decode", work)

    async def chat_stream(
        self, messages: list[dict[str, str]], max_tokens: int | None = None
    ) -> AsyncIterator[str]:
        """Stream LLM deltas from the LLM thread; closing the iterator stops generation at once."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()
        started = time.perf_counter()

        def put(item: str | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                for delta in self.llm.stream_chat(messages, max_tokens=max_tokens, cancel=cancel):
                    if cancel.is_set():
                        break
                    put(delta)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer to raise
                put(exc)
            finally:
                put(None)

        future = loop.run_in_executor(self._llm_pool, work)
        first = True
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                if first:
                    metrics.STAGE_SECONDS.labels(stage="llm_first_token").observe(
                        time.perf_counter() - started
                    )
                    first = False
                yield item
        finally:
            cancel.set()
            if future.done():
                metrics.STAGE_SECONDS.labels(stage="llm").observe(time.perf_counter() - started)

    async def synthesize(self, text: str, sample_rate: int, frame_ms: int) -> SpeechAudio:
        """Piper, resampling and Opus encoding all in the TTS thread: the loop gets packets."""

        def work() -> SpeechAudio:
            started = time.perf_counter()
            key = (sample_rate, frame_ms)
            encoder = self._encoders.get(key)
            if encoder is None:
                encoder = self._encoders[key] = OpusEncoder(sample_rate, frame_ms)
            pcm = self.tts.synthesize(text)
            packets = encode_for_device(pcm, self.tts.sample_rate, encoder)
            return SpeechAudio(text, packets, (time.perf_counter() - started) * 1000)

        return await self._run(self._tts_pool, "tts", work)
