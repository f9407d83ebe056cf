"""Tests of the firmware-like DeviceClient (shared/client) against a FAKE server.

FakeXiaozhiServer below is a FAKE, used ONLY to test the client: a few dozen lines that accept a
WebSocket, record what the client sends and send scripted server messages. It is not the edge node
and proves nothing about it; the real server is tested in tests/edge/ with this client.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import opuslib_next
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from shared.client import cli, speech
from shared.client.device import ChannelClosed, DeviceClient, HelloTimeout

SERVER_HELLO_PARAMS = {"format": "opus", "sample_rate": 24000, "channels": 1, "frame_duration": 60}


def tone(rate: int, seconds: float, freq: float = 440.0, amp: int = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def opus_packets(rate: int = 24000, frame_ms: int = 60, count: int = 5) -> list[bytes]:
    """``count`` Opus packets of a 440 Hz tone at ``rate`` (what a server sends down)."""
    n = rate * frame_ms // 1000
    pcm = tone(rate, count * frame_ms / 1000)
    enc = opuslib_next.Encoder(rate, 1, opuslib_next.APPLICATION_AUDIO)
    return [enc.encode(pcm[i * n : (i + 1) * n].tobytes(), n) for i in range(count)]


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0


# --------------------------------------------------------------------------------------------------
# FAKE server -- used only to test the client.
# --------------------------------------------------------------------------------------------------
class FakeConnection:
    """One client connection as the FAKE server sees it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.path: str = ws.request.path if ws.request else ""
        self.headers = ws.request.headers if ws.request else {}
        self.hello: dict[str, Any] | None = None
        self.texts: list[dict[str, Any]] = []  # every JSON message, hello included
        self.frames: list[bytes] = []  # every binary frame, as received (framed)
        self.version = 1
        self.closed = False

    def packets(self) -> list[bytes]:
        """Uplink frames deframed per the version the client announced (asserting the header)."""
        out = []
        for f in self.frames:
            if self.version == 2:
                ver, typ, reserved, ts, size = struct.unpack(">HHIII", f[:16])
                assert (ver, typ, reserved, ts, size) == (2, 0, 0, 0, len(f) - 16)
                out.append(f[16:])
            elif self.version == 3:
                typ, reserved, size = struct.unpack(">BBH", f[:4])
                assert (typ, reserved, size) == (0, 0, len(f) - 4)
                out.append(f[4:])
            else:
                out.append(f)
        return out

    async def wait(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"fake server: condition not met in {within} s; texts={self.texts[-5:]}")
            await asyncio.sleep(0.005)

    async def wait_json(self, type_: str, state: str | None = None, within: float = 5.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for m in self.texts:
                if m.get("type") == type_ and (state is None or m.get("state") == state):
                    return m
            return None

        await self.wait(lambda: found() is not None, within)
        msg = found()
        assert msg is not None
        return msg

    async def send_json(self, obj: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(obj))

    def frame(self, packet: bytes, timestamp: int = 0) -> bytes:
        if self.version == 2:
            return struct.pack(">HHIII", 2, 0, 0, timestamp, len(packet)) + packet
        if self.version == 3:
            return struct.pack(">BBH", 0, 0, len(packet)) + packet
        return packet

    async def send_audio(self, packet: bytes, timestamp: int = 0) -> None:
        await self.ws.send(self.frame(packet, timestamp))

    async def mcp(self, method: str, params: dict[str, Any] | None = None, req_id: Any = 1) -> dict[str, Any] | None:
        """Send a JSON-RPC request to the device; its reply payload, or None if none came in 0.5 s."""
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            payload["params"] = params
        seen = len(self.texts)
        await self.send_json({"type": "mcp", "payload": payload})  # no session_id, like XS
        try:
            await self.wait(
                lambda: any(m.get("type") == "mcp" and m["payload"].get("id") == req_id for m in self.texts[seen:]),
                0.5,
            )
        except AssertionError:
            return None
        reply = next(m for m in self.texts[seen:] if m.get("type") == "mcp" and m["payload"].get("id") == req_id)
        assert reply["session_id"] == "S1"
        return reply["payload"]

    async def reply_turn(
        self,
        stt: str = "what time is it",
        sentences: tuple[tuple[str, int], ...] = (("It is noon.", 5), ("Bye.", 3)),
        emotion: str = "happy",
        pace_s: float = 0.0,
    ) -> None:
        """The canonical reply (docs/protocol.md §2.10): stt, tts/start, llm, per sentence start + audio, stop."""
        sid = {"session_id": "S1"}
        await self.send_json({**sid, "type": "stt", "text": stt})
        await self.send_json({**sid, "type": "tts", "state": "start"})
        await self.send_json({**sid, "type": "llm", "text": "\U0001f60a", "emotion": emotion})
        ts = 0
        for text, count in sentences:
            await self.send_json({**sid, "type": "tts", "state": "sentence_start", "text": text})
            for packet in opus_packets(count=count):
                ts += 60
                await self.send_audio(packet, ts)
                if pace_s:
                    await asyncio.sleep(pace_s)
        await self.send_json({**sid, "type": "tts", "state": "stop"})


class FakeXiaozhiServer:
    """FAKE Xiaozhi server, used ONLY to test DeviceClient. Answers the hello (configurable), records
    everything and lets the test script the rest. With ``autoreply`` it answers a listen/detect or a
    listen/stop with ``reply_turn()``."""

    def __init__(
        self,
        *,
        send_hello: bool = True,
        hello_transport: str = "websocket",
        audio_params: dict[str, Any] | None = SERVER_HELLO_PARAMS,
        autoreply: bool = False,
    ) -> None:
        self.send_hello = send_hello
        self.hello_transport = hello_transport
        self.audio_params = audio_params
        self.autoreply = autoreply
        self.connections: asyncio.Queue[FakeConnection] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/xiaozhi/v1/"

    async def __aenter__(self) -> FakeXiaozhiServer:
        self._server = await serve(self._handler, "127.0.0.1", 0, ping_interval=None, max_size=None, compression=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        self._server.close()
        await self._server.wait_closed()

    async def connection(self, within: float = 5.0) -> FakeConnection:
        return await asyncio.wait_for(self.connections.get(), within)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handler(self, ws: ServerConnection) -> None:
        conn = FakeConnection(ws)
        self.connections.put_nowait(conn)
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    conn.frames.append(message)
                    continue
                msg = json.loads(message)
                conn.texts.append(msg)
                if msg.get("type") == "hello" and conn.hello is None:
                    conn.hello = msg
                    conn.version = msg.get("version", 1)
                    if self.send_hello:
                        hello: dict[str, Any] = {"type": "hello", "transport": self.hello_transport, "session_id": "S1"}
                        if self.audio_params is not None:
                            hello["audio_params"] = self.audio_params
                        await ws.send(json.dumps(hello))
                elif self.autoreply and msg.get("type") == "listen" and msg.get("state") in ("detect", "stop"):
                    self._spawn(conn.reply_turn())
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True


# --------------------------------------------------------------------------------------------------
# hello exchange
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("token", "authorization"), [("", None), ("tok123", "Bearer tok123"), ("Basic x y", "Basic x y")]
)
async def test_hello_exchange_with_firmware_headers(token: str, authorization: str | None) -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url, device_id="d8:3b:da:12:34:56", client_id="c-1", token=token)
        await client.connect()
        try:
            conn = await fake.connection()
            assert conn.path == "/xiaozhi/v1/"
            assert conn.headers.get("Authorization") == authorization
            assert conn.headers["Protocol-Version"] == "1"
            assert conn.headers["Device-Id"] == "d8:3b:da:12:34:56"
            assert conn.headers["Client-Id"] == "c-1"
            assert "Sec-WebSocket-Extensions" not in conn.headers, "firmware offers no extensions"
            assert conn.hello == {
                "type": "hello",
                "version": 1,
                "features": {"mcp": True},
                "transport": "websocket",
                "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60},
            }
            assert client.session_id == "S1"
            assert client.server_audio_params == SERVER_HELLO_PARAMS
            assert client.hello_latency_ms is not None and 0 <= client.hello_latency_ms < 2000
            assert (client.downlink_rate, client.downlink_frame_ms) == (24000, 60)
            assert not client.closed
        finally:
            await client.close()
        assert client.closed and client.close_code == 1000


