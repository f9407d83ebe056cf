"""A device client that behaves like unmodified Xiaozhi ESP32 firmware (WebSocket transport).

Used by the integration tests, the ``xiaozhi-device`` simulator and the load generator. It is an
*independent* implementation of the wire format (docs/protocol.md §2 and §3, whose section numbers
the ``§`` references below cite) written from the firmware's behaviour, not from ``shared.protocol``:
a misunderstanding shared by server and client would otherwise go unnoticed. It speaks raw JSON and
raw binary frames and uses ``opuslib_next`` directly.

``DeviceClient`` is the firmware's state machine and the turn API that tests drive; it composes one
part per job, each in its own module of ``shared.client``:

* ``transport.WebSocketChannel`` (``client.channel``): the opening handshake (headers, or the XS
  query-string fallback; TLS for ``wss://``), v1/v2/v3 binary framing, sending, the receive loop and
  the close code;
* ``playback.Playback`` (``client.playback``): the Opus decoder opened at the rate/duration the
  server hello announced (24000/60 by default; longer packets fail to decode, §2.8) and the
  40-packet decode queue played out in real time (``max_queue_depth``, ``queue_full_drops``);
* ``uplink.Uplink`` (``client.uplink``): Opus 16 kHz mono with the firmware's encoder settings
  (``AS_OPUS_ENC_CONFIG``), one packet per binary frame, paced in real time;
* ``device_mcp.DeviceMcpServer`` (``client.mcp``): the device MCP server (§3), ``initialize``,
  paginated ``tools/list`` and ``tools/call`` applied to ``client.state``; requests whose id is not a
  JSON number are not answered (counted instead);
* ``events``: ``Event`` (each server message as received) and ``Turn`` (its summary).

What stays here is what the firmware decides: the 10 s server-hello wait; the device state
(downlink Opus reaches playback **only in the speaking state**, between ``tts/start`` and
``tts/stop``; anything else is dropped and counted as ``audio_before_start`` / ``audio_after_stop``,
§2.3, §2.8); listen start/stop/detect, abort and the auto-mode relisten; the speech stream with its
trailing silence cut by ``tts/start``. The parts' state keeps its old names on the client
(``client.closed``, ``client.max_queue_depth``, ``client.state``...), so callers see one object.

Every server message is recorded in ``self.events`` with ``time.monotonic()``; tests and tools read
it directly or through ``wait_for`` / ``wait_json`` / ``wait_turn_end``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from shared.client.device_mcp import DEFAULT_TOOLS, DeviceMcpServer, is_json_number
from shared.client.errors import ChannelClosed, DeviceClientError, HelloTimeout
from shared.client.events import Event, Turn, tail
from shared.client.events import summarise as summarise_events
from shared.client.playback import DEFAULT_DOWNLINK_FRAME_MS, DEFAULT_DOWNLINK_RATE, Playback
from shared.client.transport import WebSocketChannel
from shared.client.uplink import UPLINK_RATE, Uplink

__all__ = [
    "DEFAULT_FEATURES",
    "DEFAULT_TOOLS",
    "ChannelClosed",
    "DeviceClient",
    "DeviceClientError",
    "Event",
    "HelloTimeout",
    "Turn",
]

HELLO_TIMEOUT_S = 10.0  # FW websocket_protocol.cc

DEFAULT_FEATURES: dict[str, Any] = {"mcp": True}
DEFAULT_TEXT_FONT: dict[str, Any] = {"bundle": "noto-v1", "charset": "common", "size": 20, "bpp": 4}


class _Part:
    """A ``DeviceClient`` attribute that one of its parts holds: reads and writes go to ``part.name``.

    Each part owns its state; these keep the names that tests and tools use on the client itself
    (``client.closed`` is ``client.channel.closed``), with one value and no copy to fall out of step.
    """

    def __init__(self, part: str, name: str = "") -> None:
        self.part = part
        self.name = name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.name or name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(getattr(obj, self.part), self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(getattr(obj, self.part), self.name, value)


class DeviceClient:
    """An async, firmware-like Xiaozhi device on the WebSocket transport."""

    # The connection's settings and state (WebSocketChannel).
    url = _Part("channel")
    device_id = _Part("channel")
    client_id = _Part("channel")
    token = _Part("channel")
    protocol_version = _Part("channel")
    headers_in_query = _Part("channel")
    ssl_context = _Part("channel")
    closed = _Part("channel")
    close_code = _Part("channel")
    close_reason = _Part("channel")
    _ws = _Part("channel", "ws")
    # The downlink decoder and decode queue (Playback).
    downlink_rate = _Part("playback", "rate")
    downlink_frame_ms = _Part("playback", "frame_ms")
    max_queue_depth = _Part("playback")
    queue_full_drops = _Part("playback")
    decode_errors = _Part("playback")
    # The microphone (Uplink).
    frame_ms = _Part("uplink")
    # The device MCP server (DeviceMcpServer).
    tools = _Part("mcp")
    tools_page_size = _Part("mcp", "page_size")
    state = _Part("mcp")
    tool_calls = _Part("mcp")
    mcp_initialize_params = _Part("mcp", "initialize_params")
    mcp_protocol_violations = _Part("mcp", "protocol_violations")

    def __init__(
        self,
        url: str,
        device_id: str = "d8:3b:da:00:00:01",
        client_id: str | None = None,
        token: str = "",
        protocol_version: int = 1,
        headers_in_query: bool = False,
        features: dict[str, Any] | None = DEFAULT_FEATURES,
        frame_ms: int = 60,
        tools: list[dict[str, Any]] | None = None,
        tools_page_size: int = 2,
        *,
        hello_timeout_s: float = HELLO_TIMEOUT_S,
        auto_listen: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if protocol_version not in (1, 2, 3):
            raise ValueError(f"protocol_version must be 1, 2 or 3, not {protocol_version!r}")
        if frame_ms not in (20, 40, 60, 80, 100, 120):
            raise ValueError(f"frame_ms must be one of 20/40/60/80/100/120, not {frame_ms!r}")
        if tools_page_size < 1:
            raise ValueError("tools_page_size must be >= 1")
        self.features = dict(features) if features is not None else None
        self.hello_timeout_s = hello_timeout_s
        # Like the firmware in auto/realtime mode: after tts/stop, send listen/start again
        # (auto: once the simulated playback queue has drained). Off by default so tests drive turns.
        self.auto_listen = auto_listen

        # Human-readable notes on everything the firmware would not like (the parts add theirs).
        self.violations: list[str] = []

        # The parts.
        self.channel = WebSocketChannel(
            url,
            device_id=device_id,
            client_id=client_id or str(uuid.uuid4()),
            token=token,
            protocol_version=protocol_version,
            headers_in_query=headers_in_query,
            ssl_context=ssl_context,
            on_message=self._on_message,
            on_closed=self._on_closed,
            on_error=self._on_handler_error,
        )
        self.playback = Playback(self._violation)
        self.uplink = Uplink(frame_ms, self.channel.send_packet)
        self.mcp = DeviceMcpServer(
            tools if tools is not None else DEFAULT_TOOLS, tools_page_size, self._send_mcp, self._violation
        )

        # The server hello.
        self.session_id = ""
        self.server_hello: dict[str, Any] | None = None
        self.server_audio_params: dict[str, Any] | None = None
        self.hello_latency_ms: float | None = None

        # Everything the server sent.
        self.events: list[Event] = []

        # Simulated firmware state.
        self.device_state = "idle"  # connecting | idle | listening | speaking
        self.listening_mode = "auto"

        # Counters of server behaviour the firmware would not like (besides the parts' own).
        self.audio_before_start = 0
        self.audio_after_stop = 0
        self.audio_after_abort = 0  # informational: packets received after we sent abort, before tts/stop
        self.framing_errors = 0
        self.invalid_json = 0

        # Timing.
        self.speech_end_at: float | None = None
        self.abort_sent_at: float | None = None

        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._signal = asyncio.Event()
        self._hello_event = asyncio.Event()
        self._tts_seen = ""  # "", "start" or "stop": the last tts start/stop seen
        self._aborted = False
        self._turn_start = 0
        self._turn_started_at = time.monotonic()
        self._hello_sent_at = 0.0

    # ------------------------------------------------------------------ connection
    def hello_message(self) -> dict[str, Any]:
        """The firmware hello (docs/protocol.md §2.2) for this client's settings."""
        hello: dict[str, Any] = {"type": "hello", "version": self.protocol_version}
        if self.features is not None:
            hello["features"] = dict(self.features)
            if self.features.get("glyph_push"):
                hello["text_font"] = dict(DEFAULT_TEXT_FONT)
        hello["transport"] = "websocket"
        hello["audio_params"] = {
            "format": "opus",
            "sample_rate": UPLINK_RATE,
            "channels": 1,
            "frame_duration": self.frame_ms,
        }
        return hello

    async def connect(self) -> None:
        """Open the WebSocket, send the hello and wait (<= 10 s) for the server hello."""
        if self._ws is not None:
            raise DeviceClientError("already connected; a DeviceClient opens one connection")
        self.device_state = "connecting"
        try:
            await self.channel.open()
        except DeviceClientError:
            self.device_state = "idle"
            raise
        self._hello_sent_at = time.monotonic()
        try:
            await self.channel.send_text(json.dumps(self.hello_message(), separators=(",", ":")))
        except ChannelClosed as exc:
            await self.close()
            raise DeviceClientError(f"server closed the connection before the hello: {exc}") from exc
        try:
            await asyncio.wait_for(self._wait_hello_or_close(), self.hello_timeout_s)
        except TimeoutError:
            await self.close()
            url, _headers = self.channel.target()
            raise HelloTimeout(
                f"no server hello (type hello, transport websocket) within {self.hello_timeout_s:g} s from {url}"
            ) from None
        if not self._hello_event.is_set():
            raise ChannelClosed(
                f"server closed the connection before its hello (code {self.close_code}, reason {self.close_reason!r})"
            )

    async def _wait_hello_or_close(self) -> None:
        while not self._hello_event.is_set() and not self.closed:
            signal = self._signal
            await signal.wait()

    async def close(self) -> None:
        """Close the socket (the WebSocket 'goodbye' is just closing, §2.9). Idempotent."""
        for task in list(self._side_tasks):
            task.cancel()
        await self.channel.close()

    async def __aenter__(self) -> DeviceClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_closed(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Until the connection closes (True) or ``timeout`` passes (False): how a simulated
        device holds an idle session without polling."""
        return await self.channel.wait_closed(timeout)

    def _on_closed(self, first: bool) -> None:
        if first:
            self.device_state = "idle"
        self._notify()

    # ------------------------------------------------------------------ receiving
    def _notify(self) -> None:
        signal, self._signal = self._signal, asyncio.Event()
        signal.set()

    def _violation(self, note: str) -> None:
        self.violations.append(note)

    def _on_handler_error(self, exc: Exception) -> None:
        self._violation(f"client error handling a server message: {exc!r}")

    async def _on_message(self, message: str | bytes, now: float) -> None:
        """One frame from the channel; waiters are woken after each, whatever became of it."""
        try:
            if isinstance(message, str):
                await self._on_text(message, now)
            else:
                self._on_binary(message, now)
        finally:
            self._notify()

    async def _on_text(self, text: str, now: float) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self.invalid_json += 1
            self._violation(f"text frame is not a JSON object: {text[:80]!r}")
            self.events.append(Event(now, "json", None, text.encode("utf-8", "replace")))
            return
        self.events.append(Event(now, "json", msg))
        type_ = msg.get("type")
        if not isinstance(type_, str):
            return  # FW: a message without a string type is ignored
        if type_ == "hello":
            self._on_hello(msg, now)
        elif type_ == "tts":
            self._on_tts(msg, now)
        elif type_ == "mcp":
            await self._on_mcp(msg)
        elif type_ == "alert":
            if not all(isinstance(msg.get(k), str) for k in ("status", "message", "emotion")):
                self._violation(f"alert without string status/message/emotion: {msg}")
        # stt, llm, system, custom, iot, unknown types: recorded, nothing else to do here.

    def _on_hello(self, msg: dict[str, Any], now: float) -> None:
        if msg.get("transport") != "websocket":
            self._violation(f"server hello with transport {msg.get('transport')!r} ignored")
            return  # FW: only transport websocket completes the handshake
        first = not self._hello_event.is_set()
        self.server_hello = msg
        sid = msg.get("session_id")
        if isinstance(sid, str):
            self.session_id = sid
        params = msg.get("audio_params")
        self.server_audio_params = params if isinstance(params, dict) else None
        rate, frame_ms = DEFAULT_DOWNLINK_RATE, DEFAULT_DOWNLINK_FRAME_MS
        if isinstance(params, dict):
            if is_json_number(params.get("sample_rate")):
                rate = int(params["sample_rate"])
            if is_json_number(params.get("frame_duration")):
                frame_ms = int(params["frame_duration"])
        self.playback.configure(rate, frame_ms)
        if first:
            self.hello_latency_ms = (now - self._hello_sent_at) * 1000
            self.device_state = "idle"
            self._hello_event.set()

    def _on_tts(self, msg: dict[str, Any], now: float) -> None:
        state = msg.get("state")
        if state == "start":
            if self.device_state == "connecting":
                self._violation("tts/start before the server hello: the firmware rejects it")
                return
            self.device_state = "speaking"
            self._tts_seen = "start"
            self._aborted = False
            self.playback.reset()
        elif state == "stop":
            self._tts_seen = "stop"
            if self.device_state == "speaking":
                self.device_state = "idle" if self.listening_mode == "manual" else "listening"
                if self.auto_listen and self.listening_mode in ("auto", "realtime"):
                    delay = self.playback.remaining_s(now) if self.listening_mode == "auto" else 0.0
                    self._spawn(self._relisten(delay))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _relisten(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.device_state == "listening" and not self.closed:
            with contextlib.suppress(ChannelClosed):
                await self.channel.send_json(
                    {"session_id": self.session_id, "type": "listen", "state": "start", "mode": self.listening_mode}
                )

    def _on_binary(self, data: bytes, now: float) -> None:
        packet, timestamp, problem = self.channel.deframe(data)
        if problem:
            self._violation(problem)
        event = Event(now, "audio", None, packet if packet is not None else data, timestamp=timestamp)
        self.events.append(event)
        if self._aborted:
            self.audio_after_abort += 1
        if packet is None:
            self.framing_errors += 1
            event.dropped = "framing"
            return
        if self.device_state != "speaking":
            # FW OnIncomingAudio: decoded only while speaking.
            if self._tts_seen == "stop":
                self.audio_after_stop += 1
                event.dropped = "after_stop"
                self._violation("audio frame after tts/stop (the firmware drops it)")
            else:
                self.audio_before_start += 1
                event.dropped = "before_start"
                self._violation("audio frame before tts/start (the firmware drops it)")
            return
        self.playback.play(packet, event, now)

    # ------------------------------------------------------------------ device MCP server
    async def _on_mcp(self, msg: dict[str, Any]) -> None:
        """An ``mcp`` message, for the device MCP server; a subclass may override it (a broken board)."""
        await self.mcp.handle(msg)

    async def _send_mcp(self, payload: dict[str, Any]) -> None:
        # A reply the closed socket cannot carry is lost, as on the firmware.
        with contextlib.suppress(ChannelClosed):
            await self.channel.send_json({"session_id": self.session_id, "type": "mcp", "payload": payload})

    # ------------------------------------------------------------------ sending
    async def send_json(self, obj: dict[str, Any]) -> None:
        """Send any JSON object as a text frame, as is (no session_id added)."""
        await self.channel.send_json(obj)

    async def send_raw_text(self, s: str) -> None:
        """Send a text frame verbatim (for malformed-input tests)."""
        await self.channel.send_text(s)

    async def send_binary(self, b: bytes) -> None:
        """Send a binary frame verbatim (no protocol-version header; see ``send_audio``)."""
        await self.channel.send_bytes(bytes(b))

    def frame_packet(self, packet: bytes, timestamp: int = 0) -> bytes:
        """One Opus packet -> the binary frame payload for this protocol version (§2.7)."""
        return self.channel.frame(packet, timestamp)

    async def send_audio(self, packet: bytes) -> None:
        """Send one Opus packet framed per the protocol version."""
        await self.channel.send_packet(packet)

    async def listen_start(self, mode: str = "auto") -> None:
        """``listen/start`` (the device enters listening); also starts a new turn (``turn_reset``)."""
        if mode not in ("auto", "manual", "realtime"):
            raise ValueError(f"mode must be auto, manual or realtime, not {mode!r}")
        self.listening_mode = mode
        self.turn_reset()
        await self.channel.send_json({"session_id": self.session_id, "type": "listen", "state": "start", "mode": mode})
        if self.device_state != "speaking" or mode == "realtime":
            self.device_state = "listening"

    async def listen_stop(self) -> None:
        """``listen/stop`` (manual mode: push-to-talk released); the device goes idle."""
        await self.channel.send_json({"session_id": self.session_id, "type": "listen", "state": "stop"})
        if self.device_state == "listening":
            self.device_state = "idle"

    async def listen_detect(self, text: str) -> None:
        """``listen/detect`` with a wake word or a text query; counts as the end of speech for latencies."""
        # Stamped before the send: a cached reply can arrive while the send is still being awaited.
        self.speech_end_at = time.monotonic()
        await self.channel.send_json({"session_id": self.session_id, "type": "listen", "state": "detect", "text": text})

    async def abort(self, reason: str | None = None) -> None:
        """``abort`` (optionally with a reason such as ``wake_word_detected``).

        The simulated device stays in speaking until the server's ``tts/stop`` (the toggle-button
        behaviour), so packets still in flight are not counted as violations; packets received after
        the abort are counted in ``audio_after_abort``.
        """
        msg: dict[str, Any] = {"session_id": self.session_id, "type": "abort"}
        if reason is not None:
            msg["reason"] = reason
        self.abort_sent_at = time.monotonic()
        self._aborted = True
        await self.channel.send_json(msg)

    def encode_speech(self, pcm16k: np.ndarray) -> list[bytes]:
        """int16 mono 16 kHz -> Opus packets of ``frame_ms`` (last frame zero-padded).

        A fresh encoder with the firmware's settings (application AUDIO, complexity 0, DTX on).
        """
        return self.uplink.encode(pcm16k)

    async def send_opus_packets(self, packets: Iterable[bytes], realtime: bool = True) -> int:
        """Send Opus packets framed per protocol version; paced at ``frame_ms`` on an absolute clock
        when ``realtime``. Stops quietly if the connection closes (like the firmware dropping its
        send queue). Returns the number of packets sent."""
        return await self.uplink.stream(packets, realtime)

    async def send_speech(self, pcm16k: np.ndarray, trailing_silence_ms: int = 800, realtime: bool = True) -> int:
        """Stream an utterance like the firmware's microphone: the speech, then silence.

        Speech and silence go through one encoder, as one continuous stream. ``speech_end_at`` is
        set when the last speech packet has been sent. In auto/manual mode the trailing silence stops
        early when ``tts/start`` arrives (the firmware stops the microphone when it starts speaking);
        in realtime mode it is streamed in full. Returns the number of packets sent.
        """
        packets, speech_frames = self.uplink.utterance(pcm16k, trailing_silence_ms)
        mark = len(self.events)
        t0 = asyncio.get_running_loop().time()
        sent = await self.uplink.stream(packets[:speech_frames], realtime, t0=t0)
        self.speech_end_at = time.monotonic()
        silence = packets[speech_frames:]
        if sent < speech_frames or not silence:
            return sent

        def tts_started() -> bool:
            if self.listening_mode == "realtime":
                return False
            return any(e.is_json("tts", "start") for e in self.events[mark:])

        return sent + await self.uplink.stream(silence, realtime, stop=tts_started, t0=t0, first_index=speech_frames)

    async def wake_word_burst(self, pcm16k: np.ndarray) -> int:
        """Send the wake-word audio as fast as possible (not paced), like the firmware does before
        ``listen/detect`` (§2.8). Returns the number of packets sent."""
        return await self.uplink.stream(self.uplink.encode(pcm16k), realtime=False)

    def playback_remaining_s(self) -> float:
        """Seconds until the simulated playback queue runs dry (0 when nothing is playing)."""
        return self.playback.remaining_s()

    # ------------------------------------------------------------------ waiting
    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float, since: int | None = None) -> Event:  # noqa: ASYNC109
        """The first event from index ``since`` (default: the start of the current turn) that satisfies
        ``predicate``; waits up to ``timeout`` s for it. Raises ``TimeoutError`` or ``ChannelClosed``."""
        return self.events[await self._wait_index(predicate, timeout, since)]

    async def _wait_index(self, predicate: Callable[[Event], bool], timeout: float, since: int | None = None) -> int:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        i = self._turn_start if since is None else since
        while True:
            signal = self._signal
            while i < len(self.events):
                i += 1
                if predicate(self.events[i - 1]):
                    return i - 1
            if self.closed:
                raise ChannelClosed(f"{self.channel.closed_note()} while waiting; last events: {tail(self.events)}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching server message within {timeout:g} s; last events: {tail(self.events)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), remaining)

    async def wait_json(self, type: str, state: str | None = None, timeout: float = 30) -> dict[str, Any]:  # noqa: ASYNC109
        """The first JSON message of this type (and state) in the current turn; waits for it."""
        event = await self.wait_for(lambda e: e.is_json(type, state), timeout)
        assert event.msg is not None
        return event.msg

    def turn_reset(self) -> None:
        """Start a new turn: later waits and ``wait_turn_end`` only look at events from now on."""
        self._turn_start = len(self.events)
        self._turn_started_at = time.monotonic()
        self.speech_end_at = None

    async def wait_turn_end(self, timeout: float = 60) -> Turn:  # noqa: ASYNC109
        """Wait for ``tts/stop`` in the current turn and summarise the turn."""
        start = self._turn_start
        end = await self._wait_index(lambda e: e.is_json("tts", "stop"), timeout, start) + 1
        return self.summarise(self.events[start:end])

    def summarise(self, events: Sequence[Event]) -> Turn:
        """A ``Turn`` from a slice of ``self.events``; latencies from the end of speech in this turn
        (``speech_end_at``), or from the turn's start when no speech ended in it."""
        ref = self.speech_end_at
        if ref is None or ref < self._turn_started_at:
            ref = self._turn_started_at
        return summarise_events(events, ref, self.downlink_rate)
