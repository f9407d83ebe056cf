"""The simulated device's WebSocket channel: opening handshake, binary framing, send, receive, close.

Only the transport lives here, written like the firmware's (``websocket_protocol.cc`` on
``web_socket.cc``): the headers or the XS query-string fallback, TLS for ``wss://``, the handshake
options the firmware uses, the binary-frame layouts of protocol versions 1/2/3 (docs/protocol.md
§2.1, §2.7) and the close codes. What a message *means* (hello, tts states, audio gating, MCP) is
``DeviceClient``'s business: the channel hands each received frame to a callback and reports its
closing to another, so the firmware model never touches ``websockets`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from shared.client.errors import ChannelClosed, DeviceClientError

__all__ = ["OPEN_TIMEOUT_S", "WebSocketChannel", "deframe", "frame_packet"]

_log = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10  # NET web_socket.cc handshake limit

OnMessage = Callable[[str | bytes, float], Awaitable[None]]
"""Called with each text (``str``) or binary (``bytes``) frame and its ``time.monotonic()`` arrival."""
OnClosed = Callable[[bool], None]
"""Called when the channel is found closed; True the first time (close code and reason just set)."""
OnError = Callable[[Exception], None]
"""Called when ``OnMessage`` raised: the receive loop goes on, a handler's bug is not a closed socket."""


def frame_packet(protocol_version: int, packet: bytes, timestamp: int = 0) -> bytes:
    """One Opus packet -> the binary frame payload for this protocol version (§2.7)."""
    if protocol_version == 2:
        return struct.pack(">HHIII", 2, 0, 0, timestamp, len(packet)) + packet
    if protocol_version == 3:
        return struct.pack(">BBH", 0, 0, len(packet)) + packet
    return packet


def deframe(protocol_version: int, data: bytes) -> tuple[bytes | None, int | None, str]:
    """Binary frame -> (Opus packet, v2 timestamp, what is wrong with the frame or "").

    The packet is None when the firmware could not take one out of the frame (shorter than its header,
    or shorter than its ``payload_size``). A ``payload_size`` shorter than the payload is noted but the
    packet is still returned, cut to that size, because the firmware reads ``payload_size`` bytes.
    """
    if protocol_version == 1:
        return data, None, ""
    if protocol_version == 2:
        if len(data) < 16:
            return None, None, f"v2 binary frame shorter than its 16-byte header ({len(data)} bytes)"
        _version, _type, _reserved, timestamp, size = struct.unpack(">HHIII", data[:16])
        body = data[16:]
    else:
        if len(data) < 4:
            return None, None, f"v3 binary frame shorter than its 4-byte header ({len(data)} bytes)"
        _type, _reserved, size = struct.unpack(">BBH", data[:4])
        timestamp = None
        body = data[4:]
    if size == len(body):
        return body, timestamp, ""
    note = f"v{protocol_version} payload_size {size} but {len(body)} payload bytes"
    if size > len(body):
        return None, timestamp, note
    return body[:size], timestamp, note


