"""Fuzzing a running edge node: WebSocket frames before and after the hello, and the OTA endpoint.

One real edge process (models loaded) for the module. For each protocol version 1/2/3 announced in
the hello, hypothesis sends text and binary frames (random, near-valid, raw-mutated, framed audio)
before and after the hello; then a ``listen``/``ping`` round trip must work, unless the edge closed
the connection with a documented code for something the frames did: 1009 for a frame over
64 KiB, 1000 "goodbye" after a goodbye. Anything else (a close without a close frame, a crashed
session, a dead process) fails. Meanwhile a well-behaved device on the same edge keeps completing
full spoken turns, and must not notice.

Unlike tests/edge/test_bad_input.py, which checks each kind of bad input once with its log
line, this throws many generated inputs at the edge and checks only that it stays up and correct.
Frames that would start an LLM/TTS turn (``listen/detect`` with text) are left out: they are valid,
tested elsewhere, and would make each example seconds long on a 2-core CI box.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from shared.client.device import DeviceClient
from shared.protocol import ProtocolError, framing
from shared.protocol import messages as msgs
from tests.conftest import EdgeProcess, start_edge, stop_edge
from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.targets import client_frames, expected_ota, hostile_client_message, ota_request

MAX_FRAME = 65536  # the edge's default server.max_frame_bytes
MAX_OTA_BODY = 64 * 1024  # edge_node/http_api.py
LIVE_WEIGHT = 0.25  # x the profile's max_examples, per protocol version: 75 connections each in CI
OTA_WEIGHT = 0.5
CRASH_MARKERS = ("session crashed", "Traceback", "unexpected internal error", "Error handling request")
_device_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def fuzz_edge() -> Iterator[EdgeProcess]:
    node = start_edge("fuzz-edge")
    yield node
    stop_edge(node)


def _device_id() -> str:
    n = next(_device_numbers)
    return f"fz:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}:00:01"


def _hello(version: int) -> str:
    return json.dumps(
        {
            "type": "hello",
            "version": version,
            "transport": "websocket",
            "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60},
        }
    )


def _json_text(frame: str | bytes, version: int) -> str | None:
    """The frame's text as a JSON message would be read: a text frame as it is, a binary frame only
    when it is a v2 frame that carries JSON."""
    if isinstance(frame, str):
        return frame
    try:
        unpacked = framing.unpack_audio(frame, version)
    except ProtocolError:
        return None
    return unpacked.payload.decode("utf-8", errors="replace") if unpacked.is_json else None


def _as_message(frame: str | bytes, version: int) -> msgs.ClientMessage | None:
    """What the edge will make of a frame as a JSON message (a v2 binary frame may carry one)."""
    text = _json_text(frame, version)
    if text is None:
        return None
    try:
        return msgs.parse_client_message(text, MAX_FRAME)
    except ProtocolError:
        return None


def _starts_turn(frame: str | bytes, version: int) -> bool:
    """A ``listen/detect`` with a real text, which starts an LLM/TTS turn. Judged with plain ``json``,
    not the parser under test: a text the edge must refuse (a lone surrogate) is not skipped."""
    text = _json_text(frame, version)
    if text is None:
        return False
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return False
    if not isinstance(obj, dict) or obj.get("type") != "listen" or obj.get("state") != "detect":
        return False
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _frames(version: int) -> st.SearchStrategy[str | bytes]:
    """Text and binary frames. Hostile messages (values that reach the session code) get two of the
    five shares: they are what found the session crashes; the rest only has to be survived."""
    audio = st.binary(min_size=1, max_size=300).map(lambda p: framing.pack_audio(p, version))
    hostile = hostile_client_message()
    frames = st.one_of(hostile, hostile, client_frames(), audio, st.binary(max_size=64))
    # About one frame in 40 ends the session the documented way: a goodbye, or a frame over 64 KiB (1009).
    enders = st.sampled_from(['{"type":"goodbye"}', "{" + " " * MAX_FRAME + "}", b"\x00" * (MAX_FRAME + 1)])
    return st.integers(0, 39).flatmap(lambda i: enders if i == 39 else frames)  # 0, the simplest, is a frame


async def _until(ws: ClientConnection, kind: str, count: int = 1, wait_s: float = 15.0) -> None:
    """Read until ``count`` JSON messages of ``type`` ``kind`` came (skipping audio and other JSON)."""
    async with asyncio.timeout(wait_s):
        while count:
            message = await ws.recv()
            if isinstance(message, str):
                obj = json.loads(message)
                count -= isinstance(obj, dict) and obj.get("type") == kind


async def _fuzz_connection(url: str, version: int, pre: list[str | bytes], post: list[str | bytes]) -> str:
    """One device connection: ``pre`` frames, the hello, ``post`` frames, then listen + ping -> pong."""
    allowed: dict[int, str] = {}  # close code -> why the frames sent so far allow it
    headers = {"Device-Id": _device_id(), "Client-Id": str(uuid.uuid4()), "Protocol-Version": str(version)}
    async with connect(
        url,
        additional_headers=headers,
        max_size=None,
        compression=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=2,
        user_agent_header=None,
    ) as ws:
        try:
            for frame in pre:
                if len(frame.encode() if isinstance(frame, str) else frame) > MAX_FRAME:
                    allowed[1009] = "oversize frame"
                await ws.send(frame)
            await ws.send(_hello(version))
            await _until(ws, "hello")
            pings = 1
            for frame in post:
                message = _as_message(frame, version)
                if len(frame.encode() if isinstance(frame, str) else frame) > MAX_FRAME:
                    allowed[1009] = "oversize frame"
                elif isinstance(message, msgs.Goodbye):
                    allowed[1000] = "goodbye"
                elif isinstance(message, msgs.Ping):
                    pings += 1
                elif isinstance(message, msgs.Hello):
                    version = message.version  # a repeated hello renegotiates the framing
                await ws.send(frame)
            await ws.send(json.dumps({"type": "listen", "state": "start", "mode": "auto"}))
            await ws.send(json.dumps({"type": "ping"}))
            await _until(ws, "pong", pings)
            return "usable"
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            assert rcvd is not None, f"edge dropped the connection without a close frame: {exc}"
            assert rcvd.code in allowed, f"closed with {rcvd.code} {rcvd.reason!r}; frames allow {allowed or 'none'}"
            assert rcvd.reason, f"close {rcvd.code} without a reason"
            if rcvd.code == 1000:
                assert rcvd.reason == "goodbye", rcvd.reason
            return f"closed:{rcvd.code}"


class _HealthyDevice(threading.Thread):
    """A well-behaved device on its own thread and event loop: full spoken turns, one after another,
    for as long as the fuzzing runs (at least one)."""

    def __init__(self, url: str, version: int) -> None:
        super().__init__(name=f"healthy-device-v{version}", daemon=True)
        self.url = url
        self.version = version
        self.turns = 0
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            while True:
                client = DeviceClient(self.url, device_id=_device_id(), protocol_version=self.version)
                await client.connect()
                try:
                    await client.listen_start("auto")
                    client.turn_reset()
                    await client.listen_detect("what time is it")
                    turn = await client.wait_turn_end(90)
                    assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0, f"turn {turn.order}"
                    assert not client.framing_errors and not client.invalid_json, client.violations
                finally:
                    await client.close()
                self.turns += 1
                for _ in range(20):  # a pause between turns: the fuzzing gets the CPU
                    if self._stopping.is_set():
                        return
                    await asyncio.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finish(self, wait_s: float) -> None:
        self._stopping.set()
        self.join(wait_s)
        assert not self.is_alive(), "the healthy device's turn did not finish"


def _assert_edge_healthy(edge: EdgeProcess, offset: int) -> None:
    assert edge.proc.poll() is None, f"edge exited with {edge.proc.returncode}"
    log = edge.log_text()[offset:]
    for marker in CRASH_MARKERS:
        assert marker not in log, f"edge log has {marker!r}:\n{log[log.index(marker) - 500 : log.index(marker) + 2500]}"


@pytest.mark.parametrize("version", [1, 2, 3])
def test_edge_survives_fuzzed_frames(fuzz_edge: EdgeProcess, version: int) -> None:
    offset = fuzz_edge.log_offset()
    healthy = _HealthyDevice(fuzz_edge.url, version)
    healthy.start()
    outcomes: collections.Counter[str] = collections.Counter()
    frames = _frames(version)

    @fuzz_settings(LIVE_WEIGHT)
    @given(
        pre=st.lists(frames.filter(lambda f: not isinstance(_as_message(f, version), msgs.Hello)), max_size=3),
        post=st.lists(frames.filter(lambda f: not _starts_turn(f, version)), min_size=2, max_size=8),
    )
    def one_connection(pre: list[str | bytes], post: list[str | bytes]) -> None:
        outcomes[asyncio.run(_fuzz_connection(fuzz_edge.url, version, pre, post))] += 1
        assert fuzz_edge.proc.poll() is None, "edge process died"

    try:
        one_connection()
    finally:
        healthy.finish(120)
    assert healthy.error is None, f"the well-behaved device was disturbed: {healthy.error!r}"
    assert healthy.turns >= 1
    assert outcomes["usable"] > sum(outcomes.values()) // 2, outcomes  # the property was really exercised
    _assert_edge_healthy(fuzz_edge, offset)


def test_ota_endpoint_answers_fuzzed_requests_with_200_or_4xx(fuzz_edge: EdgeProcess) -> None:
    """Random and near-valid OTA requests: exactly the requests docs/protocol.md §1 can answer get 200
    with a websocket section; the rest a 400 with a JSON error (413 for bodies over 64 KiB). Never 5xx."""
    offset = fuzz_edge.log_offset()
    url = f"{fuzz_edge.http}/xiaozhi/ota/"
    printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
    too_big = st.tuples(
        st.just([("Device-Id", "d8:3b:da:00:00:99")]), st.integers(MAX_OTA_BODY + 1, 80_000).map(lambda n: b"x" * n)
    )
    requests = st.one_of(ota_request(header_text=printable), ota_request(header_text=printable), too_big)
    statuses: collections.Counter[int] = collections.Counter()

    with httpx.Client(timeout=15) as client:
        del client.headers["User-Agent"]  # a device's User-Agent is part of the fuzzed input

        @fuzz_settings(OTA_WEIGHT)
        @given(requests)
        def one_request(example: tuple[list[tuple[str, str]], bytes]) -> None:
            raw_pairs, body = example
            # HTTP drops the whitespace around header values (httpx refuses to send it at all).
            pairs = [(k, v.strip(" \t")) for k, v in raw_pairs]
            response = client.post(url, headers=pairs, content=body)
            statuses[response.status_code] += 1
            assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
            if len(body) > MAX_OTA_BODY:
                assert response.status_code == 413 and "bytes" in response.json()["error"]
                return
            expected = expected_ota(CIMultiDict(pairs), body)
            answer: Any = response.json()
            if expected is None:
                assert response.status_code == 400 and isinstance(answer.get("error"), str) and answer["error"]
                return
            assert response.status_code == 200, f"{response.status_code} {answer} for {expected}"
            assert answer["firmware"]["version"] == (expected[1] or "0.0.0")
            assert answer["websocket"]["url"].startswith("ws") and "mqtt" not in answer

        one_request()
        assert client.get(f"{fuzz_edge.http}/health").status_code == 200
    assert statuses[200] and statuses[400], statuses
    _assert_edge_healthy(fuzz_edge, offset)
