"""Silero VAD on onnxruntime, batched across sessions.

Why batched: one onnxruntime call costs ~0.16 ms for one stream but only ~0.06 ms per stream when
8+ streams share the call (docs/models.md §2), and Python overhead per call dominates at small
sizes.
So every session only queues its Opus packets (cheap, on the event loop) and one ``VadBatcher``
task, every ``tick_ms``, hands all pending audio to ONE worker thread that decodes, cuts 512-sample
chunks and runs a single ``infer`` for the next chunk of every stream. Events go back to the event
loop so the session code never runs in the worker.

Model I/O (silero_vad.onnx, v5+): ``input`` f32 [batch, 576] = 64 samples of context carried from
the previous chunk + 512 new samples, ``state`` f32 [2, batch, 128], ``sr`` int64 scalar.
Feeding bare 512-sample chunks (no context) is wrong for v5+.

Thread ownership (no locks needed):
- the event loop owns ``VadStream._pending`` (feed_*, reset) and the generation counter;
- the worker owns everything else in a stream while a batch runs; the batcher never starts a
  batch before the previous one has returned, and ``reset()`` only bumps a generation number that
  the batcher applies on the loop between batches. Events of a stale generation are dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from edge_node import metrics
from edge_node.config import VadConfig
from shared import models
from shared.audio.opus import AudioError, OpusDecoder
from shared.engines.errors import ModelError

__all__ = ["CHUNK", "CONTEXT", "SileroVad", "VadBatcher", "VadEvent", "VadShards", "VadStream"]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
CHUNK = 512  # new samples per inference (32 ms at 16 kHz)
CONTEXT = 64  # samples carried over from the previous chunk
CHUNK_MS = CHUNK * 1000 / SAMPLE_RATE
# Speech ends only when the probability falls this far below the threshold (Silero's own hysteresis).
NEG_THRESHOLD_GAP = 0.15
MAX_PENDING = 200  # Opus packets queued per stream (12 s of 60 ms packets) before the oldest drop


class SileroVad:
    """The Silero VAD ONNX model, loaded once per process and shared by every stream."""

    def __init__(self, model_path: str | None = None) -> None:
        path = Path(model_path) if model_path else models.silero_vad_onnx()
        if not path.is_file():
            raise ModelError(f"Silero VAD model not found: {path}")
        opts = ort.SessionOptions()
        # One thread: the batch is small and the other engines need the cores.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load Silero VAD model {path}: {exc}") from exc
        names = [i.name for i in self._session.get_inputs()]
        if names != ["input", "state", "sr"]:
            raise ModelError(f"{path} is not a Silero v5+ model with inputs input/state/sr (has {names})")
        self.path = path
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def infer(self, chunks: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One onnxruntime call for all streams: chunks f32 [B, 576], state f32 [2, B, 128].

        Returns (speech probabilities [B], new state [2, B, 128]).
        """
        out, new_state = self._session.run(
            None,
            {
                "input": np.ascontiguousarray(chunks, dtype=np.float32),
                "state": np.ascontiguousarray(state, dtype=np.float32),
                "sr": self._sr,
            },
        )
        return np.asarray(out, dtype=np.float32).reshape(-1), np.asarray(new_state, dtype=np.float32)


@dataclass
class VadEvent:
    """A change in a stream's speech state, delivered on the event loop thread."""

    kind: Literal["speech_start", "pause", "resume", "speech_end", "too_long"]
    # speech_end / too_long: the whole utterance (int16, 16 kHz) from preroll before onset to the
    # trailing silence; pause: the utterance so far; None for speech_start and resume.
    pcm: np.ndarray | None
    at: float  # time.monotonic() when detected (in the worker)
    # When the voice stopped: a speech_end is decided min_silence_ms after it, a pause
    # speculative_asr_ms after it; the VAD knows its own delays, so nobody else re-derives them.
    # Turn latency counts from here. For other kinds, ``at``.
    voice_end: float = 0.0

    def __post_init__(self) -> None:
        if not self.voice_end:
            self.voice_end = self.at