async def test_query_string_mode_for_clients_without_headers() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url, device_id="aa:bb", client_id="cid", token="t0k", headers_in_query=True)
        await client.connect()
        try:
            conn = await fake.connection()
            parts = urlsplit(conn.path)
            assert parts.path == "/xiaozhi/v1/"
            assert parse_qs(parts.query) == {
                "device-id": ["aa:bb"],
                "client-id": ["cid"],
                "authorization": ["Bearer t0k"],
            }
            for header in ("Device-Id", "Client-Id", "Authorization"):
                assert header not in conn.headers
            assert client.session_id == "S1"
        finally:
            await client.close()


async def test_old_firmware_hello_without_features_and_defaults() -> None:
    # No audio_params in the server hello: the firmware decodes at 24000 Hz / 60 ms.
    async with FakeXiaozhiServer(audio_params=None) as fake:
        client = DeviceClient(fake.url, features=None, frame_ms=20, protocol_version=3)
        await client.connect()
        try:
            conn = await fake.connection()
            assert conn.hello is not None and "features" not in conn.hello
            assert conn.hello["version"] == 3 and conn.hello["audio_params"]["frame_duration"] == 20
            assert client.server_audio_params is None
            assert (client.downlink_rate, client.downlink_frame_ms) == (24000, 60)
        finally:
            await client.close()


