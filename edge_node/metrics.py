"""Prometheus metrics of an edge node, named the Prometheus way: one ``xiaozhi_`` prefix, base units
(seconds, bytes), ``_total`` on counters, labels only where a sum over them means something.

The metrics a cloud worker exports too (stage durations, tokens, link state, build info, loop
lag) live in ``shared.metrics`` and are re-exported here, so edge code has one place to import
from. No per-device labels: a fleet of a thousand devices would explode the series count.
Per-device detail goes to the log, which always carries the device id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import (
    BUILD,
    CLOUD_LINK_CONFIGURED,
    CLOUD_LINK_UP,
    LATENCY_BUCKETS,
    LLM_TOKENS,
    LOOP_LAG,
    STAGE_SECONDS,
    set_build_info,
    watch_loop_lag,
)

__all__ = [
    "BUILD",
    "CLOUD_LINK_CONFIGURED",
    "CLOUD_LINK_UP",
    "LATENCY_BUCKETS",
    "LLM_TOKENS",
    "LOOP_LAG",
    "STAGE_SECONDS",
    "set_build_info",
    "watch_loop_lag",
]

# -- devices and sessions ---------------------------------------------------------------------
SESSIONS = Gauge("xiaozhi_sessions_active", "Open device sessions", ["transport"])
SESSIONS_CAPACITY = Gauge("xiaozhi_sessions_capacity", "Most sessions this node accepts (server.max_sessions)")
CONNECTIONS = Counter(
    "xiaozhi_ws_connections_total",
    "WebSocket connections by how they ended (closed, idle_closed, oversize, error) or were turned away "
    "(bad_path, unauthorised, revoked, rate_limited, refused_busy)",
    ["result"],
)
ADMISSION = Counter("xiaozhi_admission_total", "Connection admission decisions (admitted, refused)", ["result"])
CAPACITY = Gauge("xiaozhi_capacity_turns_per_second", "Measured turn capacity of this node")
DEMAND = Gauge("xiaozhi_demand_turns_per_second", "Recent turn rate (exponentially weighted)")
PROTOCOL_ERRORS = Counter("xiaozhi_protocol_errors_total", "Rejected device input by error code", ["code"])
AUDIO_PACKETS = Counter("xiaozhi_audio_packets_total", "Opus packets by direction (up, down)", ["direction"])
AUDIO_SEND_LAG = Histogram(
    "xiaozhi_audio_send_lag_seconds",
    "How late a downlink packet left against its absolute schedule (CPU saturation shows here first)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5),
)
MCP_CALLS = Counter("xiaozhi_mcp_tool_calls_total", "Device MCP tool calls by result", ["result"])
MCP_TOOL_WAITS = Counter(
    "xiaozhi_mcp_tool_waits_total",
    "Turns that needed a device tool before the device's MCP tools list had arrived, by outcome: ready (it "
    "arrived within mcp.tool_wait_s) or timeout (the turn was answered without it)",
    ["outcome"],
)
SEND_TIMEOUTS = Counter(
    "xiaozhi_send_timeouts_total",
    "Connections dropped because the device stopped reading: a send to it waited server.send_timeout_s",
)
RATE_LIMITED = Counter(
    "xiaozhi_rate_limited_total",
    "Refused by a per-device rate limit (config limits), by kind: connect (handshake answered 429), turn "
    "(answered with the slow-down message), text and audio (frames over their rate: connection closed with 1008)",
    ["kind"],
)
REVOKED_DEVICES = Gauge("xiaozhi_revoked_devices", "Devices on the fleet's revocation list as this edge last saw it")
REVOCATIONS_ENFORCED = Counter(
    "xiaozhi_revocations_enforced_total",
    "A revoked device turned away: action refused (handshake answered 401) or closed (live session closed)",
    ["action"],
)

# -- turns ------------------------------------------------------------------------------------
# route: intent | cache | local_llm | cloud | none; outcome: ok | busy | interrupted | error | empty | rate_limited
TURNS = Counter("xiaozhi_turns_total", "Turns by the route that answered and their outcome", ["route", "outcome"])
TURN_LATENCY = Histogram(
    "xiaozhi_turn_latency_seconds",
    "End of the user's speech (VAD end, listen stop, or a text turn's arrival) to the first reply "
    "audio packet sent: the latency the user hears",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
INTERRUPTIONS = Counter("xiaozhi_interruptions_total", "Replies cut short, by reason", ["reason"])
REPLIES_CAPPED = Counter(
    "xiaozhi_replies_capped_total",
    "Replies ended at a sentence boundary because the next sentence would pass tts.max_reply_s of speech",
)
REPLIES_CUT_SHORT = Counter(
    "xiaozhi_replies_cut_short_total",
    "Replies ended after their first sentences because a stage was saturated",
    ["stage"],
)
SPECULATIVE_ASR = Counter(
    "xiaozhi_speculative_asr_total", "ASR started during the end-of-speech wait, by fate (used, discarded)", ["result"]
)
EARLY_COMMITS = Counter("xiaozhi_early_commits_total", "Turns ended at a short pause: the transcript needed no model")

# -- engines ----------------------------------------------------------------------------------
QUEUE_WAIT_SECONDS = Histogram(
    "xiaozhi_queue_wait_seconds", "Time a job waited for its engine", ["stage"], buckets=LATENCY_BUCKETS
)
QUEUE_DEPTH = Gauge("xiaozhi_queue_depth", "Jobs waiting for an engine worker", ["stage"])
BUSY = Counter("xiaozhi_busy_total", "Jobs refused because a stage was saturated", ["stage", "reason"])
VAD_BATCH = Histogram(
    "xiaozhi_vad_batch_size", "Streams per batched VAD call", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
MODEL_INFO = Gauge("xiaozhi_model_info", "Always 1 per loaded model; the labels name it", ["stage", "model"])
ENGINE_FAILURES = Counter(
    "xiaozhi_engine_failures_total", "Jobs in which a model instance raised on its worker thread", ["stage"]
)
ENGINE_RESTARTS = Counter(
    "xiaozhi_engine_restarts_total",
    "Model instances replaced by a fresh one after they raised (result: ok, failed: the old one was kept)",
    ["stage", "result"],
)

# -- caches: tts | answer; level: l1 | l3 | l2 (looked up in that order); result: hit | miss ----
CACHE_REQUESTS = Counter("xiaozhi_cache_requests_total", "Cache lookups", ["cache", "level", "result"])
FILLERS = Counter(
    "xiaozhi_fillers_total",
    "Turns that heard the short filler phrase because their answer was still queued "
    "queues.filler_after_s after the end of speech (a burst: more turns at once than workers)",
)
SEMANTIC_LOOKUPS = Counter(
    "xiaozhi_semantic_cache_total",
    "Semantic answer-cache lookups after an exact miss: hit, miss (nothing cached in the language), "
    "below_threshold (nearest question not similar enough), slots_differ (similar, but about another "
    "thing, number or negation: refused by the slot guard)",
    ["result"],
)
SEMANTIC_EMBED_SECONDS = Histogram(
    "xiaozhi_semantic_embed_seconds",
    "Time to embed one question for the semantic cache (on its own thread)",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5),
)
SEMANTIC_ENTRIES = Gauge("xiaozhi_semantic_cache_entries", "Questions in the semantic index", ["language"])
CACHE_BYTES = Gauge(
    "xiaozhi_cache_bytes",
    "What a cache holds per level (l1: memory, values plus per-entry overhead; l3: disk), bounded by "
    "cache.l1_max_mb / cache.l3_max_mb: part of the node's RSS that grows until the cache is full",
    ["cache", "level"],
)
CACHE_ERRORS = Counter(
    "xiaozhi_cache_errors_total",
    "Disk cache (L3) problems, each counted (logged once per kind): op read | write | remove | corrupt, "
    "error: the errno name (ENOSPC, EFBIG, EACCES, ...) or bad_entry",
    ["cache", "op", "error"],
)

# -- routing and the cloud link (edge_node/routing, edge_node/cloud_link) ------------------------
ROUTE_DECISIONS = Counter(
    "xiaozhi_route_decisions_total",
    "Which LLM route the rules chose, and why (rule:<name>, overflow, default, no_cloud, no_provider, no_remote)",
    ["route", "reason"],
)
ESCALATIONS = Counter(
    "xiaozhi_escalations_total",
    "Work sent to the cloud tier: kind llm (reason: the routing rule) or asr (reason: low_confidence)",
    ["kind", "reason"],
)
FALLBACKS = Counter(
    "xiaozhi_fallbacks_total", "A route failed and the next in its chain answered", ["from_route", "to_route"]
)
ROUTING_RELOADS = Counter(
    "xiaozhi_routing_reloads_total",
    "Routing configs applied, refused, or (an edited local file while the hub's config is in force) kept on standby",
    ["result"],
)
NATS_REQUESTS = Counter(
    "xiaozhi_nats_requests_total",
    "Requests to the cloud tier by subject class (llm, asr) and result "
    "(ok, no_responders, timeout, refused, failed, cancelled, circuit_open, not_connected)",
    ["subject_class", "result"],
)

PROVIDER_REQUESTS = Counter(
    "xiaozhi_provider_requests_total",
    "Requests to the direct OpenAI-compatible provider route by result "
    "(ok, retried, timeout, failed, empty, cancelled, circuit_open)",
    ["provider", "result"],
)

TOOL_CALLS = Counter(
    "xiaozhi_tool_calls_total",
    "Tool calls a model made, by tool (a server tool's name, or device for the device's MCP tools) and "
    "result (ok, error, timeout)",
    ["tool", "result"],
)


def init_series() -> None:
    """Create at 0 the labelled series that alerts take ``increase()`` of: a series that first
    appears at 1 hides its first event from ``increase()``."""
    for route in ("intent", "cache", "local_llm", "cloud", "provider"):
        for outcome in ("ok", "error", "busy", "interrupted"):
            TURNS.labels(route=route, outcome=outcome)
    for kind in ("llm", "asr"):
        for result in ("ok", "no_responders", "timeout", "refused", "failed"):
            NATS_REQUESTS.labels(subject_class=kind, result=result)
    for result in ("applied", "refused", "standby"):
        ROUTING_RELOADS.labels(result=result)
    for kind in ("connect", "turn", "text", "audio"):
        RATE_LIMITED.labels(kind=kind)
    for outcome in ("ready", "timeout"):
        MCP_TOOL_WAITS.labels(outcome=outcome)
    for action in ("refused", "closed"):
        REVOCATIONS_ENFORCED.labels(action=action)
