"""A device client that behaves like unmodified Xiaozhi ESP32 firmware (WebSocket transport).

Used by the integration tests, the ``xiaozhi-device`` simulator and the load generator. It is an
*independent* implementation of the wire format (docs/protocol.md §2 and §3, whose section numbers
the ``§`` references below cite) written from the firmware's behaviour, not from ``shared.protocol``:
a misunderstanding shared by server and client would otherwise go unnoticed. It speaks raw JSON and
raw binary frames and uses ``opuslib_next`` directly.

What it simulates from the firmware, besides the messages themselves:

* the opening handshake (headers, or the XS query-string fallback) and the 10 s server-hello wait;
* the device state machine: downlink Opus is decoded **only in the speaking state** (between
  ``tts/start`` and ``tts/stop``); anything else is dropped and counted as ``audio_before_start`` /
  ``audio_after_stop`` (§2.3, §2.8);
* the 40-packet decode queue played out in real time at the announced frame duration: the depth
  after each packet is recorded (``max_queue_depth``) and packets beyond 40 are dropped like the
  firmware drops them (``queue_full_drops``);
* the Opus decoder opened at the rate/duration announced in the server hello (24000/60 by default),
  with its output buffer sized to the announced duration (longer packets fail to decode, §2.8);
* the device MCP server (§3): ``initialize``, paginated ``tools/list``, ``tools/call`` applied to
  ``self.state``; requests whose id is not a JSON number are not answered (counted instead);
* the uplink: Opus 16 kHz mono, application AUDIO, complexity 0, DTX on (FW ``AS_OPUS_ENC_CONFIG``),
  one packet per binary frame, framed per protocol version 1/2/3, paced in real time.

Every server message is recorded in ``self.events`` with ``time.monotonic()``; tests and tools read
it directly or through ``wait_for`` / ``wait_json`` / ``wait_turn_end``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
import opuslib_next
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

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

_log = logging.getLogger(__name__)

UPLINK_RATE = 16000
DEFAULT_DOWNLINK_RATE = 24000  # firmware >= 1.5.4 default when the hello has no audio_params
DEFAULT_DOWNLINK_FRAME_MS = 60
MAX_DECODE_PACKETS_IN_QUEUE = 40  # FW audio_service.h
HELLO_TIMEOUT_S = 10.0  # FW websocket_protocol.cc
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)

DEFAULT_FEATURES: dict[str, Any] = {"mcp": True}
DEFAULT_TEXT_FONT: dict[str, Any] = {"bundle": "noto-v1", "charset": "common", "size": 20, "bpp": 4}

DEFAULT_TOOLS: list[dict[str, Any]] = [
    {
        "name": "self.get_device_status",
        "description": (
            "Provides the real-time information of the device, including the current status of the audio "
            "speaker, screen, battery, network, etc.\nUse this tool for: \n1. Answering questions about "
            "current condition (e.g. what is the current volume of the audio speaker?)\n2. As the first step "
            "to control the device (e.g. turn up / down the volume of the audio speaker, etc.)"
        ),
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "self.audio_speaker.set_volume",
        "description": (
            "Set the volume of the audio speaker. If the current volume is unknown, you must call "
            "`self.get_device_status` tool first and then call this tool."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {"volume": {"type": "integer", "minimum": 0, "maximum": 100}},
            "required": ["volume"],
        },
    },
    {
        "name": "self.screen.set_brightness",
        "description": "Set the brightness of the screen.",
        "inputSchema": {
            "type": "object",
            "properties": {"brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
            "required": ["brightness"],
        },
    },
    {
        "name": "self.screen.set_theme",
        "description": "Set the theme of the screen. The theme can be `light` or `dark`.",
        "inputSchema": {
            "type": "object",
            "properties": {"theme": {"type": "string"}},
            "required": ["theme"],
        },
    },
]


class DeviceClientError(RuntimeError):
    """The device client could not do what was asked (connect, hello, send)."""


class HelloTimeout(DeviceClientError):
    """No valid server hello (type hello, transport websocket) within the firmware's 10 s."""


