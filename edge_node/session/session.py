"""One device connection: protocol state and the control lane.

The receive loop is the control lane (pipecat's priority lane): it handles hello, listen,
abort, MCP and IoT at once and never waits for a model. Audio only moves bytes here: uplink
Opus goes to the shared VAD batcher, whose events come back as callbacks, and a finished
utterance starts a Reply, the data lane, which one interruption cancels. Every reply carries the
generation number it was started under; ``send_json``/``send_audio`` drop anything stamped with
an older one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from edge_node import metrics
from edge_node.auth.handshake import DeviceInfo
from edge_node.engines.vad import VadEvent, VadStream
from edge_node.routing.intent import DeviceAction, DeviceCapabilities
from edge_node.routing.rules import text_language
from edge_node.session.mcp_client import DeviceMcp
from edge_node.session.reply import Reply, TurnInput
from shared.engines.asr import AsrResult
from shared.protocol import framing, mcp
from shared.protocol import messages as msgs
from shared.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from edge_node.context import ServerContext
    from edge_node.limits import TokenBuckets

log = logging.getLogger("edge_node.session")


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters: at its last sentence end, else its last space."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    if end >= limit // 3:
        return head[: end + 1]
    return head.rsplit(" ", 1)[0] if " " in head else head


class SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Every line of a session names its device and session, so an operator can grep one device."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        extra.update(self.extra or {})
        kwargs["extra"] = extra
        return msg, kwargs


class Session:
    """One device's connection; also the ``ReplyPort`` its replies speak through (``session/port.py``)."""

    def __init__(self, ws: ServerConnection, ctx: ServerContext, device: DeviceInfo) -> None:
        self.ws = ws
        self.ctx = ctx
        self.device = device
        self.session_id = str(uuid.uuid4())
        self.connected_at = time.time()
        self.log = SessionLog(log, {"device_id": device.device_id, "session_id": self.session_id})
        self.protocol_version = device.protocol_version
        self.gen = 0
        self.mode = "auto"
        self.listening = False
        self.hello_done = False
        self.reply: Reply | None = None
        self.history: list[dict[str, str]] = []
        self._history_at = 0.0
        self.caps = DeviceCapabilities()
        # The language of the last answered turn (ReplyPort.language); the node's first language until then.
        self.language = ctx.router.languages[0]
        self.mcp: DeviceMcp | None = None
        self._mcp_task: asyncio.Task[None] | None = None
        self._manual_packets: list[bytes] = []
        # Uplink Opus frame length from the device's hello: firmware sends 60 ms, other clients 20-60 ms.
        self.uplink_frame_ms = msgs.AudioParams().frame_duration
        self.vad = VadStream(ctx.cfg.vad, self._on_vad_event, self._on_vad_error)
        self.last_activity = time.monotonic()
        self.closing = False
        self._bad_audio_logged = 0
        self._barge_in: asyncio.Task[None] | None = None
        self._speculative: asyncio.Task[AsrResult] | None = None
        self._text_limit = ctx.limits.text_bucket()
        self._audio_limit = ctx.limits.audio_bucket()
        self._stalled = False  # a send timed out: the connection is being dropped
        self._timers: set[asyncio.Task[None]] = set()  # timers the LLM set (edge_node/tools/builtin.py)
        self._limit_send_buffer()

    @property
    def device_id(self) -> str:
        return self.device.device_id

    # -- outbound: the only two ways anything reaches the device ----------------------------
    async def send_json(self, msg: dict[str, Any], gen: int | None = None) -> bool:
        if gen is not None and gen != self.gen:
            return False
        return await self._send_frame(msgs.encode(msg))

    async def send_audio(self, packet: bytes, gen: int) -> bool:
        if gen != self.gen:
            return False
        if not await self._send_frame(framing.pack_audio(packet, self.protocol_version)):
            return False
        metrics.AUDIO_PACKETS.labels(direction="down").inc()
        return True

    async def _send_frame(self, frame: str | bytes) -> bool:
        """Every frame to the device goes through here. A send waits only while the device's buffers
        are full (server.send_buffer_bytes); firmware plays audio in real time, so one that waits
        server.send_timeout_s means the device stopped reading, and the connection is dropped: else the
        reply, and with it the session (the idle sweeper skips sessions mid-reply), would wait forever."""
        try:
            async with asyncio.timeout(self.ctx.cfg.server.send_timeout_s):
                await self.ws.send(frame)
        except ConnectionClosed:
            return False
        except TimeoutError:
            self._drop_stalled()
            return False
        return True

    def _drop_stalled(self) -> None:
        """The device took nothing for send_timeout_s: drop the TCP connection at once. A close frame
        would only queue behind the data it does not read, and ws.close() would wait for room forever."""
        if self._stalled:
            return
        self._stalled = self.closing = True
        metrics.SEND_TIMEOUTS.inc()
        transport = self.ws.transport
        self.log.warning(
            "device stopped reading: a send waited %.1f s with %d bytes queued for it: connection dropped",
            self.ctx.cfg.server.send_timeout_s,
            transport.get_write_buffer_size(),
        )
        transport.abort()

    def _limit_send_buffer(self) -> None:
        """Cap the kernel's send buffer for this device at server.send_buffer_bytes (Linux autotunes it
        up to megabytes): what a device that stops reading holds of the edge stays small, and such a
        device is noticed send_timeout_s after a few seconds of audio, not after minutes."""
        sock = self.ws.transport.get_extra_info("socket") if self.ws.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.ctx.cfg.server.send_buffer_bytes)

    # -- lifecycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        self.ctx.engines.vad_batcher.register(self.vad)
        try:
            if not await self._await_hello():
                return
            async for message in self.ws:
                if isinstance(message, bytes):
                    if not await self._audio_allowed():
                        return
                    await self._on_binary(message)
                elif await self._text_allowed():
                    await self._on_text(message)
                else:
                    return
        finally:
            await self.shutdown()

    async def _text_allowed(self) -> bool:
        """Text frames per second on this connection (limits.text_per_s); over it, close with 1008: a
        device flooding the control lane is broken or hostile, and dropping frames silently would
        leave the protocol in an unknown state."""
        limits = self.ctx.cfg.limits
        return await self._frames_allowed(
            self._text_limit, "text", limits.text_per_s, limits.text_burst, "too many messages"
        )

    async def _audio_allowed(self) -> bool:
        """Binary (audio) frames per second on this connection (limits.audio_per_s); over it, close with
        1008: firmware streams its microphone in real time, so a device far faster is broken or hostile,
        and its frames cost the event loop and the VAD that every device on this edge shares."""
        limits = self.ctx.cfg.limits
        return await self._frames_allowed(
            self._audio_limit, "audio", limits.audio_per_s, limits.audio_burst, "audio faster than real time"
        )

    async def _frames_allowed(self, limit: TokenBuckets, kind: str, per_s: float, burst: int, reason: str) -> bool:
        bucket = limit.take("")
        if bucket is None:
            return True
        self.ctx.limits.refused(
            kind,
            self.device.device_id,
            bucket,
            f"{kind} frames",
            "connection closed (1008)",
            f"{per_s:g}/s (burst {burst})",
        )
        # Its unread frames fill the receive queue, which stops reading, so its answering close frame
        # may never be read: do not wait the usual 10 s for it.
        self.ws.close_timeout = 1.0
        await self.close(1008, reason)
        return False

    async def shutdown(self) -> None:
        self.closing = True
        self.ctx.engines.vad_batcher.unregister(self.vad)
        self._drop_speculation()
        for timer in self._timers:
            timer.cancel()
        if self.reply is not None:
            self.reply.interrupt("disconnect")
        if self._mcp_task is not None:
            self._mcp_task.cancel()
        if self.mcp is not None:
            self.mcp.close()

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        # ws.close() first waits for room in the send buffer for its close frame, which never comes
        # if the device stopped reading: bounded like any send, then the TCP connection is dropped.
        limit = self.ctx.cfg.server.send_timeout_s + (self.ws.close_timeout or 0.0)
        try:
            async with asyncio.timeout(limit):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass

    async def _await_hello(self) -> bool:
        deadline = time.monotonic() + self.ctx.cfg.server.hello_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                message = await asyncio.wait_for(self.ws.recv(), remaining)
            except TimeoutError:
                self.log.warning("no hello within %.0f s: closing", self.ctx.cfg.server.hello_timeout_s)
                metrics.PROTOCOL_ERRORS.labels(code="hello_timeout").inc()
                await self.close(1008, "no hello received")
                return False
            if isinstance(message, bytes):
                if not await self._audio_allowed():
                    return False
                self._protocol_error(ProtocolError("bad_frame", "binary frame before hello (dropped)"))
                continue
            if not await self._text_allowed():
                return False
            try:
                parsed = msgs.parse_client_message(message, self.ctx.cfg.server.max_frame_bytes)
            except ProtocolError as exc:
                self._protocol_error(exc)
                continue
            if not isinstance(parsed, msgs.Hello):
                self._protocol_error(ProtocolError("bad_field", f"{type(parsed).__name__} before hello (ignored)"))
                continue
            await self._on_hello(parsed)
            return True

    async def _on_hello(self, hello: msgs.Hello) -> None:
        if hello.version in (1, 2, 3):
            self.protocol_version = hello.version
        audio = self.ctx.cfg.audio
        await self.send_json(msgs.server_hello(self.session_id, audio.downlink_sample_rate, audio.downlink_frame_ms))
        self.hello_done = True
        uplink = hello.audio_params
        if uplink is not None:
            self.uplink_frame_ms = int(uplink.frame_duration)
        self.log.info(
            "hello: protocol v%d, uplink %s Hz / %s ms, features %s",
            self.protocol_version,
            uplink.sample_rate if uplink else "?",
            uplink.frame_duration if uplink else "?",
            dict(hello.features),
        )
        if hello.features.get("mcp"):
            self.mcp = DeviceMcp(self._send_mcp, self.ctx.cfg.mcp, self.log)
            self._mcp_task = asyncio.create_task(self.mcp.start(), name="mcp-init")
            self._mcp_task.add_done_callback(lambda _t: self._sync_tools())
        self._sync_tools()

    async def wait_for_tools(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the device's tools list; True once it is in.

        Only a turn that may need a device tool waits (the router decides): firmware that announces
        MCP and answers slowly, or never, must not cost every other turn its wait.
        """
        if self.mcp is None or self.mcp.ready.is_set():
            return True
        try:
            await asyncio.wait_for(self.mcp.ready.wait(), timeout_s)
        except TimeoutError:
            metrics.MCP_TOOL_WAITS.labels(outcome="timeout").inc()
            self.log.info("device tools list not in after %.0f ms: answering without it", timeout_s * 1000)
            return False
        finally:
            self._sync_tools()
        metrics.MCP_TOOL_WAITS.labels(outcome="ready").inc()
        return True

    def _sync_tools(self) -> None:
        if self.mcp is not None:
            self.caps.tools = {name: tool.input_schema for name, tool in self.mcp.tools.items()}
            self.caps.descriptions = {name: tool.description for name, tool in self.mcp.tools.items()}
        self.caps.tools_pending = self.mcp is not None and not self.mcp.ready.is_set()

    async def _send_mcp(self, payload: dict[str, Any]) -> None:
        await self.send_json(msgs.mcp(self.session_id, payload))

    def _protocol_error(self, exc: ProtocolError) -> None:
        metrics.PROTOCOL_ERRORS.labels(code=exc.code).inc()
        self.log.warning("protocol error: %s", exc)

    # -- control lane -------------------------------------------------------------------------
    async def _on_text(self, text: str) -> None:
        try:
            message = msgs.parse_client_message(text, self.ctx.cfg.server.max_frame_bytes)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if isinstance(message, msgs.Listen):
            await self._on_listen(message)
        elif isinstance(message, msgs.Abort):
            self.touch()
            await self.interrupt(message.reason or "abort", send_stop=True)
        elif isinstance(message, msgs.Mcp):
            if self.mcp is not None:
                self.mcp.handle(message.payload)
        elif isinstance(message, msgs.Iot):
            self._on_iot(message)
        elif isinstance(message, msgs.Hello):
            await self._on_hello(message)  # a repeated hello renegotiates, as firmware expects
        elif isinstance(message, msgs.Ping):
            await self.send_json(msgs.pong(self.session_id))
        elif isinstance(message, msgs.Goodbye):
            await self.close(1000, "goodbye")

    async def _on_listen(self, listen: msgs.Listen) -> None:
        if listen.state == "start":
            if self.reply is not None and self.reply.active:
                await self.interrupt("listen_start", send_stop=True)
            self.mode = listen.mode or self.mode or "auto"
            self.listening = True
            self.vad.reset()
            self._drop_speculation()
            self._manual_packets.clear()
        elif listen.state == "stop":
            self.touch()
            self.listening = False
            if self.mode == "manual" and self._manual_packets:
                packets, self._manual_packets = self._manual_packets, []
                ended = time.monotonic()
                pcm, bad = await self.ctx.engines.decode_opus(packets)
                if bad:
                    self.log.warning("push-to-talk utterance: %d undecodable Opus packets skipped", bad)
                self.start_reply(TurnInput(pcm=pcm, ended_at=ended, source="voice"))
        elif listen.state == "detect":
            self.touch()
            self.vad.reset()  # the wake-word burst is not part of the next utterance
            self._drop_speculation()
            if listen.text:
                self.log.info("detect: %r", listen.text)
                self.start_reply(TurnInput(text=listen.text, source="text"))

    def _on_iot(self, iot: msgs.Iot) -> None:
        for thing in mcp.parse_iot_descriptors(list(iot.descriptors or [])):
            self.caps.iot_methods[thing.name] = set(thing.methods)
        for entry in iot.states or []:
            state = entry.get("state") if isinstance(entry, dict) else None
            if isinstance(state, dict):
                for key in ("volume", "brightness"):
                    if isinstance(state.get(key), int | float):
                        self.caps.state[key] = int(state[key])
        self.log.debug("iot: things %s", sorted(self.caps.iot_methods))

    def announce(self, text: str, delay_s: float) -> bool:
        """A timer the model set: when due, ``text`` is spoken as a reply of its own (after the reply in
        progress, if any, rather than cutting it off). Timers end with the connection."""
        if len(self._timers) >= self.ctx.cfg.tools.max_timers_per_device:
            return False

        async def due() -> None:
            await asyncio.sleep(delay_s)
            for _ in range(300):  # a reply in progress finishes first (at most about a minute)
                if self.reply is None or not self.reply.active:
                    break
                await asyncio.sleep(0.2)
            self.log.info("timer due: %r", text)
            self.start_reply(TurnInput(text=None, say=text, source="timer"))

        task = asyncio.get_running_loop().create_task(due(), name="device-timer")
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)
        return True

    async def run_action(self, action: DeviceAction) -> str:
        """Carry out an intent's device action (MCP tool call or legacy IoT command)."""
        if action.kind == "mcp":
            if self.mcp is None:
                raise RuntimeError("device has no MCP")
            return await self.mcp.call_tool(action.name, action.arguments)
        command = {"name": action.name, "method": action.method, "parameters": action.arguments}
        await self.send_json(msgs.iot_commands(self.session_id, [command]))
        return "sent"

    # -- audio --------------------------------------------------------------------------------
    async def _on_binary(self, data: bytes) -> None:
        try:
            frame = framing.unpack_audio(data, self.protocol_version)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if frame.is_json:  # v2 can carry a JSON message in a binary frame
            await self._on_text(frame.payload.decode("utf-8", errors="replace"))
            return
        metrics.AUDIO_PACKETS.labels(direction="up").inc()
        if not self.listening:
            return  # e.g. the wake-word burst before detect, or mic audio while we speak
        if self.mode == "manual":
            # Push-to-talk holds the whole utterance until listen/stop: capped at vad.max_utterance_s of audio.
            if len(self._manual_packets) * self.uplink_frame_ms < self.ctx.cfg.vad.max_utterance_s * 1000:
                self._manual_packets.append(frame.payload)
            return
        self.vad.feed_opus(frame.payload)

    def _on_vad_error(self, message: str) -> None:
        metrics.PROTOCOL_ERRORS.labels(code="bad_opus").inc()
        self._bad_audio_logged += 1
        if self._bad_audio_logged <= 3 or self._bad_audio_logged % 100 == 0:
            self.log.warning("uplink audio: %s (%d so far)", message, self._bad_audio_logged)

    def _on_vad_event(self, event: VadEvent) -> None:
        if self.closing or not self.listening:
            return
        if event.kind == "speech_start":
            self.touch()
            if self.mode == "realtime" and self.reply is not None and self.reply.active:
                self._barge_in = asyncio.get_running_loop().create_task(self.interrupt("voice", send_stop=True))
            return
        if event.kind == "pause":
            self._speculate(event)
            return
        if event.kind == "resume":
            self._drop_speculation()
            return
        pcm = event.pcm if event.pcm is not None else np.zeros(0, dtype=np.int16)
        if self.mode == "auto":
            self.listening = False  # until the device's next listen/start
        ended_at = event.voice_end  # latency counts from the voice, not from the VAD's decision
        asr = None
        if event.kind == "speech_end":
            asr, self._speculative = self._speculative, None  # only silence since the pause
        else:
            self._drop_speculation()  # too_long: the audio went on after the pause
        self.start_reply(TurnInput(pcm=pcm, ended_at=ended_at, source="voice", asr=asr))

    def _speculate(self, event: VadEvent) -> None:
        """Transcribe the utterance so far while the VAD confirms the end of speech."""
        self._drop_speculation()
        if event.pcm is None or not event.pcm.size:
            return
        voice_end = event.voice_end
        deadline = voice_end + self.ctx.capacity.start_budget(self.ctx.cfg.queues)
        task = asyncio.get_running_loop().create_task(self.ctx.engines.transcribe(event.pcm, deadline))
        # Retrieve the outcome even when nobody awaits it (speech resumed): no "never retrieved" noise.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        if self.ctx.cfg.vad.early_commit:
            task.add_done_callback(lambda t: self._maybe_commit_early(t, event.pcm, voice_end))
        self._speculative = task

    def _maybe_commit_early(self, task: asyncio.Task[AsrResult], pcm: np.ndarray | None, voice_end: float) -> None:
        """The pause's transcript is a finished command or a cached question: end the turn now.

        Waiting out the rest of min_silence_ms would only delay an answer that needs no model.
        Anything said after this point belongs to the next turn, as after a normal end of speech.
        """
        if task is not self._speculative or task.cancelled() or task.exception() is not None:
            return
        if self.closing or not self.listening or self.mode == "manual" or pcm is None:
            return
        heard = task.result()
        text = heard.text.strip()
        # Whisper ends a finished English sentence with a stop; a short Mandarin one mostly has no
        # punctuation at all, so there the rule or cache match alone decides (a cut-off command such
        # as 音量调到 has no number yet and matches no rule).
        if not text or (text[-1] not in ".?!。？！" and text_language(text) != "zh"):
            return
        if not self.ctx.router.answers_at_once(text, self.caps, len(self.history), heard.language):
            return
        self._speculative = None
        metrics.EARLY_COMMITS.inc()
        self.log.info("turn ended at a %d ms pause: %r needs no model", self.ctx.cfg.vad.speculative_asr_ms, text)
        if self.mode == "auto":
            self.listening = False  # until the device's next listen/start
        self.vad.reset()  # the VAD's own speech_end for this utterance is void
        self.start_reply(TurnInput(pcm=pcm, ended_at=voice_end, source="voice", asr=task))

    def _drop_speculation(self) -> None:
        """Speech resumed or the turn was reset: the speculative transcript is void."""
        if self._speculative is not None:
            self._speculative.cancel()
            self._speculative = None
            metrics.SPECULATIVE_ASR.labels(result="discarded").inc()

    # -- data lane ----------------------------------------------------------------------------
    def start_reply(self, turn: TurnInput) -> None:
        if not self.ctx.limits.allow_turn(self.device.device_id):
            turn.rate_limited = True  # answered with limits.slow_down_message, no engine runs
        if self.reply is not None and self.reply.active:
            self.reply.interrupt("new_turn")
        self.gen += 1
        self.reply = Reply(self, self.ctx.replies, self.gen, turn)
        self.reply.start()

    async def interrupt(self, cause: str, send_stop: bool) -> None:
        """Barge-in: everything of the current generation is dropped, then tts/stop."""
        reply = self.reply
        was_active = reply is not None and reply.interrupt(cause)
        self.gen += 1
        if was_active:
            self.log.info("reply interrupted (%s)", cause)
        if send_stop:
            await self.send_json(msgs.tts_stop(self.session_id))

    def reply_finished(self, said_nothing: bool) -> None:
        self.touch()
        if said_nothing and self.mode == "auto":
            # Nothing was said (empty transcript): the device is still streaming, keep listening.
            self.listening = True
            self.vad.reset()

    def remember(self, user: str, assistant: str) -> None:
        """Keep the exchange as LLM context: the last ``history_turns``, the reply shortened."""
        llm = self.ctx.cfg.llm
        reply = _shorten(assistant, llm.history_reply_chars)
        self.history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        del self.history[: max(0, len(self.history) - 2 * llm.history_turns)]
        self._history_at = time.monotonic()

    def conversation(self) -> list[dict[str, str]]:
        """The context for the next turn; after a pause of ``history_ttl_s`` a new conversation starts."""
        if self.history and time.monotonic() - self._history_at > self.ctx.cfg.llm.history_ttl_s:
            self.history.clear()
        return list(self.history)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def idle_for(self, now: float) -> float:
        if self.reply is not None and self.reply.active:
            return 0.0
        return now - self.last_activity
