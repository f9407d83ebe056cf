"""One real Qwen2.5-Coder-1.5B-Instruct behind the OpenAI chat API, with an API key, for the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import models
from tests.provider.servers import OpenAIServer, start_openai_server

API_KEY = "sk-test-7f3a9c41d2e8b6"


@pytest.fixture(scope="session")
def qwen15() -> Iterator[OpenAIServer]:
    server = start_openai_server(models.qwen_coder_15b_gguf(), "qwen-1.5b", api_key=API_KEY)
    yield server
    server.stop()
