"""What a reply sees of the world: its session through a narrow port, and the node's services.

A reply used to reach into its ``Session`` and from there into the whole server context. Now it
gets two things. The ``ReplyPort`` is what a session lends one of its replies: sending to the device
(stamped with the reply's generation, so a barge-in silences it), the conversation so far, the
device's tools and actions, and the news that the reply is over. ``ReplyServices`` is what the node
lends every reply: the router, the ASR and the (cached) TTS, the pre-encoded phrases and the node's
books. A test drives a reply with a recording port and timing engines, in process, in milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edge_node.admission import CapacityModel
from edge_node.cache.speech import Synthesize
from edge_node.config import AudioConfig, QueueConfig, TtsConfig
from edge_node.engines.canned import CannedSpeech
from edge_node.routing.intent import DeviceAction, DeviceCapabilities
from edge_node.routing.router import Router
from edge_node.turn_stats import TurnStats
from shared.engines.asr import AsrResult

__all__ = ["ReplyPort", "ReplyServices"]


class ReplyPort(Protocol):
    """A session as one of its replies sees it."""

    @property
    def session_id(self) -> str: ...

    @property
    def device_id(self) -> str: ...

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]: ...

    @property
    def caps(self) -> DeviceCapabilities: ...

    # The language of the device's last answered turn: what a turn that ends before its words are known
    # (over the rate limit, ASR busy) is answered in. The reply sets it once it knows the turn's language.
    language: str

    async def send_json(self, msg: dict[str, Any], gen: int | None = None) -> bool:
        """Send a message; with ``gen``, only while that generation is current (else dropped: False)."""
        ...

    async def send_audio(self, packet: bytes, gen: int) -> bool:
        """Send one Opus packet of generation ``gen``; dropped (False) once a newer one started."""
        ...

    def conversation(self) -> list[dict[str, str]]: ...

    def remember(self, user: str, assistant: str) -> None: ...

    async def wait_for_tools(self, timeout_s: float) -> bool: ...

    async def run_action(self, action: DeviceAction) -> str: ...

    def announce(self, text: str, delay_s: float) -> bool:
        """Speak ``text`` on this device in ``delay_s`` seconds (a timer); False when it cannot take more."""
        ...

    def reply_finished(self, said_nothing: bool) -> None:
        """The reply is over; ``said_nothing``: it ended without a word (an empty transcript)."""
        ...


@dataclass(frozen=True, slots=True)
class ReplyServices:
    """What the node lends every reply; one instance per node, built with the server context."""

    router: Router
    transcribe: Callable[[np.ndarray, float | None], Awaitable[AsrResult]]
    # text, sample rate, frame ms, priority, deadline, language -> packets (the TTS cache in front of the
    # language's TTS pool)
    synthesize: Synthesize
    canned: CannedSpeech
    capacity: CapacityModel
    turn_stats: TurnStats
    audio: AudioConfig
    tts: TtsConfig
    queues: QueueConfig
    node_id: str
    # True while first work (ASR, first clause, first sentence) is queued for an engine: a slow
    # turn hears the filler only then; a turn that is slow on an idle node is not helped by one.
    in_burst: Callable[[], bool] = lambda: True