class WebSocketChannel:
    """One WebSocket connection of a device, opened once, with the firmware's handshake and framing."""

    def __init__(
        self,
        url: str,
        *,
        device_id: str,
        client_id: str,
        token: str,
        protocol_version: int,
        headers_in_query: bool,
        ssl_context: ssl.SSLContext | None,
        on_message: OnMessage,
        on_closed: OnClosed,
        on_error: OnError,
    ) -> None:
        self.url = url
        self.device_id = device_id
        self.client_id = client_id
        self.token = token
        self.protocol_version = protocol_version
        self.headers_in_query = headers_in_query
        # For wss:// URLs: how the server's certificate is checked, like the CA bundle built into the
        # firmware (shared.tls.client_context(ca_file) for a private fleet CA). None: the system's CAs.
        # Ignored for ws:// URLs, which connect exactly as before.
        self.ssl_context = ssl_context
        self.ws: ClientConnection | None = None
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._on_message = on_message
        self._on_closed = on_closed
        self._on_error = on_error
        self._recv_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ opening
    def target(self) -> tuple[str, dict[str, str]]:
        """The URL and headers of the opening handshake: headers, or the query string (XS fallback)."""
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

    async def open(self) -> None:
        """Open the WebSocket and start receiving; ``DeviceClientError`` says why it could not."""
        url, headers = self.target()
        tls: dict[str, Any] = {"ssl": self.ssl_context} if url.startswith("wss://") and self.ssl_context else {}
        try:
            self.ws = await connect(
                url,
                **tls,
                additional_headers=headers,
                ping_interval=None,  # the firmware never pings and a server must not need pongs
                max_size=None,
                compression=None,  # the firmware offers no extensions
                user_agent_header=None,
                proxy=None,
                open_timeout=OPEN_TIMEOUT_S,
                close_timeout=2,
            )
        except InvalidStatus as exc:
            raise DeviceClientError(f"WebSocket upgrade to {url} refused: HTTP {exc.response.status_code}") from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise DeviceClientError(f"cannot open WebSocket {url}: {type(exc).__name__}: {exc}") from exc
        self._recv_task = asyncio.create_task(self._receive_loop(), name=f"device-recv-{self.device_id}")

    # ------------------------------------------------------------------ sending
    async def send_text(self, text: str) -> None:
        """One text frame; ``ChannelClosed`` if the connection is (or turns out to be) closed."""
        if self.ws is None or self.closed:
            raise ChannelClosed(self.closed_note())
        try:
            await self.ws.send(text)
        except ConnectionClosed as exc:
            raise ChannelClosed(self.closed_note(exc)) from exc

    async def send_bytes(self, data: bytes) -> None:
        """One binary frame, verbatim; ``ChannelClosed`` as for ``send_text``."""
        if self.ws is None or self.closed:
            raise ChannelClosed(self.closed_note())
        try:
            await self.ws.send(data)
        except ConnectionClosed as exc:
            raise ChannelClosed(self.closed_note(exc)) from exc

    async def send_json(self, obj: dict[str, Any]) -> None:
        """A JSON object as a text frame, like cJSON_PrintUnformatted: compact, UTF-8 as is."""
        await self.send_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    def frame(self, packet: bytes, timestamp: int = 0) -> bytes:
        """One Opus packet -> its binary frame payload for this connection's protocol version."""
        return frame_packet(self.protocol_version, packet, timestamp)

    def deframe(self, data: bytes) -> tuple[bytes | None, int | None, str]:
        """A received binary frame -> (Opus packet, v2 timestamp, problem); see ``deframe``."""
        return deframe(self.protocol_version, data)

    async def send_packet(self, packet: bytes) -> None:
        """One Opus packet, framed for this connection's protocol version."""
        await self.send_bytes(self.frame(packet))

    def closed_note(self, exc: ConnectionClosed | None = None) -> str:
        """Why nothing can be sent: not connected yet, or closed with this code and reason."""
        if self.ws is None:
            return "not connected (call connect() first)"
        code = self.close_code
        reason = self.close_reason
        if exc is not None and exc.rcvd is not None:
            code, reason = exc.rcvd.code, exc.rcvd.reason
        return f"connection closed (code {code}, reason {reason!r})"

    # ------------------------------------------------------------------ receiving and closing
    async def _receive_loop(self) -> None:
        assert self.ws is not None
        ws = self.ws
        code: int | None = None
        reason: str | None = ""
        try:
            async for message in ws:
                now = time.monotonic()
                try:
                    await self._on_message(message if isinstance(message, str) else bytes(message), now)
                except ConnectionClosed:
                    raise
                except Exception as exc:  # a client bug must not look like a closed connection
                    _log.exception("device %s: error handling a server message", self.device_id)
                    self._on_error(exc)
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                code, reason = exc.rcvd.code, exc.rcvd.reason
        finally:
            if code is None:
                code, reason = ws.close_code, ws.close_reason
            self._mark_closed(code, reason)

    def _mark_closed(self, code: int | None, reason: str | None) -> None:
        first = not self.closed
        if first:
            self.closed = True
            self.close_code = code
            self.close_reason = reason or ""
        self._on_closed(first)

    async def close(self) -> None:
        """Close the socket (the WebSocket 'goodbye' is just closing, §2.9) and end the receive loop.

        Idempotent; also marks a never-opened channel closed, so that later sends and waits fail fast.
        """
        ws = self.ws
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

    async def wait_closed(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Until the connection closes (True) or ``timeout`` passes (False)."""
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