class ChannelClosed(DeviceClientError):
    """The WebSocket is closed (by the server, the network, or ``close()``)."""


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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class DeviceClient:
    """An async, firmware-like Xiaozhi device on the WebSocket transport."""

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
        self.url = url
        self.device_id = device_id
        self.client_id = client_id or str(uuid.uuid4())
        self.token = token
        self.protocol_version = protocol_version
        self.headers_in_query = headers_in_query
        self.features = dict(features) if features is not None else None
        self.frame_ms = frame_ms
        self.tools = [dict(t) for t in (tools if tools is not None else DEFAULT_TOOLS)]
        self.tools_page_size = tools_page_size
        self.hello_timeout_s = hello_timeout_s
        # Like the firmware in auto/realtime mode: after tts/stop, send listen/start again
        # (auto: once the simulated playback queue has drained). Off by default so tests drive turns.
        self.auto_listen = auto_listen
        # For wss:// URLs: how the server's certificate is checked, like the CA bundle built into the
        # firmware (shared.tls.client_context(ca_file) for a private fleet CA). None: the system's CAs.
        # Ignored for ws:// URLs, which connect exactly as before.
        self.ssl_context = ssl_context

        # Connection and hello.
        self.session_id = ""
        self.server_hello: dict[str, Any] | None = None
        self.server_audio_params: dict[str, Any] | None = None
        self.hello_latency_ms: float | None = None
        self.downlink_rate = DEFAULT_DOWNLINK_RATE
        self.downlink_frame_ms = DEFAULT_DOWNLINK_FRAME_MS
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""

        # Everything the server sent.
        self.events: list[Event] = []

        # Simulated firmware state.
        self.device_state = "idle"  # connecting | idle | listening | speaking
        self.listening_mode = "auto"
        self.state: dict[str, Any] = {"volume": 70, "brightness": 75, "theme": "light"}
        self.tool_calls: list[dict[str, Any]] = []
        self.mcp_initialize_params: dict[str, Any] | None = None

        # Counters of server behaviour the firmware would not like.
        self.audio_before_start = 0
        self.audio_after_stop = 0
        self.audio_after_abort = 0  # informational: packets received after we sent abort, before tts/stop
        self.max_queue_depth = 0
        self.queue_full_drops = 0
        self.decode_errors = 0
        self.framing_errors = 0
        self.invalid_json = 0
        self.mcp_protocol_violations = 0
        self.violations: list[str] = []  # human-readable notes for all of the above

        # Timing.
        self.speech_end_at: float | None = None
        self.abort_sent_at: float | None = None

        self._ws: ClientConnection | None = None
        self._recv_task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._signal = asyncio.Event()
        self._hello_event = asyncio.Event()
        self._decoder: Any = None
        self._decoder_frame_samples = 0
        self._play_end = 0.0  # monotonic time at which the simulated decode/playback queue runs dry
        self._tts_seen = ""  # "", "start" or "stop": the last tts start/stop seen
        self._aborted = False
        self._turn_start = 0
        self._turn_started_at = time.monotonic()
        self._hello_sent_at = 0.0

    # ------------------------------------------------------------------ connection
    def _connect_target(self) -> tuple[str, dict[str, str]]:
        auth = ""
        if self.token:
            # FW: a token without a space gets the "Bearer " prefix; one with a space is sent as is.
            auth = self.token if " " in self.token else f"Bearer {self.token}"
        if self.headers_in_query:
            params = {"device-id": self.device_id, "client-id": self.client_id}
            if auth:
                params["authorization"] = auth
            parts = urlsplit(self.url)
            query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
            return urlunsplit(parts._replace(query=query)), {}
        headers: dict[str, str] = {}
        if auth:
            headers["Authorization"] = auth
        headers["Protocol-Version"] = str(self.protocol_version)
        headers["Device-Id"] = self.device_id
        headers["Client-Id"] = self.client_id
        return self.url, headers

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
        url, headers = self._connect_target()
        self.device_state = "connecting"
        tls: dict[str, Any] = {"ssl": self.ssl_context} if url.startswith("wss://") and self.ssl_context else {}
        try:
            self._ws = await connect(
                url,
                **tls,
                additional_headers=headers,
                ping_interval=None,  # the firmware never pings and a server must not need pongs
                max_size=None,
                compression=None,  # the firmware offers no extensions
                user_agent_header=None,
                proxy=None,
                open_timeout=10,  # NET web_socket.cc handshake limit
                close_timeout=2,
            )
        except InvalidStatus as exc:
            self.device_state = "idle"
            raise DeviceClientError(f"WebSocket upgrade to {url} refused: HTTP {exc.response.status_code}") from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self.device_state = "idle"
            raise DeviceClientError(f"cannot open WebSocket {url}: {type(exc).__name__}: {exc}") from exc

        self._recv_task = asyncio.create_task(self._receive_loop(), name=f"device-recv-{self.device_id}")
        self._hello_sent_at = time.monotonic()
        try:
            await self._send_text(json.dumps(self.hello_message(), separators=(",", ":")))
        except ChannelClosed as exc:
            await self.close()
            raise DeviceClientError(f"server closed the connection before the hello: {exc}") from exc
        try:
            await asyncio.wait_for(self._wait_hello_or_close(), self.hello_timeout_s)
        except TimeoutError:
            await self.close()
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
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._recv_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._recv_task), 3)
            if not self._recv_task.done():
                self._recv_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._recv_task
        if not self.closed:
            self._mark_closed(ws.close_code if ws is not None else None, ws.close_reason if ws is not None else "")

    async def __aenter__(self) -> DeviceClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_closed(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Until the connection closes (True) or ``timeout`` passes (False): how a simulated
        device holds an idle session without polling."""
        task = self._recv_task
        if task is None:
            return self.closed
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            return False
        except Exception:  # noqa: BLE001 - the receive loop's own errors are its business
            pass
        return True

    def _mark_closed(self, code: int | None, reason: str | None) -> None:
        if not self.closed:
            self.closed = True
            self.close_code = code
            self.close_reason = reason or ""
            self.device_state = "idle"
        self._notify()

    # ------------------------------------------------------------------ receiving
    def _notify(self) -> None:
        signal, self._signal = self._signal, asyncio.Event()
        signal.set()

    def _violation(self, note: str) -> None:
        self.violations.append(note)

    async def _receive_loop(self) -> None:
        assert self._ws is not None
        ws = self._ws
        code: int | None = None
        reason: str | None = ""
        try:
            async for message in ws:
                now = time.monotonic()
                try:
                    if isinstance(message, str):
                        await self._on_text(message, now)
                    else:
                        self._on_binary(bytes(message), now)
                except ConnectionClosed:
                    raise
                except Exception as exc:  # a client bug must not look like a closed connection
                    _log.exception("device %s: error handling a server message", self.device_id)
                    self._violation(f"client error handling a server message: {exc!r}")
                self._notify()
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                code, reason = exc.rcvd.code, exc.rcvd.reason
        finally:
            if code is None:
                code, reason = ws.close_code, ws.close_reason
            self._mark_closed(code, reason)

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
            if _is_number(params.get("sample_rate")):
                rate = int(params["sample_rate"])
            if _is_number(params.get("frame_duration")):
                frame_ms = int(params["frame_duration"])
        self.downlink_rate, self.downlink_frame_ms = rate, frame_ms
        self._open_decoder()
        if first:
            self.hello_latency_ms = (now - self._hello_sent_at) * 1000
            self.device_state = "idle"
            self._hello_event.set()

    def _open_decoder(self) -> None:
        self._decoder = None
        self._decoder_frame_samples = self.downlink_rate * self.downlink_frame_ms // 1000
        if self.downlink_rate not in OPUS_RATES:
            self._violation(f"server hello sample_rate {self.downlink_rate} is not an Opus decoder rate")
            return
        self._decoder = opuslib_next.Decoder(self.downlink_rate, 1)

    def _on_tts(self, msg: dict[str, Any], now: float) -> None:
        state = msg.get("state")
        if state == "start":
            if self.device_state == "connecting":
                self._violation("tts/start before the server hello: the firmware rejects it")
                return
            self.device_state = "speaking"
            self._tts_seen = "start"
            self._aborted = False
            # FW ResetDecoder: fresh decoder state, empty queues.
            self._open_decoder()
            self._play_end = 0.0
        elif state == "stop":
            self._tts_seen = "stop"
            if self.device_state == "speaking":
                self.device_state = "idle" if self.listening_mode == "manual" else "listening"
                if self.auto_listen and self.listening_mode in ("auto", "realtime"):
                    delay = max(0.0, self._play_end - now) if self.listening_mode == "auto" else 0.0
                    self._spawn(self._relisten(delay))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _relisten(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.device_state == "listening" and not self.closed:
            with contextlib.suppress(ChannelClosed):
                await self._send_json_msg(
                    {"session_id": self.session_id, "type": "listen", "state": "start", "mode": self.listening_mode}
                )

    def _deframe(self, data: bytes) -> tuple[bytes | None, int | None]:
        """Binary frame -> (opus packet, v2 timestamp), per this connection's protocol version."""
        if self.protocol_version == 1:
            return data, None
        if self.protocol_version == 2:
            if len(data) < 16:
                self._violation(f"v2 binary frame shorter than its 16-byte header ({len(data)} bytes)")
                return None, None
            _version, _type, _reserved, timestamp, size = struct.unpack(">HHIII", data[:16])
            body = data[16:]
        else:
            if len(data) < 4:
                self._violation(f"v3 binary frame shorter than its 4-byte header ({len(data)} bytes)")
                return None, None
            _type, _reserved, size = struct.unpack(">BBH", data[:4])
            timestamp = None
            body = data[4:]
        if size != len(body):
            self._violation(f"v{self.protocol_version} payload_size {size} but {len(body)} payload bytes")
            if size > len(body):
                return None, timestamp
            body = body[:size]  # the firmware uses payload_size
        return body, timestamp

    def _on_binary(self, data: bytes, now: float) -> None:
        packet, timestamp = self._deframe(data)
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
        # The decode queue, played out in real time.
        frame_s = self.downlink_frame_ms / 1000
        if self._play_end < now:
            self._play_end = now  # queue empty (first packet, or an underrun): playback starts now
        queued = math.ceil((self._play_end - now) / frame_s - 1e-6)
        if queued >= MAX_DECODE_PACKETS_IN_QUEUE:
            self.queue_full_drops += 1
            event.dropped = "queue_full"
            event.queue_depth = queued
            self._violation("decode queue full (40 packets): packet dropped")
            return
        self._play_end += frame_s
        event.queue_depth = queued + 1
        self.max_queue_depth = max(self.max_queue_depth, queued + 1)
        if self._decoder is None:
            self.decode_errors += 1
            event.dropped = "decode_error"
            return
        try:
            pcm = self._decoder.decode(packet, self._decoder_frame_samples)
        except Exception as exc:  # opuslib_next.OpusError and friends
            self.decode_errors += 1
            event.dropped = "decode_error"
            self._violation(f"downlink Opus packet ({len(packet)} bytes) failed to decode: {exc}")
            return
        event.pcm = np.frombuffer(pcm, dtype=np.int16).copy()

    # ------------------------------------------------------------------ device MCP server
    async def _on_mcp(self, msg: dict[str, Any]) -> None:
        payload = msg.get("payload")
        if not isinstance(payload, dict):
            return self._mcp_violation(f"mcp message without an object payload: {msg}")
        if payload.get("jsonrpc") != "2.0":
            return self._mcp_violation(f"mcp payload without jsonrpc 2.0: {payload}")
        method = payload.get("method")
        if not isinstance(method, str):
            return self._mcp_violation(f"mcp payload without a string method (the device is the MCP server): {payload}")
        if method.startswith("notifications"):
            return None  # accepted silently
        params = payload.get("params", {})
        if not isinstance(params, dict):
            return self._mcp_violation(f"mcp params is not an object: {payload}")
        req_id = payload.get("id")
        if not _is_number(req_id):
            return self._mcp_violation(f"mcp request id {req_id!r} is not a JSON number (the firmware does not reply)")

        if method == "initialize":
            self.mcp_initialize_params = params
            await self._mcp_reply(
                req_id,
                result={
                    "protocolVersion": "2024-11-05",
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "sim-board", "version": "2.4.2"},
                },
            )
        elif method == "tools/list":
            await self._mcp_reply(req_id, result=self._tools_page(params))
        elif method == "tools/call":
            await self._mcp_tools_call(req_id, params)
        else:
            await self._mcp_reply(req_id, error={"code": -32601, "message": f"Method not implemented: {method}"})
        return None

    def _mcp_violation(self, note: str) -> None:
        self.mcp_protocol_violations += 1
        self._violation(note)

    def _tools_page(self, params: dict[str, Any]) -> dict[str, Any]:
        with_user = bool(params.get("withUserTools", False))
        visible = [t for t in self.tools if with_user or not t.get("user_only")]
        cursor = params.get("cursor", "")
        start = 0
        if isinstance(cursor, str) and cursor:
            names = [t["name"] for t in visible]
            if cursor not in names:
                return {"tools": [], "nextCursor": ""}
            start = names.index(cursor)
        page = visible[start : start + self.tools_page_size]
        rest = visible[start + self.tools_page_size :]
        tools = [{k: v for k, v in t.items() if k != "user_only"} for t in page]
        return {"tools": tools, "nextCursor": rest[0]["name"] if rest else ""}

    async def _mcp_tools_call(self, req_id: Any, params: dict[str, Any]) -> None:
        name = params.get("name")
        args = params.get("arguments", {})
        self.tool_calls.append({"id": req_id, "name": name, "arguments": args, "at": time.monotonic()})
        tool = next((t for t in self.tools if t["name"] == name), None)
        if tool is None:
            await self._mcp_reply(req_id, error={"code": -32601, "message": f"Unknown tool: {name}"})
            return
        if not isinstance(args, dict):
            await self._mcp_reply(req_id, error={"code": -32602, "message": "arguments must be an object"})
            return
        schema = tool.get("inputSchema", {})
        for arg, spec in (schema.get("properties") or {}).items():
            if arg not in args:
                if arg in (schema.get("required") or []):
                    await self._mcp_reply(req_id, error={"code": -32602, "message": f"Missing valid argument: {arg}"})
                    return
                continue
            value = args[arg]
            kind = spec.get("type")
            ok = (
                (kind == "integer" and isinstance(value, int) and not isinstance(value, bool))
                or (kind == "number" and _is_number(value))
                or (kind == "string" and isinstance(value, str))
                or (kind == "boolean" and isinstance(value, bool))
                or kind is None
            )
            if ok and kind == "integer":
                ok = spec.get("minimum", value) <= value <= spec.get("maximum", value)
            if not ok:
                await self._mcp_reply(req_id, error={"code": -32602, "message": f"Invalid argument: {arg}={value!r}"})
                return
        text = "true"
        if name == "self.audio_speaker.set_volume":
            self.state["volume"] = args["volume"]
        elif name == "self.screen.set_brightness":
            self.state["brightness"] = args["brightness"]
        elif name == "self.screen.set_theme":
            self.state["theme"] = args["theme"]
        elif name == "self.get_device_status":
            text = json.dumps(
                {
                    "audio_speaker": {"volume": self.state["volume"]},
                    "screen": {"brightness": self.state["brightness"], "theme": self.state["theme"]},
                    "battery": {"level": 87, "charging": False},
                    "network": {"type": "wifi", "ssid": "sim", "signal": "strong"},
                },
                separators=(",", ":"),
            )
        await self._mcp_reply(req_id, result={"content": [{"type": "text", "text": text}], "isError": False})

    async def _mcp_reply(self, req_id: Any, *, result: Any = None, error: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id}
        if error is not None:
            payload["error"] = error
        else:
            payload["result"] = result
        with contextlib.suppress(ChannelClosed):
            await self._send_json_msg({"session_id": self.session_id, "type": "mcp", "payload": payload})

    # ------------------------------------------------------------------ sending
    async def _send_text(self, text: str) -> None:
        if self._ws is None or self.closed:
            raise ChannelClosed(self._closed_note())
        try:
            await self._ws.send(text)
        except ConnectionClosed as exc:
            raise ChannelClosed(self._closed_note(exc)) from exc

    async def _send_bytes(self, data: bytes) -> None:
        if self._ws is None or self.closed:
            raise ChannelClosed(self._closed_note())
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise ChannelClosed(self._closed_note(exc)) from exc

    def _closed_note(self, exc: ConnectionClosed | None = None) -> str:
        if self._ws is None:
            return "not connected (call connect() first)"
        code = self.close_code
        reason = self.close_reason
        if exc is not None and exc.rcvd is not None:
            code, reason = exc.rcvd.code, exc.rcvd.reason
        return f"connection closed (code {code}, reason {reason!r})"

    async def _send_json_msg(self, obj: dict[str, Any]) -> None:
        # cJSON_PrintUnformatted: compact, UTF-8 as is.
        await self._send_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    async def send_json(self, obj: dict[str, Any]) -> None:
        """Send any JSON object as a text frame, as is (no session_id added)."""
        await self._send_json_msg(obj)

    async def send_raw_text(self, s: str) -> None:
        """Send a text frame verbatim (for malformed-input tests)."""
        await self._send_text(s)

    async def send_binary(self, b: bytes) -> None:
        """Send a binary frame verbatim (no protocol-version header; see ``send_audio``)."""
        await self._send_bytes(bytes(b))

    def frame_packet(self, packet: bytes, timestamp: int = 0) -> bytes:
        """One Opus packet -> the binary frame payload for this protocol version (§2.7)."""
        if self.protocol_version == 2:
            return struct.pack(">HHIII", 2, 0, 0, timestamp, len(packet)) + packet
        if self.protocol_version == 3:
            return struct.pack(">BBH", 0, 0, len(packet)) + packet
        return packet

    async def send_audio(self, packet: bytes) -> None:
        """Send one Opus packet framed per the protocol version."""
        await self._send_bytes(self.frame_packet(packet))

    async def listen_start(self, mode: str = "auto") -> None:
        """``listen/start`` (the device enters listening); also starts a new turn (``turn_reset``)."""
        if mode not in ("auto", "manual", "realtime"):
            raise ValueError(f"mode must be auto, manual or realtime, not {mode!r}")
        self.listening_mode = mode
        self.turn_reset()
        await self._send_json_msg({"session_id": self.session_id, "type": "listen", "state": "start", "mode": mode})
        if self.device_state != "speaking" or mode == "realtime":
            self.device_state = "listening"

    async def listen_stop(self) -> None:
        """``listen/stop`` (manual mode: push-to-talk released); the device goes idle."""
        await self._send_json_msg({"session_id": self.session_id, "type": "listen", "state": "stop"})
        if self.device_state == "listening":
            self.device_state = "idle"

    async def listen_detect(self, text: str) -> None:
        """``listen/detect`` with a wake word or a text query; counts as the end of speech for latencies."""
        # Stamped before the send: a cached reply can arrive while the send is still being awaited.
        self.speech_end_at = time.monotonic()
        await self._send_json_msg({"session_id": self.session_id, "type": "listen", "state": "detect", "text": text})

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
        await self._send_json_msg(msg)

    def encode_speech(self, pcm16k: np.ndarray) -> list[bytes]:
        """int16 mono 16 kHz -> Opus packets of ``frame_ms`` (last frame zero-padded).

        A fresh encoder with the firmware's settings (application AUDIO, complexity 0, DTX on).
        """
        pcm = np.asarray(pcm16k)
        if pcm.ndim != 1:
            raise ValueError(f"expected mono PCM (1-D), got shape {pcm.shape}")
        if np.issubdtype(pcm.dtype, np.floating):
            pcm = np.clip(pcm * 32768.0, -32768, 32767)
        pcm = pcm.astype(np.int16)
        n = UPLINK_RATE * self.frame_ms // 1000
        if pcm.size % n:
            pcm = np.concatenate([pcm, np.zeros(n - pcm.size % n, dtype=np.int16)])
        encoder = opuslib_next.Encoder(UPLINK_RATE, 1, opuslib_next.APPLICATION_AUDIO)
        encoder.complexity = 0
        encoder.dtx = True
        return [encoder.encode(pcm[i : i + n].tobytes(), n) for i in range(0, pcm.size, n)]

    async def send_opus_packets(self, packets: Iterable[bytes], realtime: bool = True) -> int:
        """Send Opus packets framed per protocol version; paced at ``frame_ms`` on an absolute clock
        when ``realtime``. Stops quietly if the connection closes (like the firmware dropping its
        send queue). Returns the number of packets sent."""
        return await self._stream(packets, realtime)

    async def _stream(
        self,
        packets: Iterable[bytes],
        realtime: bool,
        stop: Callable[[], bool] | None = None,
        t0: float | None = None,
        first_index: int = 0,
    ) -> int:
        """Send packets; with ``realtime`` packet k goes out at ``t0 + (first_index + k) * frame``."""
        loop = asyncio.get_running_loop()
        frame_s = self.frame_ms / 1000
        if t0 is None:
            t0 = loop.time()
        sent = 0
        for k, packet in enumerate(packets, start=first_index):
            if realtime:
                delay = t0 + k * frame_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # a burst, but let the receive task run
            if stop is not None and stop():
                break
            try:
                await self._send_bytes(self.frame_packet(packet))
            except ChannelClosed:
                break
            sent += 1
        return sent

    async def send_speech(self, pcm16k: np.ndarray, trailing_silence_ms: int = 800, realtime: bool = True) -> int:
        """Stream an utterance like the firmware's microphone: the speech, then silence.

        Speech and silence go through one encoder, as one continuous stream. ``speech_end_at`` is
        set when the last speech packet has been sent. In auto/manual mode the trailing silence stops
        early when ``tts/start`` arrives (the firmware stops the microphone when it starts speaking);
        in realtime mode it is streamed in full. Returns the number of packets sent.
        """
        n = UPLINK_RATE * self.frame_ms // 1000
        pcm = np.asarray(pcm16k)
        speech_frames = math.ceil(pcm.size / n) if pcm.size else 0
        silence_frames = math.ceil(max(0, trailing_silence_ms) / self.frame_ms)
        if speech_frames:
            pcm = np.concatenate([pcm.astype(np.int16), np.zeros(speech_frames * n - pcm.size, dtype=np.int16)])
        pcm = np.concatenate([pcm.astype(np.int16), np.zeros(silence_frames * n, dtype=np.int16)])
        packets = self.encode_speech(pcm)
        mark = len(self.events)
        t0 = asyncio.get_running_loop().time()
        sent = await self._stream(packets[:speech_frames], realtime, t0=t0)
        self.speech_end_at = time.monotonic()
        if sent < speech_frames or not silence_frames:
            return sent

        def tts_started() -> bool:
            if self.listening_mode == "realtime":
                return False
            return any(e.is_json("tts", "start") for e in self.events[mark:])

        silence = packets[speech_frames:]
        return sent + await self._stream(silence, realtime, stop=tts_started, t0=t0, first_index=speech_frames)

    async def wake_word_burst(self, pcm16k: np.ndarray) -> int:
        """Send the wake-word audio as fast as possible (not paced), like the firmware does before
        ``listen/detect`` (§2.8). Returns the number of packets sent."""
        return await self._stream(self.encode_speech(pcm16k), realtime=False)

    def playback_remaining_s(self) -> float:
        """Seconds until the simulated playback queue runs dry (0 when nothing is playing)."""
        return max(0.0, self._play_end - time.monotonic())

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
                raise ChannelClosed(f"{self._closed_note()} while waiting; last events: {self._tail()}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching server message within {timeout:g} s; last events: {self._tail()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), remaining)

    def _tail(self, n: int = 6) -> str:
        out = []
        for e in self.events[-n:]:
            out.append(f"audio[{len(e.payload or b'')}]" if e.kind == "audio" else json.dumps(e.msg)[:120])
        return "; ".join(out) or "(none)"

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
        """A ``Turn`` from a slice of ``self.events``."""
        ref = self.speech_end_at
        if ref is None or ref < self._turn_started_at:
            ref = self._turn_started_at

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
            sample_rate=self.downlink_rate,
            order=order,
            stt_ms=ms(stt_at),
            first_audio_ms=ms(first_audio_at),
            tts_stop_ms=ms(stop_at),
            dropped_packets=dropped,
            max_queue_depth=depth,
            events=list(events),
        )
