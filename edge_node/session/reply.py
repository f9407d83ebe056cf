"""A reply as an object with a lifecycle: the data lane of a session.

One Reply per turn, stamped with the session's generation number. It runs the ordered stages
(ASR, routing, sentence splitting, TTS, pacing) as tasks joined by small queues so the LLM keeps
generating while the first sentence is synthesised and the previous one is played. A barge-in
bumps the session's generation and cancels the reply's task; anything it still tries to send
carries the old generation and is dropped by the session, so no stale text or audio leaves the
server however far along each stage was.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_node import metrics
from edge_node.engines.pool import FIRST, NORMAL, BusyError
from edge_node.engines.runtime import SpeechAudio
from edge_node.engines.sentences import SentenceSplitter, clean_for_speech
from edge_node.routing.router import APOLOGY, RouteResult, TurnContext
from edge_node.session.pacer import Pacer
from shared.engines.asr import AsrResult
from shared.nats.subjects import safe_token
from shared.protocol import messages as msgs

if TYPE_CHECKING:
    from edge_node.session.session import Session


class ReplyState(enum.StrEnum):
    PENDING = "pending"
    SPEAKING = "speaking"
    DONE = "done"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


@dataclass(slots=True)
class TurnInput:
    """What the user said: audio to transcribe or text (a detect / text turn)."""

    pcm: np.ndarray | None = None
    text: str | None = None
    ended_at: float = field(default_factory=time.monotonic)
    source: str = "voice"
    # ASR already started on this utterance during the end-of-speech wait (speculative ASR).
    asr: asyncio.Task[AsrResult] | None = None
    # Over the device's limits.turns_per_min: answered with the slow-down message, nothing transcribed.
    rate_limited: bool = False


class Reply:
    def __init__(self, session: Session, gen: int, turn: TurnInput) -> None:
        self.session = session
        self.gen = gen
        self.turn = turn
        self.state = ReplyState.PENDING
        self._route = "none"
        self.result: RouteResult | None = None
        self.language = ""  # what the ASR heard
        self.user_text = ""
        self.reply_text: list[str] = []
        self.first_audio_at: float | None = None
        self.tts_started = False
        self.stopped = False
        self.pacer: Pacer | None = None
        self.task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        # The first audio must be on its way by then, or the turn is answered "busy" (queues.first_audio_budget_s).
        self.deadline = turn.ended_at + session.ctx.cfg.queues.first_audio_budget_s

    @property
    def route(self) -> str:
        """The route answering this turn: the chosen one, or the fallback that took over."""
        return self.result.route if self.result is not None else self._route

    @property
    def turn_id(self) -> str:
        """Unique per turn across the fleet: names it in the cloud (``xz.cancel.<turn id>``)."""
        s = self.session
        return safe_token(f"{s.ctx.cfg.node_id}-{s.session_id[:8]}-{self.gen}")

    @property
    def active(self) -> bool:
        return self.state in (ReplyState.PENDING, ReplyState.SPEAKING)

    def start(self) -> None:
        self.session.ctx.capacity.turn_started()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"reply-{self.gen}")

    def interrupt(self, cause: str) -> bool:
        """Cancel the reply; returns False when it had already finished."""
        if not self.active:
            return False
        self.state = ReplyState.INTERRUPTED
        metrics.INTERRUPTIONS.labels(reason=cause).inc()
        if self.task is not None:
            self.task.cancel()
        return True

    async def _send(self, msg: dict[str, Any]) -> bool:
        return await self.session.send_json(msg, gen=self.gen)

    async def _run(self) -> None:
        s = self.session
        try:
            if self.turn.rate_limited:
                self.state = ReplyState.DONE
                metrics.TURNS.labels(route="none", outcome="rate_limited").inc()
                await self._say_canned(s.ctx.engines.slow_down_audio, "neutral")
                return
            text = await self._user_text()
            if not text:
                s.log.info("turn: no words recognised, listening again")
                self.state = ReplyState.DONE
                metrics.TURNS.labels(route="none", outcome="empty").inc()
                return
            self.user_text = text
            await self._send(msgs.stt(s.session_id, text))
            ctx = TurnContext(text, s.conversation(), s.caps, s.run_action, s.log, deadline=self.deadline,
                              language=self.language, turn_id=self.turn_id, gen=self.gen,
                              device_id=s.device.device_id, session_id=s.session_id,
                              await_tools=s.wait_for_tools if s.caps.tools_pending else None)  # fmt: skip
            result = self.result = await s.ctx.router.route(ctx)
            s.log.info("turn: %r -> route=%s (%s)", text, result.route, result.reason)
            self.state = ReplyState.SPEAKING
            self.tts_started = True
            await self._send(msgs.tts_start(s.session_id))
            await self._send(msgs.llm_emotion(s.session_id, result.emotion))
            await self._speak(result.text)
            if result.fell_back:
                s.log.info("turn answered by %s after fallback %s", result.route, ", ".join(result.fell_back))
            if self.route in ("local_llm", "cloud", "cache") and self.reply_text:
                s.remember(text, " ".join(self.reply_text))
            if result.cacheable and self.reply_text and not result.fell_back and self.route in ("local_llm", "cloud"):
                await self._store_answer(text, " ".join(self.reply_text))
            self.state = ReplyState.DONE
            metrics.TURNS.labels(route=self.route, outcome="ok").inc()
        except BusyError as exc:
            self.state = ReplyState.FAILED
            metrics.TURNS.labels(route=self.route, outcome="busy").inc()
            s.log.warning("turn refused, node busy: %s", exc)
            await self._say_busy()
        except asyncio.CancelledError:
            self.state = ReplyState.INTERRUPTED
            metrics.TURNS.labels(route=self.route, outcome="interrupted").inc()
            raise
        except Exception as exc:  # noqa: BLE001 - the device must still get a complete turn
            self.state = ReplyState.FAILED
            metrics.TURNS.labels(route=self.route, outcome="error").inc()
            s.log.exception("turn failed in route %s: %r", self.route, exc)
            await self._apologise()
        finally:
            self.done.set()
            s.ctx.capacity.turn_finished()
            if self.state in (ReplyState.DONE, ReplyState.FAILED):
                latency = self.first_audio_at - self.turn.ended_at if self.first_audio_at is not None else None
                s.ctx.turn_stats.record(self.route, latency)
            s.reply_finished(self)

    async def _store_answer(self, question: str, answer: str) -> None:
        """A complete answer to a reusable question goes to the answer cache (never fails the turn)."""
        cache = self.session.ctx.router.answer_cache
        if cache is None:
            return
        try:
            await cache.put(question, answer)
        except Exception as exc:  # noqa: BLE001
            self.session.log.warning("answer cache store failed: %r", exc)

    async def _user_text(self) -> str:
        if self.turn.text is not None:
            return self.turn.text.strip()
        assert self.turn.pcm is not None
        result = None
        if self.turn.asr is not None:
            try:
                result = await self.turn.asr
                metrics.SPECULATIVE_ASR.labels(result="used").inc()
            except BusyError:
                raise
            except Exception as exc:  # noqa: BLE001 - the utterance is still here: transcribe it again
                self.session.log.warning("speculative ASR failed (%r): transcribing again", exc)
        if result is None:
            result = await self.session.ctx.engines.transcribe(self.turn.pcm, self.deadline)
        self.session.log.info(
            "asr: %r (%.0f ms audio, %.0f ms compute)", result.text, result.audio_ms, result.compute_ms
        )
        self.language = result.language
        text = result.text.strip()
        if self._escalate_asr(result):
            text = await self._cloud_asr(text)
        return text

    def _escalate_asr(self, result: AsrResult) -> bool:
        """Send the utterance to the cloud's multilingual ASR? (routing policy ``asr.cloud``)."""
        cloud = self.session.ctx.router.cloud
        if cloud is None or not cloud.ready("asr"):
            return False
        rule = self.session.ctx.router.policy.asr
        if rule.cloud == "always":
            return True
        if rule.cloud == "never":
            return False
        # low_confidence: the edge's model was unsure, or heard nothing in audible speech.
        unsure = result.avg_logprob is not None and result.avg_logprob < rule.min_avg_logprob
        return unsure or (not result.text.strip() and result.audio_ms > 800)

    async def _cloud_asr(self, local_text: str) -> str:
        s = self.session
        assert self.turn.pcm is not None
        limits = s.ctx.router.policy.limits("cloud")
        reason = "always" if s.ctx.router.policy.asr.cloud == "always" else "low_confidence"
        metrics.ESCALATIONS.labels(kind="asr", reason=reason).inc()
        try:
            remote = await s.ctx.router.cloud.transcribe(  # type: ignore[union-attr]
                self.turn.pcm, limits.accept_timeout_s + limits.first_token_timeout_s
            )
        except Exception as exc:  # noqa: BLE001 - keep what the edge heard
            s.log.warning("cloud ASR unavailable (%s): keeping the edge's %r", exc, local_text)
            return local_text
        self.language = str(remote.get("language") or self.language)
        s.log.info("cloud asr (%s): %r replaces %r", remote.get("worker", "?"), remote["text"], local_text)
        return str(remote["text"]).strip()

    async def _say_busy(self) -> None:
        """Saturated: play the pre-encoded busy answer (no engine needed) and end the turn."""
        await self._say_canned(self.session.ctx.engines.busy_audio, "sad")

    async def _say_canned(self, canned: SpeechAudio | None, emotion: str) -> None:
        """Play a pre-encoded answer (busy, slow down: no engine needed) and end the turn."""
        s = self.session
        with contextlib.suppress(Exception):
            if not self.tts_started:
                self.tts_started = True
                await self._send(msgs.tts_start(s.session_id))
                await self._send(msgs.llm_emotion(s.session_id, emotion))
            if canned is not None:
                audio_cfg = s.ctx.cfg.audio
                pacer = self.pacer or Pacer(audio_cfg.downlink_frame_ms, audio_cfg.prebuffer_packets, self._send_audio)
                await self._send(msgs.tts_sentence_start(s.session_id, canned.text))
                await pacer.play(canned.packets)
                await asyncio.sleep(pacer.remaining_playout())
        if not self.stopped:
            await self._send(msgs.tts_stop(s.session_id))
            self.stopped = True

    async def _apologise(self) -> None:
        """After a failure mid-turn, end the turn the device is waiting for, spoken if possible."""
        s = self.session
        with contextlib.suppress(Exception):
            if not self.tts_started:
                self.tts_started = True
                await self._send(msgs.tts_start(s.session_id))
                await self._send(msgs.llm_emotion(s.session_id, "sad"))

            async def apology() -> AsyncIterator[str]:
                yield APOLOGY

            await self._speak(apology())
        if not self.stopped:
            await self._send(msgs.tts_stop(s.session_id))
            self.stopped = True

    async def _speak(self, deltas: AsyncIterator[str]) -> None:
        """Sentences -> TTS (one ahead) -> paced audio, then tts/stop once the device has played it."""
        s = self.session
        audio_cfg = s.ctx.cfg.audio
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speech: asyncio.Queue[SpeechAudio | BaseException | None] = asyncio.Queue(maxsize=2)

        async def split() -> None:
            splitter = SentenceSplitter(s.ctx.cfg.tts.first_clause_min_chars)
            try:
                async for delta in deltas:
                    for sentence in splitter.push(delta):
                        sentences.put_nowait(sentence)
                for sentence in splitter.flush():
                    sentences.put_nowait(sentence)
            finally:
                sentences.put_nowait(None)
                aclose = getattr(deltas, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()

        async def synthesise() -> None:
            priority = FIRST  # the device hears nothing until the first sentence is ready
            try:
                while (sentence := await sentences.get()) is not None:
                    spoken = clean_for_speech(sentence)
                    if not spoken:
                        continue
                    # No turn deadline here: the words exist (the LLM's work is done or a rule
                    # answered), so speaking them is the cheapest way to finish the turn; FIRST
                    # puts the opening sentence ahead of other replies' tails.
                    try:
                        audio = await s.ctx.engines.synthesize(
                            spoken, audio_cfg.downlink_sample_rate, audio_cfg.downlink_frame_ms, priority
                        )
                    except BusyError as exc:
                        if priority == FIRST:
                            raise  # nothing said yet: the turn is answered "busy"
                        # Mid-reply: end with what was said rather than tack "busy" onto an answer.
                        s.log.warning("reply cut short after %d sentence(s): %s", len(self.reply_text), exc)
                        metrics.REPLIES_CUT_SHORT.labels(stage=exc.stage).inc()
                        cut_short.set()
                        break
                    priority = NORMAL
                    await speech.put(audio)
            except Exception as exc:  # noqa: BLE001 - re-raised in the reply task
                await speech.put(exc)
            finally:
                await speech.put(None)

        cut_short = asyncio.Event()
        pacer = self.pacer = Pacer(audio_cfg.downlink_frame_ms, audio_cfg.prebuffer_packets, self._send_audio)
        tasks = [asyncio.create_task(split()), asyncio.create_task(synthesise())]
        try:
            while (item := await speech.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                self.reply_text.append(item.text)
                await self._send(msgs.tts_sentence_start(s.session_id, item.text))
                await pacer.play(item.packets)
            if cut_short.is_set():
                tasks[0].cancel()  # stop the LLM: nothing more of this reply will be spoken
            else:
                # A route that failed mid-answer surfaces here, before the turn is declared over.
                await tasks[0]
            # Let the device play what it holds before telling it the turn is over (docs/protocol.md §2.8).
            await asyncio.sleep(pacer.remaining_playout() + audio_cfg.downlink_frame_ms / 1000.0)
            await self._send(msgs.tts_stop(s.session_id))
            self.stopped = True
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send_audio(self, packet: bytes) -> None:
        sent = await self.session.send_audio(packet, gen=self.gen)
        if sent and self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
            metrics.TURN_LATENCY.labels(route=self.route).observe(self.first_audio_at - self.turn.ended_at)
            self.session.log.info(
                "first audio %.0f ms after end of speech (route %s)",
                (self.first_audio_at - self.turn.ended_at) * 1000,
                self.route,
            )

