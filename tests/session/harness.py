"""Drive a Reply in process: a recording port stands in for its session, timing engines for the models.

A fake of the session (``RecordingPort``): these tests are about the reply, so the port only records
what the reply sends and does, and drops what carries an old generation, as the session does. The
engines are the real pools and Opus encoding around the timing stand-ins (``edge_node/engines/timing.py``)
with a profile of millisecond times, so a whole turn takes a fraction of a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from edge_node.admission import CapacityModel
from edge_node.cache.answers import AnswerCache
from edge_node.cache.lru import LruCache
from edge_node.cache.speech import CachedSynthesis
from edge_node.config import EdgeConfig
from edge_node.engines.canned import CannedSpeech
from edge_node.engines.llm import ChatModel
from edge_node.engines.llm_stream import LocalChat
from edge_node.engines.runtime import Engines
from edge_node.engines.timing import TimingAsr, TimingLlm, TimingProfile, TimingTts
from edge_node.engines.tts import SpeechModel
from edge_node.routing.intent import DeviceAction, DeviceCapabilities
from edge_node.routing.router import Router
from edge_node.session.port import ReplyServices
from edge_node.session.reply import Reply, TurnInput
from edge_node.turn_stats import TurnStats
from shared.nats.streaming import RemoteFailed
from shared.routing_config import parse_routing

LOCAL_REPLY = "The local model answers in two sentences. This is the second one of them."


def profile(
    reply: str = LOCAL_REPLY, per_token_s: float = 0.001, transcript: str = "What is a cat?", chars_per_s: float = 400.0
) -> TimingProfile:
    return TimingProfile.model_validate(
        {
            "source": "tests/session (millisecond stand-ins)",
            "asr": {"base_s": 0.002},
            "llm": {"first_token_s": 0.002, "per_token_s": per_token_s, "reply": reply},
            "tts": {"per_audio_s": 0.002, "chars_per_s": chars_per_s},
            "transcripts": [{"text": transcript, "weight": 1.0}],
        }
    )


class RecordingPort:
    """Fake of the reply's session (``ReplyPort``): records everything, drops stale generations."""

    def __init__(self, caps: DeviceCapabilities | None = None) -> None:
        self.session_id = "S1"
        self.device_id = "aa:bb:cc:00:00:01"
        self.log = logging.LoggerAdapter(logging.getLogger("tests.session"), {})
        self.caps = caps or DeviceCapabilities()
        self.action_error: Exception | None = None  # what run_action raises (a device that fails the call)
        self.language = "en"
        self.gen = 1
        self.sent: list[tuple[str, Any]] = []  # ("json", message) or ("audio", packet), in order
        self.dropped: list[tuple[str, Any]] = []  # sent with an old generation: never reached the device
        self.history: list[dict[str, str]] = []
        self.remembered: list[tuple[str, str]] = []
        self.actions: list[DeviceAction] = []
        self.announced: list[tuple[str, float]] = []  # timers the reply's tools set
        self.finished = asyncio.Event()
        self.said_nothing: bool | None = None
        self.on_tts_stop: Callable[[], None] | None = None  # called as tts/stop is sent

    async def send_json(self, msg: dict[str, Any], gen: int | None = None) -> bool:
        json.dumps(msg)  # what the session would encode
        if gen is not None and gen != self.gen:
            self.dropped.append(("json", msg))
            return False
        self.sent.append(("json", msg))
        if msg.get("type") == "tts" and msg.get("state") == "stop" and self.on_tts_stop is not None:
            self.on_tts_stop()  # e.g. the device hanging up the moment it hears the end
        return True

    async def send_audio(self, packet: bytes, gen: int) -> bool:
        if gen != self.gen:
            self.dropped.append(("audio", packet))
            return False
        self.sent.append(("audio", packet))
        return True

    def conversation(self) -> list[dict[str, str]]:
        return list(self.history)

    def remember(self, user: str, assistant: str) -> None:
        self.remembered.append((user, assistant))

    async def wait_for_tools(self, timeout_s: float) -> bool:
        return True

    async def run_action(self, action: DeviceAction) -> str:
        self.actions.append(action)
        if self.action_error is not None:
            raise self.action_error
        return "ok"

    def announce(self, text: str, delay_s: float) -> bool:
        self.announced.append((text, delay_s))
        return True

    def reply_finished(self, said_nothing: bool) -> None:
        self.said_nothing = said_nothing
        self.finished.set()

    # -- reading what the device got ----------------------------------------------------------
    def order(self) -> list[str]:
        """The message kinds in order, runs of audio collapsed (as tests/edge reads a turn)."""
        out: list[str] = []
        for kind, item in self.sent:
            label = "audio" if kind == "audio" else item["type"] + (f":{item['state']}" if "state" in item else "")
            if not (label == "audio" and out and out[-1] == "audio"):
                out.append(label)
        return out

    def sentences(self) -> list[str]:
        return [
            m["text"] for k, m in self.sent if k == "json" and m["type"] == "tts" and m["state"] == "sentence_start"
        ]

    def audio_packets(self) -> int:
        return sum(1 for kind, _ in self.sent if kind == "audio")


