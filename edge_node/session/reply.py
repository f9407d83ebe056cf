"""A reply as an object with a lifecycle: the data lane of a session.

One Reply per turn, stamped with the session's generation number. It runs the ordered stages
(ASR, routing, sentence splitting, TTS, pacing) as tasks joined by small queues so the LLM keeps
generating while the first sentence is synthesised and the previous one is played. A barge-in
bumps the session's generation and cancels the reply's task; anything it still tries to send
carries the old generation and is dropped by the session, so no stale text or audio leaves the
server however far along each stage was.

A reply knows its session only through a ``ReplyPort`` and the node only through ``ReplyServices``
(``session/port.py``); what it sends goes through its ``ReplyOutput`` (``session/output.py``). Every
decision about the turn (the words, the route, what is remembered and stored) is the router's.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from edge_node import metrics
from edge_node.engines.pool import FIRST, NORMAL, BusyError
from edge_node.engines.runtime import SpeechAudio
from edge_node.engines.sentences import SentenceSplitter, clean_for_speech
from edge_node.language.phrases import say
from edge_node.language.speech_text import for_speech
from edge_node.routing.router import Route, RouteResult, TurnContext
from edge_node.session.output import ReplyOutput
from edge_node.session.port import ReplyPort, ReplyServices
from shared.engines.asr import AsrResult
from shared.nats.subjects import safe_token

# How often a slow turn looks again for a burst before it plays the filler.
_FILLER_POLL_S = 0.1


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
    # Not a turn the user took: a sentence the node says on its own (a timer the model set, now due).
    say: str | None = None


async def _once(text: str) -> AsyncIterator[str]:
    yield text


class Reply:
    def __init__(self, port: ReplyPort, services: ReplyServices, gen: int, turn: TurnInput) -> None:
        self.port = port
        self.services = services
        self.gen = gen
        self.turn = turn
        self.state = ReplyState.PENDING
        self.result: RouteResult | None = None
        self.language = ""  # what the ASR heard
        self.user_text = ""
        self.reply_text: list[str] = []
        self.out = ReplyOutput(port, gen, services.audio, self._first_audio)
        self.task: asyncio.Task[None] | None = None
        self.done = asyncio.Event()
        # ASR and the LLM must have started by then, or the turn is answered "busy" (queues.burst_wait_s;
        # first_audio_budget_s when the node is overloaded).
        self.deadline = turn.ended_at + services.capacity.start_budget(services.queues)
        self._filler: asyncio.Task[None] | None = None
        self._filler_playing = False

    @property
    def route(self) -> Route:
        """The route answering this turn: the chosen one, or the fallback that took over."""
        return self.result.route if self.result is not None else Route.NONE

    @property
    def turn_id(self) -> str:
        """Unique per turn across the fleet: names it in the cloud (``xz.cancel.<turn id>``)."""
        return safe_token(f"{self.services.node_id}-{self.port.session_id[:8]}-{self.gen}")

    @property
    def active(self) -> bool:
        return self.state in (ReplyState.PENDING, ReplyState.SPEAKING)

    @property
    def first_audio_at(self) -> float | None:
        return self.out.first_audio_at

    def start(self) -> None:
        self.services.capacity.turn_started()
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"reply-{self.gen}")

    def interrupt(self, cause: str) -> bool:
        """Cancel the reply; returns False when it had already finished.

        A reply whose tts/stop is out has finished for the device, which has heard all of it: what is
        left (remembering the exchange, storing the answer, counting the turn) is not cancelled, so a
        device that hangs up or speaks again at once does not leave the answer uncached."""
        if not self.active or self.out.stopped:
            return False
        self.state = ReplyState.INTERRUPTED
        metrics.INTERRUPTIONS.labels(reason=cause).inc()
        if self.task is not None:
            self.task.cancel()
        return True

    async def _run(self) -> None:
        port, services = self.port, self.services
        try:
            if self.turn.rate_limited:
                self.state = ReplyState.DONE
                metrics.TURNS.labels(route="none", outcome="rate_limited").inc()
                await self._say_canned(services.canned.slow_down_in(port.language), "neutral")
                return
            if self.turn.say is not None:
                await self._announce(self.turn.say)
                return
            if services.queues.filler_after_s > 0:
                self._filler = asyncio.get_running_loop().create_task(
                    self._filler_when_slow(), name=f"filler-{self.gen}"
                )
            text = await self._user_text()
            if not text:
                port.log.info("turn: no words recognised, listening again")
                self.state = ReplyState.DONE
                metrics.TURNS.labels(route="none", outcome="empty").inc()
                return
            self.user_text = text
            port.language = services.router.answer_language(text, self.language)
            await self.out.stt(text)
            ctx = TurnContext(
                text,
                port.conversation(),
                port.caps,
                port.run_action,
                port.log,
                deadline=self.deadline,
                language=self.language,
                turn_id=self.turn_id,
                gen=self.gen,
                device_id=port.device_id,
                session_id=port.session_id,
                await_tools=port.wait_for_tools if port.caps.tools_pending else None,
                announce=port.announce,
            )
            result = self.result = await services.router.route(ctx)
            port.log.info("turn: %r -> route=%s (%s, language %s)", text, result.route, result.reason, result.language)
            self.state = ReplyState.SPEAKING
            await self.out.start(result.emotion)
            await self._speak(result.text, result.language)
            if result.fell_back:
                port.log.info("turn answered by %s after fallback %s", result.route, ", ".join(result.fell_back))
            answer = " ".join(self.reply_text)
            if result.remember and answer:
                port.remember(text, answer)
            if result.store and answer:
                await services.router.store_answer(text, answer, port.log, result.language)
            self.state = ReplyState.DONE
            metrics.TURNS.labels(route=self.route, outcome="ok").inc()
        except BusyError as exc:
            self.state = ReplyState.FAILED
            metrics.TURNS.labels(route=self.route, outcome="busy").inc()
            port.log.warning("turn refused, node busy: %s", exc)
            await self._say_canned(services.canned.busy_in(port.language), "sad")
        except asyncio.CancelledError:
            self.state = ReplyState.INTERRUPTED
            metrics.TURNS.labels(route=self.route, outcome="interrupted").inc()
            raise
        except Exception as exc:  # noqa: BLE001 - the device must still get a complete turn
            self.state = ReplyState.FAILED
            metrics.TURNS.labels(route=self.route, outcome="error").inc()
            port.log.exception("turn failed in route %s: %r", self.route, exc)
            await self._apologise()
        finally:
            if self._filler is not None:
                self._filler.cancel()
            self.done.set()
            services.capacity.turn_finished()
            if self.state in (ReplyState.DONE, ReplyState.FAILED):
                at = self.out.first_audio_at
                services.turn_stats.record(self.route, at - self.turn.ended_at if at is not None else None)
            port.reply_finished(self.state == ReplyState.DONE and not self.out.started)

    async def _announce(self, text: str) -> None:
        """Speak a sentence the node says on its own, as a reply with the usual tts start / stop."""
        self.result = RouteResult(Route.TOOL, "timer due", "neutral", _once(text), language=self.port.language)
        self.state = ReplyState.SPEAKING
        await self.out.start("neutral")
        await self._speak(self.result.text, self.result.language)
        self.state = ReplyState.DONE
        metrics.TURNS.labels(route=Route.TOOL, outcome="ok").inc()

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
                self.port.log.warning("speculative ASR failed (%r): transcribing again", exc)
        if result is None:
            result = await self.services.transcribe(self.turn.pcm, self.deadline)
        self.port.log.info("asr: %r (%.0f ms audio, %.0f ms compute)", result.text, result.audio_ms, result.compute_ms)
        text, self.language = await self.services.router.confirm_transcript(result, self.turn.pcm, self.port.log)
        return text

    async def _filler_when_slow(self) -> None:
        """A turn still silent ``queues.filler_after_s`` after the end of speech while first work is
        queued (a burst) hears a short pre-encoded phrase, so the user knows they were heard. Without a
        queue the answer is about to come: a filler would only push it back by its own length."""
        queues = self.services.queues
        delay = self.turn.ended_at + queues.filler_after_s - time.monotonic()
        await asyncio.sleep(max(0.0, delay))
        filler = self.services.canned.filler_in(self.port.language)
        while not self.services.in_burst():
            if time.monotonic() - self.turn.ended_at > queues.burst_wait_s:
                return  # any wait is over by now: the answer (or "busy") is due
            await asyncio.sleep(_FILLER_POLL_S)
        if self.out.sentences or not self.active or filler is None:
            return  # the answer (or "busy") has begun
        self._filler_playing = True
        metrics.FILLERS.inc()
        self.port.log.info(
            "turn still waiting %.1f s after the end of speech: filler", time.monotonic() - self.turn.ended_at
        )
        await self.out.filler(filler.text, filler.packets)

    async def _settle_filler(self) -> None:
        """Before the answer (or "busy"): a filler not begun yet is dropped, one playing is let finish
        (a phrase cut off mid-word sounds broken; it is short)."""
        task = self._filler
        if task is None or task.done():
            return
        if not self._filler_playing:
            task.cancel()
        await asyncio.wait({task})  # never raises: this reply's own cancellation still propagates

    async def _say_canned(self, canned: SpeechAudio | None, emotion: str) -> None:
        """Play a pre-encoded answer (busy, slow down: no engine needed) and end the turn."""
        await self._settle_filler()
        with contextlib.suppress(Exception):
            await self.out.start(emotion)
            if canned is not None:
                await self.out.sentence(canned.text)
                await self.out.play(canned.packets)
                await asyncio.sleep(self.out.remaining_playout())
        await self.out.stop()

    async def _apologise(self) -> None:
        """After a failure mid-turn, end the turn the device is waiting for, spoken if possible."""
        language = self.port.language
        await self._settle_filler()
        with contextlib.suppress(Exception):
            await self.out.start("sad")
            await self._speak(_once(say(language, "apology")), language)
        await self.out.stop()

    async def _speak(self, deltas: AsyncIterator[str], language: str) -> None:
        """Sentences -> TTS (one ahead) -> paced audio, then tts/stop once the device has played it."""
        services = self.services
        audio_cfg = services.audio
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speech: asyncio.Queue[SpeechAudio | BaseException | None] = asyncio.Queue(maxsize=2)

        async def split() -> None:
            splitter = SentenceSplitter(services.tts.first_clause_min_chars)
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
            cap_s = services.tts.max_reply_s
            spoken_s, queued = 0.0, 0  # seconds and sentences handed to the output so far
            try:
                while (sentence := await sentences.get()) is not None:
                    spoken = clean_for_speech(sentence)
                    if not spoken:
                        continue
                    # What the voice reads (numbers in words for Chinese); the device shows ``spoken``.
                    read = for_speech(spoken, language)
                    # No turn deadline here: the words exist (the LLM's work is done or a rule
                    # answered), so speaking them is the cheapest way to finish the turn; FIRST
                    # puts the opening sentence ahead of other replies' tails.
                    try:
                        audio = await services.synthesize(
                            read, audio_cfg.downlink_sample_rate, audio_cfg.downlink_frame_ms, priority, None, language
                        )
                    except BusyError as exc:
                        if priority == FIRST:
                            raise  # nothing said yet: the turn is answered "busy"
                        # Mid-reply: end with what was said rather than tack "busy" onto an answer.
                        self.port.log.warning("reply cut short after %d sentence(s): %s", len(self.reply_text), exc)
                        metrics.REPLIES_CUT_SHORT.labels(stage=exc.stage).inc()
                        cut_short.set()
                        break
                    duration_s = len(audio.packets) * audio_cfg.downlink_frame_ms / 1000.0
                    if cap_s and priority == NORMAL and spoken_s + duration_s > cap_s:
                        # Ends on a sentence boundary; the first sentence is always said whole.
                        self.port.log.info(
                            "reply capped at %.1f s of speech (%d sentence(s); tts.max_reply_s %.0f)",
                            spoken_s,
                            queued,
                            cap_s,
                        )
                        metrics.REPLIES_CAPPED.inc()
                        cut_short.set()
                        break
                    spoken_s += duration_s
                    queued += 1
                    priority = NORMAL
                    await speech.put(audio if read == spoken else SpeechAudio(spoken, audio.packets, audio.synth_ms))
            except Exception as exc:  # noqa: BLE001 - re-raised in the reply task
                await speech.put(exc)
            finally:
                await speech.put(None)

        cut_short = asyncio.Event()
        self.out.new_pacer()
        tasks = [asyncio.create_task(split()), asyncio.create_task(synthesise())]
        try:
            while (item := await speech.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if not self.reply_text:
                    await self._settle_filler()
                self.reply_text.append(item.text)
                await self.out.sentence(item.text)
                await self.out.play(item.packets)
            if cut_short.is_set():
                tasks[0].cancel()  # stop the LLM: nothing more of this reply will be spoken
            else:
                # A route that failed mid-answer surfaces here, before the turn is declared over.
                await tasks[0]
            # Let the device play what it holds before telling it the turn is over (docs/protocol.md §2.8).
            await asyncio.sleep(self.out.remaining_playout() + audio_cfg.downlink_frame_ms / 1000.0)
            await self.out.stop()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _first_audio(self, at: float) -> None:
        metrics.TURN_LATENCY.labels(route=self.route).observe(at - self.turn.ended_at)
        self.port.log.info(
            "first audio %.0f ms after end of speech (route %s)", (at - self.turn.ended_at) * 1000, self.route
        )
