from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from edge_node.config import VadConfig
from edge_node.engines.vad import CHUNK, SileroVad, VadBatcher, VadEvent, VadShards, VadStream
from shared.audio.opus import OpusEncoder

RATE = 16000


@pytest.fixture(scope="module")
def model() -> SileroVad:
    return SileroVad()


@pytest.fixture(scope="module")
def utterance(espeak_16k: Callable[[str], np.ndarray]) -> np.ndarray:
    """1 s of quiet noise, the command, 1.5 s of quiet noise (int16, 16 kHz)."""
    speech = espeak_16k("turn on the kitchen light")
    rng = np.random.default_rng(1)

    def quiet(seconds: float) -> np.ndarray:
        return (rng.standard_normal(int(seconds * RATE)) * 30).astype(np.int16)

    return np.concatenate([quiet(1.0), speech, quiet(1.5)])


def speech_seconds(espeak_16k: Callable[[str], np.ndarray]) -> float:
    return espeak_16k("turn on the kitchen light").size / RATE


def opus_packets(pcm: np.ndarray) -> list[bytes]:
    return OpusEncoder(RATE, 60, application="voip").encode_pcm(pcm)


class Recorder:
    def __init__(self) -> None:
        self.events: list[VadEvent] = []
        self.errors: list[str] = []
        self.loop_thread_only = True

    def on_event(self, event: VadEvent) -> None:
        # Callbacks must run on the event loop thread (get_running_loop raises elsewhere).
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.loop_thread_only = False
        self.events.append(event)

    def on_error(self, message: str) -> None:
        self.errors.append(message)

    @property
    def kinds(self) -> list[str]:
        """Turn-level events; pause/resume (speculative ASR) are in ``all_kinds``."""
        return [e.kind for e in self.events if e.kind not in ("pause", "resume")]

    @property
    def all_kinds(self) -> list[str]:
        return [e.kind for e in self.events]


