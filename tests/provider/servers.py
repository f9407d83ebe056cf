"""Real OpenAI-compatible servers for the provider tests: llama-cpp-python's server on a bundled GGUF,
started on a free loopback port (the stand-in for Ollama, vLLM, DeepSeek or DashScope)."""

from __future__ import annotations

import sys
from pathlib import Path

from shared.nats.server import free_port
from tests.processes import Proc, spawn

__all__ = ["OpenAIServer", "start_openai_server"]


class OpenAIServer:
    def __init__(self, proc: Proc, port: int, alias: str) -> None:
        self.proc = proc
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.alias = alias

    def stop(self) -> None:
        self.proc.stop()


def start_openai_server(model: Path, alias: str, api_key: str = "", threads: int = 1) -> OpenAIServer:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_threads",
        str(threads),
        "--n_ctx",
        "2048",
        "--model_alias",
        alias,
        "--interrupt_requests",
        "False",
    ]
    if api_key:
        args += ["--api_key", api_key]
    return OpenAIServer(spawn(f"openai-{alias}", args, "Uvicorn running", timeout_s=120), port, alias)