class FakeCloud:
    """Fake cloud link (the reply's handling of it is tested): streams words, or fails as told."""

    configured = True

    def __init__(self, reply: str = "The cloud answers this one.", fail_after: int | None = None) -> None:
        self.reply, self.fail_after, self.calls = reply, fail_after, 0

    def ready(self, kind: str = "llm") -> bool:
        return True

    async def chat_stream(
        self,
        messages: Any,
        max_tokens: int,
        turn_id: str,
        gen: int,
        limits: Any,
        temperature: float = 0.3,
        device_id: str = "",
        session_id: str = "",
    ) -> AsyncIterator[str]:
        self.calls += 1
        for i, word in enumerate(self.reply.split(" ")):
            if self.fail_after is not None and i >= self.fail_after:
                raise RemoteFailed("worker vanished", "stream")
            await asyncio.sleep(0.001)
            yield word if i == 0 else " " + word


class FakeRouting:
    """The routing policy from literal YAML (no file, no KV)."""

    def __init__(self, text: str) -> None:
        self.policy = parse_routing(text)


@contextmanager
def node(
    prof: TimingProfile | None = None,
    cloud: FakeCloud | None = None,
    routing: str | None = None,
    languages: dict[str, tuple[ChatModel, SpeechModel]] | None = None,
    **cfg: Any,
) -> Iterator[ReplyServices]:
    """What a node lends its replies, on timing engines; the pools' threads stop on exit.
    ``languages``: the LLM and the voice of each non-English language the node serves."""
    extra = languages or {}
    if extra:
        cfg.setdefault("languages", {"serve": ["en", *extra]})
    config = EdgeConfig.model_validate(cfg)
    prof = prof or profile()
    engines = Engines(
        config,
        None,  # type: ignore[arg-type]
        [TimingAsr(prof)],
        [TimingLlm(prof)],
        [TimingTts(prof)],
        llm_by_language={lang: [llm] for lang, (llm, _tts) in extra.items()},
        tts_by_language={lang: [tts] for lang, (_llm, tts) in extra.items()},
    )
    audio = config.audio
    filler = engines.synthesize_blocking("One moment.", audio.downlink_sample_rate, audio.downlink_frame_ms)
    filler.text = "One moment."
    canned = CannedSpeech(
        engines.synthesize_blocking(config.queues.busy_message, audio.downlink_sample_rate, audio.downlink_frame_ms),
        engines.synthesize_blocking(
            config.limits.slow_down_message, audio.downlink_sample_rate, audio.downlink_frame_ms
        ),
        fillers={"en": filler},
    )
    answers = AnswerCache(LruCache(1 << 20), None, config.cache.answer_ttl_s)
    router = Router(
        config.llm,
        config.intent,
        config.mcp,
        LocalChat(engines.llm_pool),
        answers,
        routing=FakeRouting(routing) if routing else None,  # type: ignore[arg-type]
        cloud=cloud,  # type: ignore[arg-type]
        languages=list(config.languages.serve),
        chats={lang: LocalChat(engines.llm_pools[lang]) for lang in extra},
        system_prompts={lang: engines.system_prompt(lang) for lang in extra},
    )
    try:
        yield ReplyServices(
            router=router,
            transcribe=engines.transcribe,
            synthesize=CachedSynthesis(engines.synthesize, None, engines.voice_name),
            canned=canned,
            capacity=CapacityModel(config.admission),
            turn_stats=TurnStats(),
            audio=config.audio,
            tts=config.tts,
            queues=config.queues,
            node_id="edge-test",
            in_burst=engines.in_burst,
        )
    finally:
        for pool in engines.pools():
            pool.close()


async def run_turn(services: ReplyServices, port: RecordingPort, turn: TurnInput, timeout_s: float = 10.0) -> Reply:
    """Start a reply for ``turn`` and wait until it has told its port it is over."""
    reply = Reply(port, services, port.gen, turn)
    reply.start()
    await asyncio.wait_for(port.finished.wait(), timeout_s)
    return reply


def text_turn(text: str, ended_ago_s: float = 0.0) -> TurnInput:
    return TurnInput(text=text, ended_at=time.monotonic() - ended_ago_s, source="text")