@pytest.mark.parametrize("mode", ["no hello", "wrong transport"])
async def test_no_valid_server_hello_raises_clearly(mode: str) -> None:
    kwargs = {"send_hello": False} if mode == "no hello" else {"hello_transport": "udp"}
    async with FakeXiaozhiServer(**kwargs) as fake:
        client = DeviceClient(fake.url, hello_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(HelloTimeout, match="no server hello"):
            await client.connect()
        assert time.monotonic() - started < 3
        assert client.closed


async def test_refused_upgrade_raises_clearly() -> None:
    async with FakeXiaozhiServer() as fake:
        port = fake.port
    client = DeviceClient(f"ws://127.0.0.1:{port}/xiaozhi/v1/")
    with pytest.raises(Exception, match="cannot open WebSocket"):
        await client.connect()


# --------------------------------------------------------------------------------------------------
# the device MCP server
# --------------------------------------------------------------------------------------------------
async def test_mcp_initialize_paginated_tools_list_and_calls() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url, tools_page_size=2)
        await client.connect()
        try:
            conn = await fake.connection()
            init = await conn.mcp("initialize", {"capabilities": {"vision": {"url": "http://x/v", "token": "T"}}}, 1)
            assert init == {
                "jsonrpc": "2.0",
                "id": 1,
                "result": {
                    "protocolVersion": "2024-11-05",
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "sim-board", "version": "2.4.2"},
                },
            }
            assert client.mcp_initialize_params == {"capabilities": {"vision": {"url": "http://x/v", "token": "T"}}}

            names: list[str] = []
            pages = []
            cursor = ""
            req_id = 2
            while True:
                reply = await conn.mcp("tools/list", {"cursor": cursor, "withUserTools": False}, req_id)
                assert reply is not None
                result = reply["result"]
                pages.append(len(result["tools"]))
                names += [t["name"] for t in result["tools"]]
                for t in result["tools"]:
                    assert set(t) == {"name", "description", "inputSchema"}
                cursor = result["nextCursor"]
                req_id += 1
                if not cursor:
                    break
                assert cursor == client.tools[len(names)]["name"], "nextCursor is the name of the next tool"
            assert pages == [2, 2]
            assert names == [
                "self.get_device_status",
                "self.audio_speaker.set_volume",
                "self.screen.set_brightness",
                "self.screen.set_theme",
            ]

            ok = await conn.mcp(
                "tools/call", {"name": "self.audio_speaker.set_volume", "arguments": {"volume": 30}}, 10
            )
            assert ok == {
                "jsonrpc": "2.0",
                "id": 10,
                "result": {"content": [{"type": "text", "text": "true"}], "isError": False},
            }
            assert client.state["volume"] == 30
            assert client.tool_calls[-1]["name"] == "self.audio_speaker.set_volume"
            assert client.tool_calls[-1]["arguments"] == {"volume": 30}

            await conn.mcp("tools/call", {"name": "self.screen.set_brightness", "arguments": {"brightness": 10}}, 11)
            assert client.state["brightness"] == 10
            status = await conn.mcp("tools/call", {"name": "self.get_device_status", "arguments": {}}, 12)
            assert status is not None
            assert json.loads(status["result"]["content"][0]["text"])["audio_speaker"]["volume"] == 30

            unknown = await conn.mcp("tools/call", {"name": "self.fly", "arguments": {}}, 13)
            assert (
                unknown is not None and unknown["error"]["code"] == -32601 and "self.fly" in unknown["error"]["message"]
            )
            bad = await conn.mcp(
                "tools/call", {"name": "self.audio_speaker.set_volume", "arguments": {"volume": 200}}, 14
            )
            assert bad is not None and "error" in bad and client.state["volume"] == 30
            assert client.mcp_protocol_violations == 0

            # A string id is rejected without a reply (FW mcp_server.cc); notifications get no reply.
            assert await conn.mcp("tools/list", {}, "15") is None
            assert client.mcp_protocol_violations == 1
            seen = len(conn.texts)
            await conn.send_json({"type": "mcp", "payload": {"jsonrpc": "2.0", "method": "notifications/initialized"}})
            assert await conn.mcp("tools/list", {"cursor": "self.screen.set_theme"}, 16) is not None
            assert [m["payload"]["id"] for m in conn.texts[seen:]] == [16]
            assert client.mcp_protocol_violations == 1
        finally:
            await client.close()


