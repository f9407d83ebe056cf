"""A real edge process with a provider configured answers an escalated turn from it.

The edge runs on timing engines (its local model is not what is tested); the provider is the real
Qwen 1.5B behind ``llama_cpp.server`` with an API key, which the edge reads from the environment
variable its config names. What an operator sees is checked too: the decision and the answer in
the log with the device id, ``xiaozhi_provider_requests_total``, and no key anywhere in the log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import start_edge, stop_edge
from tests.edge.helpers import metric_at_least, text_turn
from tests.faults.helpers import log_lines, timing_env, write_profile
from tests.provider.conftest import API_KEY
from tests.provider.servers import OpenAIServer

pytestmark = pytest.mark.slow


async def test_an_edge_escalates_to_its_provider(tmp_path: Path, qwen15: OpenAIServer) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        "llm:\n  default: escalate\nroutes:\n  provider: {first_token_timeout_s: 60, max_tokens: 48}\n",
        encoding="utf-8",
    )
    env = timing_env(
        write_profile(tmp_path),
        XIAOZHI__ROUTING__FILE=str(routing),
        XIAOZHI__PROVIDER__NAME="qwen15",
        XIAOZHI__PROVIDER__BASE_URL=qwen15.base_url,
        XIAOZHI__PROVIDER__MODEL=qwen15.alias,
        XIAOZHI__PROVIDER__API_KEY_ENV="TEST_PROVIDER_KEY",
        TEST_PROVIDER_KEY=API_KEY,
    )
    edge = start_edge("provider-edge", env)
    try:
        device = "aa:bb:cc:00:20:01"
        turn = await text_turn(edge.url, device, "What is the capital of Japan?", 120)
        assert "tokyo" in " ".join(turn.sentences).lower(), turn.sentences
        await metric_at_least(edge.http, "xiaozhi_provider_requests_total", 1, provider="qwen15", result="ok")
        decided = log_lines(edge, "-> route=provider")
        assert decided and device in decided[-1], edge.log_text()[-3000:]
        answered = log_lines(edge, "provider qwen15")
        assert answered and device in answered[-1]
        assert API_KEY not in edge.log_text()
    finally:
        stop_edge(edge)
