"""What the simulated device received, and the summary of a turn made from it.

``Event`` is one server message as the device saw it (with what the firmware model made of it: the
decoded PCM, or why the packet was dropped); ``Turn`` is what tests and tools assert on: the
transcript, the sentences, the reply audio, the order of the messages and the latencies from the
end of speech. ``summarise`` turns a slice of events into a ``Turn``; it is a pure function of the
events, so a turn can be summarised again from any slice after the fact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Event", "Turn", "summarise", "tail"]


@dataclass(eq=False)
class Event:
    """One message from the server, as the device received it."""

    at: float  # time.monotonic() on arrival
    kind: str  # "json" (a text frame; msg None if it was not a JSON object) | "audio" (a binary frame)
    msg: dict[str, Any] | None = None
    payload: bytes | None = None  # audio: the Opus packet (deframed); invalid text: the raw bytes
    pcm: np.ndarray | None = None  # audio that the simulated firmware decoded and would play
    dropped: str = ""  # why the firmware would drop it: before_start|after_stop|queue_full|decode_error|framing
    queue_depth: int | None = None  # simulated decode-queue depth after this packet was queued
    timestamp: int | None = None  # v2 header timestamp (ms)

    def is_json(self, type_: str, state: str | None = None) -> bool:
        return (
            self.kind == "json"
            and self.msg is not None
            and self.msg.get("type") == type_
            and (state is None or self.msg.get("state") == state)
        )


@dataclass(eq=False)
class Turn:
    """What the device saw between ``turn_reset()`` (or ``listen_start``) and the first ``tts/stop``."""

    stt_text: str
    sentences: list[str]
    emotion: str | None
    audio_packets: int  # packets decoded in the speaking state (what the device plays)
    pcm: np.ndarray  # int16 mono at sample_rate
    sample_rate: int
    order: list[str]  # "stt", "tts:start", "llm", "tts:sentence_start", "audio", "tts:stop" (audio runs collapsed)
    stt_ms: float | None  # latencies from the end of speech (speech_end_at), None if the event never came
    first_audio_ms: float | None
    tts_stop_ms: float | None
    dropped_packets: int = 0  # audio in the turn that the firmware would drop (any reason)
    max_queue_depth: int = 0
    events: list[Event] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.pcm.size / self.sample_rate if self.sample_rate else 0.0


def summarise(events: Sequence[Event], ref: float, sample_rate: int) -> Turn:
    """A ``Turn`` from a slice of events; latencies in ms from ``ref`` (a ``time.monotonic()``)."""

    def ms(at: float | None) -> float | None:
        return None if at is None else (at - ref) * 1000

    stt_text = ""
    sentences: list[str] = []
    emotion: str | None = None
    order: list[str] = []
    pcm_parts: list[np.ndarray] = []
    stt_at = first_audio_at = stop_at = None
    dropped = depth = 0
    for e in events:
        if e.kind == "audio":
            if not order or order[-1] != "audio":
                order.append("audio")
            if e.pcm is not None:
                pcm_parts.append(e.pcm)
                if first_audio_at is None:
                    first_audio_at = e.at
            if e.dropped:
                dropped += 1
            depth = max(depth, e.queue_depth or 0)
            continue
        msg = e.msg
        if msg is None:
            continue
        type_ = msg.get("type")
        if type_ == "stt":
            order.append("stt")
            stt_text = str(msg.get("text", ""))
            stt_at = stt_at if stt_at is not None else e.at
        elif type_ == "llm":
            order.append("llm")
            if isinstance(msg.get("emotion"), str):
                emotion = msg["emotion"]
        elif type_ == "tts":
            state = msg.get("state")
            order.append(f"tts:{state}")
            if state == "sentence_start":
                sentences.append(str(msg.get("text", "")))
            elif state == "stop" and stop_at is None:
                stop_at = e.at
    pcm = np.concatenate(pcm_parts) if pcm_parts else np.zeros(0, dtype=np.int16)
    return Turn(
        stt_text=stt_text,
        sentences=sentences,
        emotion=emotion,
        audio_packets=len(pcm_parts),
        pcm=pcm,
        sample_rate=sample_rate,
        order=order,
        stt_ms=ms(stt_at),
        first_audio_ms=ms(first_audio_at),
        tts_stop_ms=ms(stop_at),
        dropped_packets=dropped,
        max_queue_depth=depth,
        events=list(events),
    )


def tail(events: Sequence[Event], n: int = 6) -> str:
    """The last ``n`` events in a line, for the message of a wait that failed."""
    out = []
    for e in events[-n:]:
        out.append(f"audio[{len(e.payload or b'')}]" if e.kind == "audio" else json.dumps(e.msg)[:120])
    return "; ".join(out) or "(none)"