# --------------------------------------------------------------------------------------------------
# a reply turn
# --------------------------------------------------------------------------------------------------
async def test_speech_turn_uplink_and_reply_summary() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url)
        await client.connect()
        try:
            conn = await fake.connection()
            await client.listen_start("auto")
            client.turn_reset()
            utterance = tone(16000, 0.5)  # 8000 samples -> 9 frames of 960 (last zero-padded)
            sent = await client.send_speech(utterance, trailing_silence_ms=600, realtime=False)
            assert sent == 9 + 10
            assert client.speech_end_at is not None
            listen = await conn.wait_json("listen", "start")
            assert listen == {"session_id": "S1", "type": "listen", "state": "start", "mode": "auto"}
            await conn.wait(lambda: len(conn.frames) == 19)
            dec = opuslib_next.Decoder(16000, 1)
            pcm = np.concatenate([np.frombuffer(dec.decode(p, 960), np.int16) for p in conn.packets()])
            assert pcm.size == 19 * 960
            assert rms(pcm[:8000]) > 2000 and rms(pcm[-4800:]) < 200

            await conn.reply_turn()
            turn = await client.wait_turn_end(5)
            assert turn.order == [
                "stt",
                "tts:start",
                "llm",
                "tts:sentence_start",
                "audio",
                "tts:sentence_start",
                "audio",
                "tts:stop",
            ]
            assert turn.stt_text == "what time is it"
            assert turn.sentences == ["It is noon.", "Bye."]
            assert turn.emotion == "happy"
            assert turn.audio_packets == 8
            assert turn.sample_rate == 24000
            assert turn.pcm.dtype == np.int16 and turn.pcm.size == 8 * 1440
            assert rms(turn.pcm[1440:]) > 1000, "decoded reply should be the tone, not silence"
            assert turn.stt_ms is not None and turn.first_audio_ms is not None and turn.tts_stop_ms is not None
            assert 0 <= turn.stt_ms <= turn.first_audio_ms <= turn.tts_stop_ms
            assert turn.max_queue_depth == client.max_queue_depth == 8  # sent as a burst: nothing played yet
            assert (client.audio_before_start, client.audio_after_stop, client.decode_errors) == (0, 0, 0)
            assert client.device_state == "listening"  # auto mode: back to listening after tts/stop
        finally:
            await client.close()


async def test_trailing_silence_stops_when_tts_starts() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url, frame_ms=60)
        await client.connect()
        try:
            conn = await fake.connection()
            await client.listen_start("auto")

            async def server() -> None:
                await conn.wait(lambda: len(conn.frames) >= 7)  # 5 speech frames + a little silence
                await conn.send_json({"session_id": "S1", "type": "stt", "text": "hi"})
                await conn.send_json({"session_id": "S1", "type": "tts", "state": "start"})

            task = asyncio.create_task(server())
            started = time.monotonic()
            sent = await client.send_speech(tone(16000, 0.3), trailing_silence_ms=3000, realtime=True)
            elapsed = time.monotonic() - started
            await task
            assert 7 <= sent < 15, sent
            assert elapsed < 1.5
            assert client.speech_end_at is not None and client.speech_end_at - started >= 0.2  # paced
        finally:
            await client.close()


