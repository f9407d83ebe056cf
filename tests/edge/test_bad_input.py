"""Bad input gets a clear logged error and loses nothing: other sessions keep working.

Each test runs a healthy device turn next to the misbehaving one and checks the healthy turn
completes, and that the server log names the bad device and the problem.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from shared.client.device import DeviceClient
from tests.conftest import EdgeProcess
from tests.edge.helpers import HELLO, RawPeer

pytestmark = pytest.mark.slow


async def _healthy_turn(edge: EdgeProcess, device_id: str) -> None:
    client = DeviceClient(edge.url, device_id=device_id)
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect("what time is it")
        turn = await client.wait_turn_end(60)
        assert turn.order[-1] == "tts:stop" and turn.audio_packets > 0
    finally:
        await client.close()


async def _same_session_still_answers(client: DeviceClient) -> None:
    await client.listen_start("auto")
    client.turn_reset()
    await client.listen_detect("what time is it")
    turn = await client.wait_turn_end(60)
    assert turn.audio_packets > 0


async def test_invalid_json_is_logged_and_session_continues(edge: EdgeProcess) -> None:
    offset = edge.log_offset()
    client = DeviceClient(edge.url, device_id="bb:00:00:00:00:01")
    await client.connect()
    try:
        await client.send_raw_text('{"type": "listen", "state": ')
        log = edge.wait_for_log("invalid_json", after=offset)
        assert "device=bb:00:00:00:00:01" in log
        await asyncio.gather(_same_session_still_answers(client), _healthy_turn(edge, "bb:00:00:00:00:99"))
    finally:
        await client.close()


async def test_unknown_type_is_logged_and_ignored(edge: EdgeProcess) -> None:
    offset = edge.log_offset()
    client = DeviceClient(edge.url, device_id="bb:00:00:00:00:02")
    await client.connect()
    try:
        await client.send_json({"session_id": client.session_id, "type": "teleport", "where": "moon"})
        log = edge.wait_for_log("unknown_type", after=offset)
        assert "teleport" in log and "device=bb:00:00:00:00:02" in log
        await _same_session_still_answers(client)
    finally:
        await client.close()


async def test_binary_before_hello_is_dropped_with_an_error(edge: EdgeProcess) -> None:
    offset = edge.log_offset()
    peer = await RawPeer.connect(edge.ws_port, headers={"Device-Id": "bb:00:00:00:00:03"})
    try:
        await peer.send(b"\x01\x02\x03opus?", opcode=2)
        await peer.send(HELLO)
        opcode, payload = await peer.recv_frame(10)
        assert opcode == 1 and b'"hello"' in payload
        log = edge.wait_for_log("binary frame before hello", after=offset)
        assert "device=bb:00:00:00:00:03" in log
    finally:
        await peer.close()


async def test_oversize_frame_closes_only_that_connection(edge: EdgeProcess) -> None:
    offset = edge.log_offset()
    client = DeviceClient(edge.url, device_id="bb:00:00:00:00:04")
    await client.connect()
    other = asyncio.create_task(_healthy_turn(edge, "bb:00:00:00:00:98"))
    try:
        await client.send_binary(os.urandom(70_000))
        for _ in range(100):
            if client.closed:
                break
            await asyncio.sleep(0.05)
        assert client.closed and client.close_code == 1009
        log = edge.wait_for_log("larger than 65536 bytes", after=offset)
        assert "device=bb:00:00:00:00:04" in log
        await other
    finally:
        other.cancel()
        await client.close()


async def test_garbage_opus_is_logged_and_later_speech_works(edge: EdgeProcess) -> None:
    offset = edge.log_offset()
    client = DeviceClient(edge.url, device_id="bb:00:00:00:00:05")
    await client.connect()
    try:
        await client.listen_start("auto")
        for _ in range(10):
            await client.send_binary(b"\xff" * 40 + os.urandom(60))
        log = edge.wait_for_log("uplink audio", after=offset)
        assert "device=bb:00:00:00:00:05" in log
        await _same_session_still_answers(client)
    finally:
        await client.close()


async def test_no_hello_within_10_s_closes(edge: EdgeProcess) -> None:
    offset = edge.log_offset()
    peer = await RawPeer.connect(edge.ws_port, headers={"Device-Id": "bb:00:00:00:00:06"})
    try:
        healthy = asyncio.create_task(_healthy_turn(edge, "bb:00:00:00:00:97"))
        opcode, payload = await peer.recv_frame(15)
        assert opcode == 0x8, "expected a close frame"
        assert int.from_bytes(payload[:2], "big") == 1008
        log = edge.wait_for_log("no hello within 10 s", after=offset)
        assert "device=bb:00:00:00:00:06" in log
        await healthy
    finally:
        await peer.close()


async def test_device_that_never_speaks_is_closed_when_idle(edge: EdgeProcess) -> None:
    # The test node runs with idle_timeout_s = 6 (tests/conftest.py).
    offset = edge.log_offset()
    client = DeviceClient(edge.url, device_id="bb:00:00:00:00:07")
    await client.connect()
    await client.listen_start("auto")
    silence = client.encode_speech(__import__("numpy").zeros(16000 * 10, dtype="int16"))
    sender = asyncio.create_task(client.send_opus_packets(silence, realtime=True))
    try:
        for _ in range(200):
            if client.closed:
                break
            await asyncio.sleep(0.05)
        assert client.closed, "idle session was not closed"
        log = edge.wait_for_log("idle for", after=offset)
        assert "device=bb:00:00:00:00:07" in log
    finally:
        sender.cancel()
        await client.close()
