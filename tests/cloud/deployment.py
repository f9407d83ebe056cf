"""A cloud tier on loopback, all real: a NATS hub, one leaf nats-server per edge, an OpenAI-compatible
server on the bundled model (llama-cpp-python's: the stand-in for vLLM) and a cloud LLM worker."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from shared import models
from shared.nats.configs import save_credential
from shared.nats.local import Hub, Leaf
from shared.nats.server import free_port
from tests.processes import Proc, ready_field, spawn


@dataclass
class Cloud:
    hub: Hub
    leaves: dict[str, Leaf]
    openai: Proc
    cred_path: Path
    llm_worker: Proc | None = None
    asr_worker: Proc | None = None
    openai_url: str = ""

    def start_llm_worker(self) -> Proc:
        self.llm_worker = spawn(
            "cloud-llm-worker",
            [
                sys.executable,
                "-m",
                "cloud.cli",
                "worker",
                "--role",
                "llm",
                "--nats",
                self.hub.url,
                "--credential",
                str(self.cred_path),
                "--openai-url",
                self.openai_url,
                "--model",
                "smollm2",
                "--id",
                "llm-test-1",
                "--http-port",
                "0",
            ],
            "READY worker=",
        )
        return self.llm_worker

    @property
    def llm_worker_http(self) -> str:
        """The LLM worker's /metrics, /health, /ready base URL."""
        assert self.llm_worker is not None
        return f"http://127.0.0.1:{ready_field(self.llm_worker, 'http')}"

    def stop(self) -> None:
        for proc in (self.llm_worker, self.asr_worker, self.openai):
            if proc is not None:
                proc.stop()
        for leaf in self.leaves.values():
            leaf.stop()
        self.hub.stop()


def start_cloud(work: Path, edges: list[str]) -> Cloud:
    """Start everything and return once the leaves are linked and the LLM worker is registered."""
    port = free_port()
    openai = spawn(
        "openai-smollm2",
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(models.smollm2_gguf()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "1",
            "--n_ctx",
            "2048",
            "--model_alias",
            "smollm2",
            "--interrupt_requests",
            "False",
        ],
        "Uvicorn running",
    )
    return start_cloud_around(work, edges, openai, f"http://127.0.0.1:{port}/v1")


def start_cloud_around(work: Path, edges: list[str], openai: Proc, openai_url: str, link_s: float = 10.0) -> Cloud:
    """A hub, one leaf per edge and a cloud LLM worker in front of ``openai`` (already started; it is
    stopped with the rest); returns once the leaves are linked and the worker is registered."""
    hub = Hub(work / "hub")
    for edge in edges:
        hub.credential(edge)
    leaves = {e: Leaf(work / e, e, hub) for e in edges}
    cred_path = work / "cloud.json"
    save_credential(hub.cloud, cred_path)
    c = Cloud(hub, leaves, openai, cred_path, openai_url=openai_url)
    try:
        hub.start()
        for leaf in leaves.values():
            leaf.start()
        for leaf in leaves.values():
            leaf.wait_linked(link_s)
        c.start_llm_worker()
    except BaseException:
        c.stop()
        raise
    return c