async def test_realtime_pacing_of_uplink() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url, frame_ms=20)
        await client.connect()
        try:
            packets = client.encode_speech(tone(16000, 0.4))
            assert len(packets) == 20
            started = time.monotonic()
            assert await client.send_opus_packets(packets, realtime=True) == 20
            # 19 gaps of 20 ms: paced, never faster (the upper bound only leaves room for a busy machine).
            assert 0.35 <= time.monotonic() - started < 1.0
            started = time.monotonic()
            assert await client.wake_word_burst(tone(16000, 2.0)) == 100
            assert time.monotonic() - started < 1.0  # a burst: paced, 100 packets would take 1.98 s
        finally:
            await client.close()


async def test_audio_outside_speaking_state_is_counted_and_dropped() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url)
        await client.connect()
        try:
            conn = await fake.connection()
            await client.listen_start("auto")
            client.turn_reset()
            await client.listen_detect("hello")
            packets = opus_packets(count=6)
            await conn.send_audio(packets[0])  # before tts/start: dropped
            await conn.send_json({"session_id": "S1", "type": "tts", "state": "start"})
            for p in packets[1:4]:
                await conn.send_audio(p)
            await conn.send_json({"session_id": "S1", "type": "tts", "state": "stop"})
            for p in packets[4:]:
                await conn.send_audio(p)  # after tts/stop: dropped
            turn = await client.wait_turn_end(5)
            await client.wait_for(lambda e: client.audio_after_stop == 2, 5)
            assert client.audio_before_start == 1
            assert client.audio_after_stop == 2
            assert turn.audio_packets == 3 and turn.pcm.size == 3 * 1440
            assert turn.dropped_packets == 1
            assert turn.order == ["audio", "tts:start", "audio", "tts:stop"]
            assert turn.stt_ms is None and turn.first_audio_ms is not None
            assert [e.dropped for e in client.events if e.kind == "audio"] == [
                "before_start",
                "",
                "",
                "",
                "after_stop",
                "after_stop",
            ]
        finally:
            await client.close()


async def test_decode_queue_overflow_and_paced_depth() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url)
        await client.connect()
        try:
            conn = await fake.connection()
            await client.listen_start("auto")
            # Paced like XS: 5 packets at once, then one per 60 ms -> the queue stays ~5 deep.
            await conn.send_json({"session_id": "S1", "type": "tts", "state": "start"})
            for i, p in enumerate(opus_packets(count=12)):
                await conn.send_audio(p)
                if i >= 4:
                    await asyncio.sleep(0.06)
            await conn.send_json({"session_id": "S1", "type": "tts", "state": "stop"})
            paced = await client.wait_turn_end(5)
            assert 5 <= paced.max_queue_depth <= 7, paced.max_queue_depth
            assert client.queue_full_drops == 0

            # 45 packets at once: the firmware queue holds 40, the rest are dropped.
            await client.listen_start("auto")
            await conn.send_json({"session_id": "S1", "type": "tts", "state": "start"})
            for p in opus_packets(count=45):
                await conn.send_audio(p)
            await conn.send_json({"session_id": "S1", "type": "tts", "state": "stop"})
            burst = await client.wait_turn_end(5)
            assert client.max_queue_depth == 40 == burst.max_queue_depth
            assert client.queue_full_drops == 5
            assert burst.audio_packets == 40 and burst.dropped_packets == 5
        finally:
            await client.close()


async def test_packet_longer_than_announced_frame_fails_to_decode() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url)
        await client.connect()
        try:
            conn = await fake.connection()
            await client.listen_start("auto")
            await conn.send_json({"session_id": "S1", "type": "tts", "state": "start"})
            await conn.send_audio(opus_packets(frame_ms=120, count=1)[0])  # 120 ms, hello said 60
            await conn.send_audio(opus_packets(count=1)[0])
            await conn.send_json({"session_id": "S1", "type": "tts", "state": "stop"})
            turn = await client.wait_turn_end(5)
            assert client.decode_errors == 1
            assert turn.audio_packets == 1 and turn.dropped_packets == 1
        finally:
            await client.close()


