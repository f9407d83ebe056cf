"""The edge's /metrics moves as a scripted session runs: one device, a spoken command and a
question for the local LLM. Every metric an alert or dashboard leans on is checked to move by
the right amount (the names themselves are pinned against the dashboards in tests/deploy)."""

from __future__ import annotations

import httpx

from shared.client.device import DeviceClient
from tests.conftest import EdgeProcess
from tests.edge.helpers import metric_labels, metric_value, speech, words


async def _scrape(edge: EdgeProcess) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{edge.http}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def _delta(before: str, after: str, name: str, **labels: str) -> float:
    return metric_value(after, name, **labels) - metric_value(before, name, **labels)


async def test_a_scripted_session_moves_the_metrics(edge: EdgeProcess) -> None:
    before = await _scrape(edge)
    client = DeviceClient(edge.url, device_id="aa:bb:cc:00:0e:01")
    await client.connect()
    try:
        during = await _scrape(edge)
        assert metric_value(during, "xiaozhi_sessions_active", transport="websocket") >= 1
        await client.listen_start("auto")
        client.turn_reset()
        await client.send_speech(speech("What time is it?"), trailing_silence_ms=1500)
        command = await client.wait_turn_end(60)
        assert "time" in words(command.stt_text)
        client.turn_reset()
        await client.listen_detect("Tell me something nice about otters and their families.")
        question = await client.wait_turn_end(90)
        assert question.audio_packets > 0
    finally:
        await client.close()
    after = await _scrape(edge)

    # Turns by route and outcome, and the latency histogram of each route.
    assert _delta(before, after, "xiaozhi_turns_total", route="intent", outcome="ok") == 1
    assert _delta(before, after, "xiaozhi_turns_total", route="local_llm", outcome="ok") == 1
    for route in ("intent", "local_llm"):
        assert _delta(before, after, "xiaozhi_turn_latency_seconds_count", route=route) == 1
        assert _delta(before, after, "xiaozhi_turn_latency_seconds_bucket", route=route, le="+Inf") == 1
        assert _delta(before, after, "xiaozhi_turn_latency_seconds_sum", route=route) > 0
    # The command was heard by the ASR; the question went through the LLM and was spoken by TTS.
    assert _delta(before, after, "xiaozhi_stage_duration_seconds_count", stage="asr") >= 1
    assert _delta(before, after, "xiaozhi_stage_duration_seconds_count", stage="llm") == 1
    assert _delta(before, after, "xiaozhi_stage_duration_seconds_count", stage="llm_first_token") == 1
    assert _delta(before, after, "xiaozhi_stage_duration_seconds_count", stage="tts") >= 1
    assert _delta(before, after, "xiaozhi_route_decisions_total") == 1
    # Tokens: the prompt and the reply, labelled with the model that ran.
    llm_model = next(m["model"] for m in metric_labels(after, "xiaozhi_model_info") if m["stage"] == "llm")
    assert _delta(before, after, "xiaozhi_llm_tokens_total", direction="completion", model=llm_model) >= 3
    assert _delta(before, after, "xiaozhi_llm_tokens_total", direction="prompt", model=llm_model) >= 10
    # Audio both ways, paced downlink, and the connection counted once it closed.
    assert _delta(before, after, "xiaozhi_audio_packets_total", direction="up") >= 10  # 60 ms each: ~1 s said
    assert _delta(before, after, "xiaozhi_audio_packets_total", direction="down") >= question.audio_packets
    assert _delta(before, after, "xiaozhi_audio_send_lag_seconds_count") >= question.audio_packets
    assert _delta(before, after, "xiaozhi_speculative_asr_total") >= 1
    assert _delta(before, after, "xiaozhi_ws_connections_total") == 1
    assert _delta(before, after, "xiaozhi_admission_total", result="admitted") == 1

    # What never moves per turn but must be there: build, models, capacity, loop lag, CPU by role.
    assert {m["component"] for m in metric_labels(after, "xiaozhi_build_info")} == {"edge"}
    assert {m["stage"] for m in metric_labels(after, "xiaozhi_model_info")} == {"vad", "asr", "llm", "tts"}
    assert metric_value(after, "xiaozhi_sessions_capacity") >= 1
    assert metric_value(after, "xiaozhi_event_loop_lag_seconds_count") > 0
    assert metric_value(after, "xiaozhi_cloud_link_up") == 0  # this node has no cloud link...
    assert metric_value(after, "xiaozhi_cloud_link_configured") == 0  # ...by design: no alert
    assert _delta(before, after, "xiaozhi_thread_cpu_seconds_total", role="llm") > 0
    # No metric is labelled per device or session (a fleet would explode the series count).
    assert "aa:bb:cc:00:0e:01" not in after


async def test_health_and_readiness_report_the_loaded_models(edge: EdgeProcess) -> None:
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{edge.http}/health")).json()
        ready = await http.get(f"{edge.http}/ready")
    assert health["status"] == "ok"
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert set(body["models"]) == {"vad", "asr", "llm", "tts"}
