"""Device commands through the model: a real Qwen2.5-Coder-1.5B (llama.cpp's OpenAI server, the
provider route) is given the device's MCP tools and must end the turn with the right ``tools/call``.

A real edge process (timing engines: the local model is not asked) with its rules out of the order,
so only the model can act, and a simulated device (``shared.client``) that answers ``tools/list`` with
the firmware's own tools and records every ``tools/call``. Its volume starts at 70: "a bit louder"
must set more, "把声音调小一点" less. The model may first read the device's status (the firmware's
description of ``set_volume`` asks it to); the node runs that and hands it back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.client.device import DeviceClient
from tests.conftest import start_edge, stop_edge
from tests.edge.helpers import text_turn
from tests.faults.helpers import log_lines, timing_env, write_profile
from tests.provider.conftest import API_KEY
from tests.provider.servers import OpenAIServer

pytestmark = pytest.mark.slow


async def test_louder_and_quieter_through_the_model_reach_the_device(tmp_path: Path, qwen15: OpenAIServer) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        "order: [llm]\nllm: {default: provider, rules: []}\n"
        "routes:\n  provider: {first_token_timeout_s: 90, chunk_timeout_s: 60, max_tokens: 96}\n",
        encoding="utf-8",
    )
    env = timing_env(
        write_profile(tmp_path),
        XIAOZHI__ROUTING__FILE=str(routing),
        XIAOZHI__PROVIDER__BASE_URL=qwen15.base_url,
        XIAOZHI__PROVIDER__MODEL=qwen15.alias,
        XIAOZHI__PROVIDER__TEMPERATURE="0",
        XIAOZHI__PROVIDER__API_KEY_ENV="TEST_PROVIDER_KEY",
        TEST_PROVIDER_KEY=API_KEY,
        XIAOZHI__TOOLS__ENABLED="true",
        XIAOZHI__TOOLS__CALL_TIMEOUT_S="20",
        XIAOZHI__MCP__TOOL_WAIT_S="3",
        XIAOZHI__LANGUAGES__SERVE='["en", "zh"]',
    )
    edge = start_edge("tools-llm-edge", env)
    try:
        for device, text, louder in (
            ("aa:bb:cc:00:21:01", "Make it a bit louder.", True),
            ("aa:bb:cc:00:21:02", "把声音调小一点", False),
        ):
            client = DeviceClient(edge.url, device_id=device)
            sentences = (await text_turn(edge.url, device, text, 180, client=client)).sentences
            sets = [c for c in client.tool_calls if c["name"] == "self.audio_speaker.set_volume"]
            assert sets, (text, client.tool_calls, sentences, log_lines(edge, device)[-8:])
            volume = sets[-1]["arguments"]["volume"]
            assert (volume > 70) if louder else (volume < 70), (text, volume)
            assert any(str(volume) in s for s in sentences), sentences  # the result is spoken
        assert log_lines(edge, "tool self_audio_speaker_set_volume")
    finally:
        stop_edge(edge)