@pytest.mark.parametrize("version", [2, 3])
async def test_v2_v3_framing_both_directions(version: int) -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url, protocol_version=version)
        await client.connect()
        try:
            conn = await fake.connection()
            assert conn.headers["Protocol-Version"] == str(version)
            assert conn.hello is not None and conn.hello["version"] == version
            await client.listen_start("manual")
            client.turn_reset()
            await client.send_speech(tone(16000, 0.3), trailing_silence_ms=0, realtime=False)
            await client.listen_stop()
            await conn.wait_json("listen", "stop")
            await conn.wait(lambda: len(conn.frames) == 5)
            dec = opuslib_next.Decoder(16000, 1)
            assert sum(len(dec.decode(p, 960)) for p in conn.packets()) == 5 * 960 * 2  # headers checked too

            await conn.reply_turn(sentences=(("One.", 4),))
            turn = await client.wait_turn_end(5)
            assert turn.audio_packets == 4 and turn.pcm.size == 4 * 1440
            assert rms(turn.pcm[1440:]) > 1000
            stamps = [e.timestamp for e in client.events if e.kind == "audio"]
            assert stamps == ([60, 120, 180, 240] if version == 2 else [None] * 4)
            assert client.framing_errors == 0
            assert client.device_state == "idle"  # manual mode: idle after tts/stop

            # A frame whose payload_size does not match is a framing error, not audio.
            await conn.send_json({"session_id": "S1", "type": "tts", "state": "start"})
            bad = conn.frame(opus_packets(count=1)[0])
            await conn.ws.send(bad[:-5] if version == 2 else bad[:3])
            await client.wait_for(lambda e: client.framing_errors == 1, 5)
        finally:
            await client.close()


# --------------------------------------------------------------------------------------------------
# messages, waiting, closing
# --------------------------------------------------------------------------------------------------
async def test_device_messages_are_firmware_shaped() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url)
        await client.connect()
        try:
            conn = await fake.connection()
            await client.listen_detect("hello xiaozhi")
            await client.listen_start("realtime")
            await client.listen_stop()
            await client.abort()
            await client.abort("wake_word_detected")
            await client.send_json({"type": "ping"})
            await client.send_raw_text("{not json")  # the fake would choke on it: send it last
            await conn.wait(lambda: len(conn.texts) == 7)
            assert conn.texts[1:] == [
                {"session_id": "S1", "type": "listen", "state": "detect", "text": "hello xiaozhi"},
                {"session_id": "S1", "type": "listen", "state": "start", "mode": "realtime"},
                {"session_id": "S1", "type": "listen", "state": "stop"},
                {"session_id": "S1", "type": "abort"},
                {"session_id": "S1", "type": "abort", "reason": "wake_word_detected"},
                {"type": "ping"},
            ]
        finally:
            await client.close()


async def test_auto_listen_sends_listen_start_after_tts_stop() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url, auto_listen=True)
        await client.connect()
        try:
            conn = await fake.connection()
            await client.listen_start("auto")
            await conn.reply_turn(sentences=(("Hi.", 2),))
            await client.wait_turn_end(5)
            await conn.wait(lambda: sum(m.get("state") == "start" and m["type"] == "listen" for m in conn.texts) == 2)
        finally:
            await client.close()


async def test_server_close_is_recorded_and_waits_fail_fast() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url)
        await client.connect()
        conn = await fake.connection()
        await conn.send_json({"session_id": "S1", "type": "stt", "text": "x"})
        await client.wait_json("stt", timeout=5)
        await conn.ws.close(4000, "bye")
        started = time.monotonic()
        with pytest.raises(ChannelClosed, match="4000"):
            await client.wait_json("tts", "stop", timeout=10)
        assert time.monotonic() - started < 2
        assert client.closed and client.close_code == 4000 and client.close_reason == "bye"
        with pytest.raises(ChannelClosed):
            await client.send_json({"type": "listen"})
        assert await client.send_opus_packets(client.encode_speech(tone(16000, 0.2))) == 0
        with pytest.raises(ChannelClosed):
            await client.wait_for(lambda e: False, 0.1)
        await client.close()
        await client.close()  # idempotent