async def wait_for(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the VAD")
        await asyncio.sleep(0.01)


def test_infer_shapes(model: SileroVad) -> None:
    chunks = np.zeros((3, 576), dtype=np.float32)
    state = np.zeros((2, 3, 128), dtype=np.float32)
    probs, new_state = model.infer(chunks, state)
    assert probs.shape == (3,) and new_state.shape == (2, 3, 128)
    assert (probs < 0.2).all()


async def test_opus_utterance_through_batcher(
    model: SileroVad, utterance: np.ndarray, espeak_16k: Callable[[str], np.ndarray]
) -> None:
    rec = Recorder()
    stream = VadStream(VadConfig(), rec.on_event, rec.on_error)
    batcher = VadBatcher(model, tick_ms=20)
    batcher.register(stream)
    batcher.start()
    try:
        for packet in opus_packets(utterance):
            stream.feed_opus(packet)
            await asyncio.sleep(0.005)  # faster than real time, spread over many ticks
        await wait_for(lambda: "speech_end" in rec.kinds)
        # Every decoded sample is inferred (60 ms packets, zero-padded last frame).
        total = len(opus_packets(utterance)) * 960
        await wait_for(lambda: batcher.chunks == total // CHUNK)
    finally:
        await batcher.stop()
    assert rec.kinds == ["speech_start", "speech_end"], rec.kinds
    assert rec.loop_thread_only
    assert not rec.errors and stream.decode_errors == 0 and stream.dropped_packets == 0
    start, end = (e for e in rec.events if e.kind in ("speech_start", "speech_end"))
    assert start.pcm is None and end.pcm is not None and end.pcm.dtype == np.int16
    assert start.at <= end.at
    spoken = speech_seconds(espeak_16k)
    seconds = end.pcm.size / RATE
    # Speech + preroll (0.3 s) + trailing silence (>= 0.55 s), give or take the edges.
    assert spoken + 0.4 < seconds < spoken + 1.4, (spoken, seconds)
    assert not stream.in_speech


async def test_shards_split_the_devices_and_each_hears_its_speech(model: SileroVad, utterance: np.ndarray) -> None:
    """Several VAD threads share one model: streams are balanced over them, each shard batches its
    own, and every device's utterance is found; a stream that leaves frees its place."""
    shards = VadShards(model, shards=2, tick_ms=20)
    recorders = [Recorder() for _ in range(4)]
    streams = [VadStream(VadConfig(), r.on_event, r.on_error) for r in recorders]
    for stream in streams:
        shards.register(stream)
    assert [s.streams for s in shards.shards] == [2, 2] and shards.streams == 4
    shards.start()
    try:
        for packet in opus_packets(utterance):
            for stream in streams:
                stream.feed_opus(packet)
            await asyncio.sleep(0.005)
        await wait_for(lambda: all("speech_end" in r.kinds for r in recorders))
        assert all(shard.chunks > 0 for shard in shards.shards)  # both threads did work
    finally:
        await shards.stop()
    assert all(r.kinds == ["speech_start", "speech_end"] and not r.errors for r in recorders)
    shards.unregister(streams[0])
    shards.unregister(streams[1])
    shards.register(streams[0])
    assert sorted(s.streams for s in shards.shards) == [1, 2] and shards.streams == 3


async def test_batch_of_streams_is_one_infer_per_round(model: SileroVad, utterance: np.ndarray) -> None:
    n = 4
    recs = [Recorder() for _ in range(n)]
    streams = [VadStream(VadConfig(), r.on_event, r.on_error) for r in recs]
    batcher = VadBatcher(model, tick_ms=20)
    for s in streams:
        batcher.register(s)
    batcher.start()
    try:
        # Exactly one chunk per stream, queued within one loop step: one tick, one infer call.
        for s in streams:
            s.feed_pcm(utterance[:CHUNK])
        await wait_for(lambda: batcher.batches >= 1)
        assert (batcher.batches, batcher.last_batch_size, batcher.last_rounds) == (1, n, 1)
        assert batcher.chunks == n

        # A 60 ms packet each: 960 samples -> one chunk (448 left) -> one round of n.
        packets = opus_packets(utterance[CHUNK:])
        before = batcher.batches
        for s in streams:
            s.feed_opus(packets[0])
        await wait_for(lambda: batcher.batches >= before + 1)
        assert (batcher.batches, batcher.last_batch_size, batcher.last_rounds) == (before + 1, n, 1)
        # The next packet: 448 + 960 = 1408 samples -> two rounds of n in one tick.
        for s in streams:
            s.feed_opus(packets[1])
        await wait_for(lambda: batcher.batches >= before + 3)
        assert (batcher.batches, batcher.last_batch_size, batcher.last_rounds) == (before + 3, n, 2)

        # Then the whole utterance, fed in lock step: every stream detects it.
        for packet in packets[2:]:
            for s in streams:
                s.feed_opus(packet)
            await asyncio.sleep(0.005)
        await wait_for(lambda: all("speech_end" in r.kinds for r in recs))
    finally:
        await batcher.stop()
    assert batcher.max_batch_size == n
    assert batcher.chunks == batcher.batches * n  # every infer call carried all n streams
    ends = [next(e for e in r.events if e.kind == "speech_end") for r in recs]
    assert len({e.pcm.size for e in ends}) == 1  # same input, same decision
    assert all(r.kinds == ["speech_start", "speech_end"] for r in recs)


async def test_garbage_packet_is_counted_and_others_keep_working(model: SileroVad, utterance: np.ndarray) -> None:
    good, bad = Recorder(), Recorder()
    s_good = VadStream(VadConfig(), good.on_event, good.on_error)
    s_bad = VadStream(VadConfig(), bad.on_event, bad.on_error)
    batcher = VadBatcher(model, tick_ms=20)
    batcher.register(s_good)
    batcher.register(s_bad)
    batcher.start()
    try:
        packets = opus_packets(utterance)
        for i, packet in enumerate(packets):
            s_good.feed_opus(packet)
            s_bad.feed_opus(b"\xff" * 50 if i == 5 else packet)
            if i == 6:
                s_bad.feed_opus(b"")
            await asyncio.sleep(0.003)
        await wait_for(lambda: "speech_end" in good.kinds and "speech_end" in bad.kinds)
    finally:
        await batcher.stop()
    assert s_bad.decode_errors == 2 and s_good.decode_errors == 0
    assert len(bad.errors) == 2 and "Opus" in bad.errors[0]
    assert good.kinds == ["speech_start", "speech_end"]
    assert bad.kinds == ["speech_start", "speech_end"]


def test_state_machine_too_long_preroll_and_reset(model: SileroVad, utterance: np.ndarray) -> None:
    """Synchronous ticks (process_once) so the test controls timing exactly."""
    rec = Recorder()
    cfg = VadConfig(max_utterance_s=0.5, preroll_ms=200)
    stream = VadStream(cfg, rec.on_event, rec.on_error)
    batcher = VadBatcher(model)
    batcher.register(stream)
    stream.feed_pcm(utterance)
    batcher.process_once()
    kinds = rec.kinds
    assert kinds[:2] == ["speech_start", "too_long"], kinds
    too_long = rec.events[1]
    assert too_long.pcm is not None and 0.5 <= too_long.pcm.size / RATE <= 0.5 + 0.2 + 0.04

    # reset() forgets queued audio and speech state; queued events of the old turn are dropped.
    rec.events.clear()
    stream.feed_pcm(utterance[: RATE + 4000])  # 1 s quiet + the first 0.25 s of speech
    batcher.process_once()
    stream.reset()
    assert not stream.in_speech and stream.pending == 0
    stream.feed_pcm(utterance[:RATE])  # quiet only
    batcher.process_once()
    assert all(e.kind != "speech_end" for e in rec.events)
    assert not stream.in_speech


def test_pause_then_resume_then_end(model: SileroVad, espeak_16k: Callable[[str], np.ndarray]) -> None:
    """A mid-sentence pause longer than speculative_asr_ms but shorter than min_silence_ms."""
    rng = np.random.default_rng(2)

    def quiet(seconds: float) -> np.ndarray:
        return (rng.standard_normal(int(seconds * RATE)) * 30).astype(np.int16)

    def trimmed(text: str) -> np.ndarray:
        speech = espeak_16k(text)
        loud = np.flatnonzero(np.abs(speech.astype(np.int32)) > 500)
        return speech[loud[0] : loud[-1] + 1]

    first, second = trimmed("turn on the kitchen light"), trimmed("please")
    pcm = np.concatenate([quiet(0.5), first, quiet(0.4), second, quiet(1.0)])
    rec = Recorder()
    stream = VadStream(VadConfig(speculative_asr_ms=200, min_silence_ms=550), rec.on_event, rec.on_error)
    batcher = VadBatcher(model)
    batcher.register(stream)
    stream.feed_pcm(pcm)
    batcher.process_once()
    # espeak leaves short gaps between words, so there may be more than one pause/resume pair
    # before the real pause; what matters is the shape.
    kinds = rec.all_kinds
    assert kinds[0] == "speech_start" and kinds[-2:] == ["pause", "speech_end"], kinds
    assert "resume" in kinds, kinds
    pauses = [e for e in rec.events if e.kind == "pause"]
    end = rec.events[-1]
    assert end.pcm is not None
    for pause in pauses:
        assert pause.pcm is not None and pause.pcm.size < end.pcm.size
        assert np.array_equal(pause.pcm, end.pcm[: pause.pcm.size])  # a prefix of the utterance
    # The last pause holds all the speech: only silence follows it in the utterance.
    assert end.pcm.size - pauses[-1].pcm.size <= int(0.55 * RATE)
    # Off: no pause events at all.
    rec2 = Recorder()
    stream2 = VadStream(VadConfig(speculative_asr_ms=0), rec2.on_event, rec2.on_error)
    batcher2 = VadBatcher(model)
    batcher2.register(stream2)
    stream2.feed_pcm(pcm)
    batcher2.process_once()
    assert "pause" not in rec2.all_kinds and rec2.kinds == ["speech_start", "speech_end"]


def test_queue_overflow_drops_oldest(model: SileroVad) -> None:
    stream = VadStream(VadConfig(), lambda e: None)
    packet = opus_packets(np.zeros(960, dtype=np.int16))[0]
    for _ in range(205):
        stream.feed_opus(packet)
    assert stream.dropped_packets == 5 and stream.pending == 200
