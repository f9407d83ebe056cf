"""docs/protocol.md §5, one test per checklist item that applies to a WebSocket edge node.

Real edge node process, real models, real sockets; the device side is the firmware-like
DeviceClient (an independent implementation of the wire format).
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
from opuslib_next import APPLICATION_VOIP, Encoder

from shared.client.device import DeviceClient
from tests.conftest import EdgeProcess
from tests.edge.helpers import HELLO, RawPeer, metric_value, rms, speech, words

pytestmark = pytest.mark.slow

OTA_HEADERS = {
    "Activation-Version": "1",
    "Device-Id": "d8:3b:da:12:34:56",
    "Client-Id": "9c2f7e1a-0000-4000-8000-000000000001",
    "User-Agent": "bread-compact-wifi/2.4.2",
    "Accept-Language": "en-US",
    "Content-Type": "application/json",
}
OTA_BODY = {
    "version": 2,
    "language": "en-US",
    "mac_address": "d8:3b:da:12:34:56",
    "uuid": "9c2f7e1a-0000-4000-8000-000000000001",
    "chip_model_name": "esp32s3",
    "application": {"name": "xiaozhi", "version": "2.4.2", "idf_version": "v5.5"},
    "board": {"type": "bread-compact-wifi", "name": "bread-compact-wifi", "ip": "192.168.1.23"},
}


# §5.1 -- OTA --------------------------------------------------------------------------------
async def test_ota_points_the_device_at_this_node(edge: EdgeProcess) -> None:
    async with httpx.AsyncClient() as http:
        before = time.time() * 1000
        r = await http.post(f"{edge.http}/xiaozhi/ota/", json=OTA_BODY, headers=OTA_HEADERS)
    assert r.status_code == 200
    body = r.json()
    assert "mqtt" not in body, "an mqtt key would switch the firmware to MQTT"
    assert body["websocket"]["url"] == edge.url
    assert isinstance(body["websocket"]["token"], str)
    assert before - 5000 <= body["server_time"]["timestamp"] <= time.time() * 1000 + 5000
    assert isinstance(body["server_time"]["timezone_offset"], int)
    assert body["firmware"] == {"version": "2.4.2", "url": "", "force": 0}
    assert "activation" not in body


async def test_ota_rejects_bad_bodies_clearly(edge: EdgeProcess) -> None:
    async with httpx.AsyncClient() as http:
        bad_json = await http.post(f"{edge.http}/xiaozhi/ota/", content=b"{not json", headers=OTA_HEADERS)
        no_id = await http.post(f"{edge.http}/xiaozhi/ota/", json={"version": 2})
        activate = await http.post(f"{edge.http}/xiaozhi/ota/activate", json={}, headers=OTA_HEADERS)
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    assert no_id.status_code == 400 and "Device-Id" in no_id.json()["error"]
    assert activate.status_code == 200


# §5.2 -- upgrade ----------------------------------------------------------------------------
async def test_upgrade_without_authorization_or_client_id(edge: EdgeProcess) -> None:
    started = time.monotonic()
    peer = await RawPeer.connect(edge.ws_port, headers={"Device-Id": "aa:bb:cc:00:00:02", "Protocol-Version": "1"})
    try:
        assert peer.status_line.startswith("HTTP/1.1 101")
        assert time.monotonic() - started < 10
        await peer.send(b'{"type":"hello","version":1,"transport":"websocket"}')  # no features (fw <= 1.6)
        opcode, payload = await peer.recv_frame(10)
        assert opcode == 1 and json.loads(payload)["type"] == "hello"
    finally:
        await peer.close()


async def test_wrong_path_is_refused_with_404(edge: EdgeProcess) -> None:
    peer = await RawPeer.connect(edge.ws_port, path="/not/xiaozhi/")
    assert peer.status_line.startswith("HTTP/1.1 404")
    await peer.close()


async def test_query_string_fallback_for_clients_without_headers(edge: EdgeProcess) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:03", headers_in_query=True)
    offset = edge.log_offset()
    await client.connect()
    try:
        assert client.session_id
        edge.wait_for_log("device=aa:bb:cc:00:00:03", after=offset)
    finally:
        await client.close()


# §5.3 -- server hello -------------------------------------------------------------------------
async def test_server_hello_announces_what_is_encoded(edge: EdgeProcess) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:04")
    await client.connect()
    try:
        assert client.hello_latency_ms < 10_000
        assert client.session_id
        assert client.server_audio_params == {
            "format": "opus",
            "sample_rate": 24000,
            "channels": 1,
            "frame_duration": 60,
        }
        # What is actually encoded: every packet decodes to exactly 60 ms at 24 kHz.
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect("what time is it")
        turn = await client.wait_turn_end(60)
        assert turn.audio_packets > 0
        assert turn.pcm.size == turn.audio_packets * 1440
    finally:
        await client.close()


# §5.4 -- no dependence on WebSocket pings --------------------------------------------------------
async def test_server_never_pings_and_keeps_a_silent_peer(edge: EdgeProcess) -> None:
    peer = await RawPeer.connect(edge.ws_port, headers={"Device-Id": "aa:bb:cc:00:00:05"})
    try:
        await peer.send(HELLO)
        seen: list[int] = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                opcode, _ = await peer.recv_frame(deadline - time.monotonic())
            except TimeoutError:
                break
            seen.append(opcode)
        assert 0x9 not in seen, "server sent a WebSocket ping"
        assert 0x8 not in seen, "server closed a connection that did not answer pings"
    finally:
        await peer.close()


# §5.5 -- uplink Opus: 20/40/60 ms, DTX, wake-word burst -------------------------------------------
@pytest.mark.parametrize("frame_ms", [20, 40, 60])
async def test_uplink_frame_durations(edge: EdgeProcess, frame_ms: int) -> None:
    client = DeviceClient(edge.url, device_id=f"aa:bb:cc:00:01:{frame_ms:02d}", frame_ms=frame_ms)
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.send_speech(speech("What time is it?"), realtime=False)
        turn = await client.wait_turn_end(60)
        assert "time" in words(turn.stt_text), turn.stt_text
    finally:
        await client.close()


async def test_dtx_packets_and_wake_word_burst(edge: EdgeProcess) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:06")
    await client.connect()
    try:
        encoder = Encoder(16000, 1, APPLICATION_VOIP)
        burst = client.encode_speech(speech("Hello Xiaozhi."))[:33]
        assert len(burst) > 10
        for _ in range(20):
            await client.send_binary(b"\x08")  # a 1-byte (TOC only) DTX packet
        await client.wake_word_burst(speech("Hello Xiaozhi."))
        client.turn_reset()
        await client.listen_detect("hello xiaozhi")
        turn = await client.wait_turn_end(60)
        assert turn.order[0] == "stt" and turn.order[-1] == "tts:stop"
        assert turn.audio_packets > 0
        silence = encoder.encode(np.zeros(960, dtype=np.int16).tobytes(), 960)
        await client.listen_start("auto")
        await client.send_binary(silence)
    finally:
        await client.close()


# §5.6 -- listening modes ------------------------------------------------------------------------
async def test_auto_mode_server_vad_ends_the_turn(edge: EdgeProcess) -> None:
    async with httpx.AsyncClient() as http:
        before = (await http.get(f"{edge.http}/metrics")).text
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:07")
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.send_speech(speech("What time is it?"), trailing_silence_ms=1500)
        turn = await client.wait_turn_end(60)
        assert "time" in words(turn.stt_text)
        assert turn.stt_ms < 5000, "VAD did not end the turn promptly"
    finally:
        await client.close()
    async with httpx.AsyncClient() as http:
        after = (await http.get(f"{edge.http}/metrics")).text
    # The transcript came from the ASR started during the end-of-speech wait.
    name = "xiaozhi_speculative_asr_total"
    assert metric_value(after, name, result="used") == metric_value(before, name, result="used") + 1


async def test_manual_mode_listen_stop_ends_the_turn(edge: EdgeProcess) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:08")
    await client.connect()
    try:
        await client.listen_start("manual")
        client.turn_reset()
        await client.send_speech(speech("What time is it?"), trailing_silence_ms=0)
        await client.listen_stop()
        turn = await client.wait_turn_end(60)
        assert "time" in words(turn.stt_text)
    finally:
        await client.close()


async def test_realtime_mode_voice_barges_in(edge: EdgeProcess) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:09")
    await client.connect()
    try:
        await client.listen_start("realtime")
        client.turn_reset()
        await client.listen_detect("Tell me a long story about a brave dragon and a little knight.")
        await client.wait_for(lambda e: e.kind == "audio", 60)
        stops_before = _count(client, "tts", "stop")
        await client.send_speech(speech("What time is it?"), trailing_silence_ms=1200)
        await client.wait_for(lambda e: _count(client, "tts", "stop") > stops_before, 10)
        # The next turn is the new utterance, answered in full.
        stt = await client.wait_for(
            lambda e: (
                e.kind == "json"
                and e.msg is not None
                and e.msg.get("type") == "stt"
                and "time" in words(e.msg.get("text", ""))
            ),
            60,
        )
        assert stt is not None
        assert client.audio_after_stop == 0
    finally:
        await client.close()


def _count(client: DeviceClient, type_: str, state: str) -> int:
    return sum(
        1
        for e in client.events
        if e.kind == "json" and e.msg is not None and e.msg.get("type") == type_ and e.msg.get("state") == state
    )


# §5.7 / §5.8 -- reply order, pacing ----------------------------------------------------------------
async def test_reply_order_and_pacing(edge: EdgeProcess) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:10")
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.send_speech(speech("What is the capital of France?"))
        turn = await client.wait_turn_end(90)
        assert turn.order[:4] == ["stt", "tts:start", "llm", "tts:sentence_start"], turn.order
        assert turn.order[-1] == "tts:stop"
        assert "audio" in turn.order
        assert client.audio_before_start == 0
        assert client.audio_after_stop == 0
        assert 0 < client.max_queue_depth <= 40
        # Real-time pacing: reply audio takes about as long to arrive as to play.
        audio_times = [e.at for e in client.events if e.kind == "audio"]
        played_s = turn.audio_packets * 0.06
        if played_s > 1.0:
            assert audio_times[-1] - audio_times[0] >= played_s - 0.6
    finally:
        await client.close()


# §5.9 -- abort --------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", [None, "wake_word_detected"])
async def test_abort_stops_audio_and_sends_stop(edge: EdgeProcess, reason: str | None) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:11")
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect("Tell me a long story about a brave dragon and a little knight.")
        await client.wait_for(lambda e: e.kind == "audio", 60)
        sent_at = time.monotonic()
        await client.abort(reason)
        stop = await client.wait_json("tts", "stop", timeout=5)
        assert stop is not None
        stop_at = next(
            e.at
            for e in client.events
            if e.kind == "json" and e.msg and e.msg.get("type") == "tts" and e.msg.get("state") == "stop"
        )
        # At once from the control lane (tens of ms on a quiet machine), not when the story ends (seconds
        # later); the bound leaves room for a busy machine.
        assert stop_at - sent_at < 0.5, f"tts/stop {1000 * (stop_at - sent_at):.0f} ms after abort"
        await asyncio.sleep(1.5)
        assert client.audio_after_stop == 0
    finally:
        await client.close()


# §5.10 -- MCP ---------------------------------------------------------------------------------
async def test_mcp_initialize_paginated_list_and_tool_call(edge: EdgeProcess) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:12", tools_page_size=2)
    await client.connect()
    try:
        await client.wait_for(lambda e: _mcp_methods(client).count("tools/list") >= 2, 10)
        await asyncio.sleep(0.3)
        methods = _mcp_methods(client)
        assert methods[0] == "initialize"
        assert methods.count("tools/list") == 2  # 4 tools, 2 per page
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect("set the volume to 30")
        turn = await client.wait_turn_end(30)
        assert client.tool_calls and client.tool_calls[-1]["name"] == "self.audio_speaker.set_volume"
        assert client.tool_calls[-1]["arguments"] == {"volume": 30}
        assert client.state["volume"] == 30
        assert "30" in " ".join(turn.sentences)
        assert client.mcp_protocol_violations == 0
    finally:
        await client.close()


def _mcp_methods(client: DeviceClient) -> list[str]:
    return [
        e.msg["payload"]["method"]
        for e in client.events
        if e.kind == "json" and e.msg and e.msg.get("type") == "mcp" and "method" in e.msg.get("payload", {})
    ]


# §5.11 -- legacy IoT ----------------------------------------------------------------------------
async def test_legacy_iot_descriptors_and_commands(edge: EdgeProcess) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:13", features={})
    await client.connect()
    try:
        await client.send_json(
            {
                "session_id": client.session_id,
                "type": "iot",
                "update": True,
                "descriptors": [
                    {
                        "name": "Speaker",
                        "description": "speaker",
                        "properties": {"volume": {"description": "volume", "type": "number"}},
                        "methods": {
                            "SetVolume": {
                                "description": "set",
                                "parameters": {"volume": {"description": "0-100", "type": "number"}},
                            }
                        },
                    }
                ],
            }
        )
        await client.send_json(
            {
                "session_id": client.session_id,
                "type": "iot",
                "update": True,
                "states": [{"name": "Speaker", "state": {"volume": 40}}],
            }
        )
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect("turn the volume up")
        await client.wait_turn_end(30)
        iot = [e.msg for e in client.events if e.kind == "json" and e.msg and e.msg.get("type") == "iot"]
        assert iot and iot[-1]["commands"] == [{"name": "Speaker", "method": "SetVolume", "parameters": {"volume": 60}}]
    finally:
        await client.close()


# end to end: spoken answer, not silence ----------------------------------------------------------
@pytest.mark.parametrize(
    ("question", "expect_stt", "route_words"),
    [("What time is it?", "time", None), ("What is the capital of France?", "france", None)],
)
async def test_end_to_end_spoken_answer(edge: EdgeProcess, question: str, expect_stt: str, route_words: None) -> None:
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:14")
    await client.connect()
    try:
        await client.listen_start("auto")
        client.turn_reset()
        await client.send_speech(speech(question))
        turn = await client.wait_turn_end(90)
        assert expect_stt in words(turn.stt_text), turn.stt_text
        assert turn.sample_rate == 24000
        assert turn.sentences and all(s.strip() for s in turn.sentences)
        assert rms(turn.pcm) > 300, "reply audio is silent"
        assert turn.order[0] == "stt" and turn.order[-1] == "tts:stop"
        print(
            f"\n{question!r}: stt {turn.stt_ms:.0f} ms, first audio {turn.first_audio_ms:.0f} ms, "
            f"reply {turn.sentences}"
        )
    finally:
        await client.close()


async def test_command_right_after_hello_waits_for_the_tool_list(edge: EdgeProcess) -> None:
    # Firmware may send listen/detect before the server has finished tools/list.
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:00:15")
    await client.connect()
    try:
        await client.listen_start("auto")
        await client.listen_detect("set the volume to 40")
        turn = await client.wait_turn_end(30)
        assert client.state["volume"] == 40, turn.sentences
    finally:
        await client.close()