@dataclass
class _Work:
    """One stream's share of a tick: what the loop drained for the worker and what comes back."""

    stream: VadStream
    generation: int
    items: list[bytes | np.ndarray]
    events: list[VadEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class VadStream:
    """Per-session VAD state: small numpy arrays and a packet queue, no threads of its own.

    The speech state machine works on 32 ms chunks:
    - onset: the probability stays >= threshold for ``min_speech_ms`` (a chunk below
      ``threshold - 0.15`` restarts the count; one in between neither counts nor restarts it),
      then ``speech_start`` is emitted and the utterance starts with ``preroll_ms`` of audio
      before the onset;
    - pause: with ``speculative_asr_ms`` > 0, once a silence has lasted that long (but not yet
      ``min_silence_ms``) -> ``pause`` with the utterance so far, so the session can start ASR
      while the end of speech is still being confirmed; speech before ``min_silence_ms`` ->
      ``resume`` (the speculation is void);
    - end: after onset, the probability stays below ``threshold - 0.15`` for ``min_silence_ms``
      (chunks in the hysteresis band keep a running silence going) -> ``speech_end`` with the
      utterance including the trailing silence;
    - the utterance exceeds ``max_utterance_s`` -> ``too_long`` with the audio so far, and the
      state machine starts over (the model state is kept: the audio is continuous).
    """

    def __init__(
        self,
        cfg: VadConfig,
        on_event: Callable[[VadEvent], None],
        on_error: Callable[[str], None] | None = None,
        sample_rate: int = 16000,
    ) -> None:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"Silero VAD runs at {SAMPLE_RATE} Hz; got sample_rate={sample_rate}")
        self.cfg = cfg
        self.on_event = on_event
        self.on_error = on_error
        self.sample_rate = sample_rate
        self.decode_errors = 0
        self.dropped_packets = 0
        self._decoder = OpusDecoder(sample_rate)
        # Loop-owned.
        self._pending: deque[bytes | np.ndarray] = deque()
        self._generation = 0
        self._applied_generation = 0
        # Worker-owned (touched by the loop only between batches, in _apply_reset).
        self._threshold = cfg.threshold
        self._neg_threshold = max(0.0, cfg.threshold - NEG_THRESHOLD_GAP)
        self._preroll_samples = int(cfg.preroll_ms * sample_rate / 1000)
        self._max_utt_samples = int(cfg.max_utterance_s * sample_rate)
        self._clear()

    # -- loop side ---------------------------------------------------------------------------

    def feed_opus(self, packet: bytes) -> None:
        """Queue one uplink Opus packet; decoding happens later in the batch worker."""
        self._enqueue(packet)

    def feed_pcm(self, pcm: np.ndarray) -> None:
        """Queue already-decoded int16 16 kHz samples (tests, text paths, non-Opus clients)."""
        arr = np.asarray(pcm)
        if arr.ndim != 1:
            raise AudioError(f"expected mono PCM as a 1-D array, got shape {arr.shape}")
        if np.issubdtype(arr.dtype, np.floating):
            raise AudioError("feed_pcm expects int16 samples, got floating point")
        if arr.dtype != np.int16:
            arr = arr.astype(np.int16)
        if arr.size:
            self._enqueue(arr.copy())

    def _enqueue(self, item: bytes | np.ndarray) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped_packets += 1
        self._pending.append(item)

    def reset(self) -> None:
        """Start a new listen turn: forget queued audio, model state and speech flags.

        The decoder is kept (same Opus stream). The worker's state is cleared by the batcher
        before the next batch; events still in flight for the old turn are dropped.
        """
        self._pending.clear()
        self._generation += 1

    @property
    def in_speech(self) -> bool:
        return self._in_speech and self._applied_generation == self._generation

    @property
    def pending(self) -> int:
        """Queued packets/arrays not yet handed to the worker."""
        return len(self._pending)

    def _apply_reset(self) -> None:
        """Called by the batcher on the loop, between batches, after reset()."""
        if self._applied_generation != self._generation:
            self._clear()
            self._applied_generation = self._generation

    def _clear(self) -> None:
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._buf = np.zeros(0, dtype=np.int16)  # decoded samples not yet inferred (< 512 between ticks)
        self._in_speech = False
        self._ring: deque[np.ndarray] = deque()  # preroll + onset candidate chunks while idle
        self._ring_samples = 0
        self._speech_run_ms = 0.0
        self._silence_ms = 0.0
        self._paused = False  # a pause event was emitted for the current silence
        self._utt: list[np.ndarray] = []
        self._utt_samples = 0

    # -- worker side -------------------------------------------------------------------------

    def _decode_items(self, work: _Work) -> None:
        parts = [self._buf]
        for item in work.items:
            if isinstance(item, np.ndarray):
                parts.append(item)
                continue
            try:
                parts.append(self._decoder.decode(item))
            except AudioError as exc:
                self.decode_errors += 1
                work.errors.append(str(exc))
        self._buf = np.concatenate(parts) if len(parts) > 1 else self._buf

    def _step(self, chunk: np.ndarray, prob: float, events: list[VadEvent]) -> None:
        """Advance the state machine by one 512-sample chunk with its speech probability."""
        if not self._in_speech:
            self._ring.append(chunk)
            self._ring_samples += chunk.size
            if prob >= self._threshold:
                self._speech_run_ms += CHUNK_MS
            elif prob < self._neg_threshold:
                self._speech_run_ms = 0.0
            # Keep the preroll plus the chunks of the onset candidate.
            keep = self._preroll_samples + int(self._speech_run_ms * self.sample_rate / 1000)
            while self._ring and self._ring_samples - self._ring[0].size >= keep:
                self._ring_samples -= self._ring.popleft().size
            if prob >= self._threshold and self._speech_run_ms >= max(self.cfg.min_speech_ms, CHUNK_MS):
                self._in_speech = True
                self._silence_ms = 0.0
                self._utt = list(self._ring)
                self._utt_samples = self._ring_samples
                self._ring.clear()
                self._ring_samples = 0
                events.append(VadEvent("speech_start", None, time.monotonic()))
        else:
            self._utt.append(chunk)
            self._utt_samples += chunk.size
            if prob >= self._threshold:
                self._silence_ms = 0.0
                if self._paused:
                    self._paused = False
                    events.append(VadEvent("resume", None, time.monotonic()))
            elif prob < self._neg_threshold or self._silence_ms > 0:
                self._silence_ms += CHUNK_MS
            speculate = self.cfg.speculative_asr_ms
            if self._silence_ms > 0 and self._silence_ms >= self.cfg.min_silence_ms:
                now = time.monotonic()
                ended = now - self.cfg.min_silence_ms / 1000
                events.append(VadEvent("speech_end", self._take_utterance(), now, ended))
            elif self._utt_samples > self._max_utt_samples:
                events.append(VadEvent("too_long", self._take_utterance(), time.monotonic()))
            elif 0 < speculate <= self._silence_ms and not self._paused:
                self._paused = True
                now = time.monotonic()
                events.append(VadEvent("pause", np.concatenate(self._utt), now, now - speculate / 1000))

    def _take_utterance(self) -> np.ndarray:
        pcm = np.concatenate(self._utt) if self._utt else np.zeros(0, dtype=np.int16)
        self._utt = []
        self._utt_samples = 0
        self._in_speech = False
        self._speech_run_ms = 0.0
        self._silence_ms = 0.0
        self._paused = False
        return pcm