async def test_wait_timeout_names_the_last_messages() -> None:
    async with FakeXiaozhiServer() as fake:
        client = DeviceClient(fake.url)
        await client.connect()
        try:
            conn = await fake.connection()
            await conn.send_json({"session_id": "S1", "type": "stt", "text": "something"})
            await client.wait_json("stt", timeout=5)
            with pytest.raises(TimeoutError, match="something"):
                await client.wait_turn_end(0.2)
        finally:
            await client.close()


# --------------------------------------------------------------------------------------------------
# the xiaozhi-device CLI
# --------------------------------------------------------------------------------------------------
async def test_cli_text_turn_saves_reply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeXiaozhiServer(autoreply=True) as fake:
        out = tmp_path / "reply.wav"
        rc = await asyncio.to_thread(cli.main, ["--url", fake.url, "--text", "what time is it", "--out", str(out)])
        conn = await fake.connection()
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert {"session_id": "S1", "type": "listen", "state": "detect", "text": "what time is it"} in conn.texts
    assert "'what time is it'" in captured.out and "'It is noon.'" in captured.out and "happy" in captured.out
    assert "-> first audio" in captured.out and "8 packets" in captured.out
    with wave.open(str(out), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (24000, 1, 8 * 1440)


async def test_cli_wav_manual_mode_v3_two_turns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    question = tmp_path / "q.wav"
    stereo = np.stack([tone(44100, 0.3), tone(44100, 0.3)], axis=1)
    with wave.open(str(question), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(stereo.tobytes())
    async with FakeXiaozhiServer(autoreply=True) as fake:
        out = tmp_path / "r.wav"
        argv = ["--url", fake.url, "--wav", str(question), "--mode", "manual", "--protocol-version", "3"]
        argv += ["--out", str(out), "--turns", "2", "--device-id", "aa:00", "--token", "tk"]
        rc = await asyncio.to_thread(cli.main, argv)
        conn = await fake.connection()
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert conn.headers["Device-Id"] == "aa:00" and conn.headers["Authorization"] == "Bearer tk"
    assert sum(m.get("state") == "stop" and m["type"] == "listen" for m in conn.texts) == 2
    assert len(conn.packets()) == 2 * 5  # 0.3 s at 60 ms, no trailing silence in manual mode
    assert (tmp_path / "r-1.wav").is_file() and (tmp_path / "r-2.wav").is_file()
    assert "turn 2/2" in captured.out


async def test_cli_timeout_and_connection_errors_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeXiaozhiServer(autoreply=False) as fake:
        rc = await asyncio.to_thread(cli.main, ["--url", fake.url, "--text", "hi", "--timeout", "0.3"])
        port = fake.port
    assert rc == 1
    assert "no tts/stop within 0.3 s" in capsys.readouterr().err
    rc = await asyncio.to_thread(cli.main, ["--url", f"ws://127.0.0.1:{port}/xiaozhi/v1/", "--text", "hi"])
    assert rc == 1
    assert "cannot open WebSocket" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# speech helpers
# --------------------------------------------------------------------------------------------------
def test_load_wav_16k_any_rate_and_channels(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    left = tone(44100, 1.0, 300)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.stack([left, left], axis=1).tobytes())
    pcm = speech.load_wav_16k(path)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(pcm.size - 16000) <= 2
    assert math.isclose(rms(pcm[1000:-1000]), rms(left), rel_tol=0.05)


def test_synthesize_16k_is_cached_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XIAOZHI_SPEECH_CACHE", str(tmp_path))
    pcm = speech.synthesize_16k("What time is it?")
    assert pcm.dtype == np.int16 and 0.5 < pcm.size / 16000 < 4
    assert rms(pcm) > 500
    assert len(list(tmp_path.glob("*.wav"))) == 1

    def no_voice() -> None:
        raise AssertionError("cached text must not load the voice")

    monkeypatch.setattr(speech, "_load_voice", no_voice)
    again = speech.synthesize_16k("What time is it?")
    assert np.array_equal(pcm, again)