class VadBatcher:
    """Runs every registered stream's VAD in one worker call and one ``infer`` per round per tick."""

    def __init__(
        self,
        model: SileroVad,
        tick_ms: int = 30,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.model = model
        self.tick_ms = tick_ms
        self._own_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vad")
        self._executor_closed = False
        self._streams: dict[int, VadStream] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Metrics (read by the server's /metrics and by tests).
        self.last_batch_size = 0  # largest infer batch in the last tick that had work
        self.last_rounds = 0  # infer calls in that tick
        self.max_batch_size = 0
        self.batches = 0  # infer calls in total
        self.chunks = 0  # stream-chunks inferred in total
        self.ticks = 0  # ticks that had work
        self.last_tick_ms = 0.0  # worker wall time of the last tick that had work
        self.infer_ms_total = 0.0

    @property
    def streams(self) -> int:
        return len(self._streams)

    def register(self, stream: VadStream) -> None:
        self._streams[id(stream)] = stream

    def unregister(self, stream: VadStream) -> None:
        self._streams.pop(id(stream), None)

    def start(self) -> asyncio.Task[None]:
        """Start the tick loop on the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._stopping = False
            if self._own_executor and self._executor_closed:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vad")
                self._executor_closed = False
            self._task = asyncio.get_running_loop().create_task(self.run(), name="vad-batcher")
        return self._task

    async def stop(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_executor and not self._executor_closed:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor_closed = True

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = self.tick_ms / 1000
        while not self._stopping:
            started = loop.time()
            work = self._collect()
            if work:
                try:
                    await loop.run_in_executor(self._executor, self._process, work)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug must not stop VAD for every device
                    log.exception("VAD batch failed (%d streams)", len(work))
                else:
                    metrics.VAD_BATCH.observe(self.last_batch_size)
                    metrics.STAGE_SECONDS.labels(stage="vad_tick").observe(self.last_tick_ms / 1000)
                    self._deliver(work)
            await asyncio.sleep(max(0.0, tick - (loop.time() - started)))

    def process_once(self) -> None:
        """Run one tick synchronously on the calling thread (tests and tools without a loop).

        Callbacks then run on the calling thread.
        """
        work = self._collect()
        if work:
            self._process(work)
            self._deliver(work)

    # -- internals -----------------------------------------------------------------------------

    def _collect(self) -> list[_Work]:
        """On the loop: apply resets and drain each stream's queue (no worker is running now)."""
        work: list[_Work] = []
        for stream in list(self._streams.values()):
            stream._apply_reset()
            if not stream._pending and stream._buf.size < CHUNK:
                continue
            items = list(stream._pending)
            stream._pending.clear()
            work.append(_Work(stream, stream._generation, items))
        return work

    def _process(self, work: list[_Work]) -> None:
        """In the worker: decode, then rounds of one batched infer while any stream has a chunk."""
        t0 = time.perf_counter()
        for w in work:
            w.stream._decode_items(w)
        rounds = 0
        biggest = 0
        infer_s = 0.0
        active = [w for w in work if w.stream._buf.size >= CHUNK]
        while active:
            n = len(active)
            chunks = np.empty((n, CONTEXT + CHUNK), dtype=np.float32)
            state = np.empty((2, n, 128), dtype=np.float32)
            pcm_chunks: list[np.ndarray] = []
            for i, w in enumerate(active):
                s = w.stream
                pcm = s._buf[:CHUNK]
                pcm_chunks.append(pcm)
                chunks[i, :CONTEXT] = s._context
                chunks[i, CONTEXT:] = pcm * (1.0 / 32768.0)
                state[:, i, :] = s._state[:, 0, :]
            ti = time.perf_counter()
            probs, new_state = self.model.infer(chunks, state)
            infer_s += time.perf_counter() - ti
            rounds += 1
            biggest = max(biggest, n)
            for i, w in enumerate(active):
                s = w.stream
                s._state = new_state[:, i : i + 1, :].copy()
                s._context = chunks[i, -CONTEXT:].copy()
                s._buf = s._buf[CHUNK:]
                s._step(pcm_chunks[i], float(probs[i]), w.events)
            active = [w for w in active if w.stream._buf.size >= CHUNK]
            self.chunks += n
        if rounds:
            self.batches += rounds
            self.ticks += 1
            self.last_rounds = rounds
            self.last_batch_size = biggest
            self.max_batch_size = max(self.max_batch_size, biggest)
            self.infer_ms_total += infer_s * 1000
        self.last_tick_ms = (time.perf_counter() - t0) * 1000

    def _deliver(self, work: list[_Work]) -> None:
        """On the loop: hand errors and events to their sessions (stale turns are dropped)."""
        for w in work:
            s = w.stream
            if id(s) not in self._streams or s._generation != w.generation:
                continue
            for message in w.errors:
                if s.on_error is not None:
                    try:
                        s.on_error(message)
                    except Exception:
                        log.exception("VAD on_error callback failed")
                else:
                    log.warning("VAD: %s", message)
            for event in w.events:
                try:
                    s.on_event(event)
                except Exception:
                    log.exception("VAD on_event callback failed (%s)", event.kind)


class VadShards:
    """Connected devices spread over several batchers, each with its own thread and tick.

    One batcher is one thread: at 160 streaming devices it used about half a core (docs/scaling.md),
    so past ~300 connected devices a single thread could not keep up however many cores the node
    has. Each shard batches its own streams in one onnxruntime call per tick (the model's session is
    shared: onnxruntime runs are thread-safe); a new stream joins the shard with the fewest.
    """

    def __init__(self, model: SileroVad, shards: int = 1, tick_ms: int = 30) -> None:
        self.shards = [VadBatcher(model, tick_ms) for _ in range(max(1, shards))]
        self._of: dict[int, VadBatcher] = {}

    @property
    def streams(self) -> int:
        return sum(shard.streams for shard in self.shards)

    def register(self, stream: VadStream) -> None:
        shard = min(self.shards, key=lambda s: s.streams)
        shard.register(stream)
        self._of[id(stream)] = shard

    def unregister(self, stream: VadStream) -> None:
        shard = self._of.pop(id(stream), None)
        if shard is not None:
            shard.unregister(stream)

    def start(self) -> None:
        for shard in self.shards:
            shard.start()

    async def stop(self) -> None:
        for shard in self.shards:
            await shard.stop()
