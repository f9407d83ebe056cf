"""Prometheus metrics of an edge node.

No per-device labels: a fleet of a thousand devices would explode the series count. Per-device
detail goes to the log, which always carries the device id.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)

BUILD = Info("xiaozhi_edge_build", "Build information of this edge node")
SESSIONS = Gauge("xiaozhi_edge_sessions", "Open device sessions")
CONNECTIONS = Counter(
    "xiaozhi_edge_connections_total", "WebSocket connections by how they ended", ["result"]
)
TURNS = Counter("xiaozhi_edge_turns_total", "Turns by route and outcome", ["route", "outcome"])
FIRST_AUDIO = Histogram(
    "xiaozhi_edge_first_audio_seconds",
    "End of speech (or text turn) to first downlink audio packet",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "xiaozhi_edge_stage_seconds", "Compute time per pipeline stage", ["stage"], buckets=LATENCY_BUCKETS
)
QUEUE_WAIT_SECONDS = Histogram(
    "xiaozhi_edge_queue_wait_seconds", "Time a job waited for its engine", ["stage"], buckets=LATENCY_BUCKETS
)
QUEUE_DEPTH = Gauge("xiaozhi_edge_queue_depth", "Jobs waiting for an engine worker", ["stage"])
BUSY = Counter("xiaozhi_edge_busy_total", "Jobs refused because a stage was saturated", ["stage", "reason"])
ADMISSION = Counter("xiaozhi_edge_admission_total", "Connection admission decisions", ["result"])
CAPACITY = Gauge("xiaozhi_edge_capacity_turns_per_second", "Measured turn capacity of this node")
DEMAND = Gauge("xiaozhi_edge_demand_turns_per_second", "Recent turn rate (exponentially weighted)")
REPLIES_CUT_SHORT = Counter(
    "xiaozhi_edge_replies_cut_short_total",
    "Replies ended after their first sentences because a stage was saturated",
    ["stage"],
)
INTERRUPTIONS = Counter("xiaozhi_edge_interruptions_total", "Replies cut short by barge-in", ["cause"])
PROTOCOL_ERRORS = Counter("xiaozhi_edge_protocol_errors_total", "Rejected device input", ["code"])
AUDIO_PACKETS = Counter("xiaozhi_edge_audio_packets_total", "Opus packets", ["direction"])
PACING_LAG = Histogram(
    "xiaozhi_edge_pacing_lag_seconds",
    "How late a downlink packet left against its absolute schedule",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5),
)
VAD_BATCH = Histogram(
    "xiaozhi_edge_vad_batch_size", "Streams per batched VAD call", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256)
)
LOOP_LAG = Gauge("xiaozhi_edge_event_loop_lag_seconds", "Latest event-loop scheduling delay")
SPECULATIVE_ASR = Counter(
    "xiaozhi_edge_speculative_asr_total", "ASR started during the end-of-speech wait, by fate", ["result"]
)
EARLY_COMMITS = Counter(
    "xiaozhi_edge_early_commits_total", "Turns ended at a short pause: the transcript needed no model"
)
MCP_CALLS = Counter("xiaozhi_edge_mcp_tool_calls_total", "Device MCP tool calls", ["result"])
# cache: tts | answer; level: l1 | l3 | l2 (looked up in that order); result: hit | miss.
CACHE_REQUESTS = Counter("xiaozhi_edge_cache_requests_total", "Cache lookups", ["cache", "level", "result"])


async def watch_loop_lag(interval: float = 0.5) -> None:
    """Measure how late the loop wakes us: the early warning that something blocks it."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(interval)
        LOOP_LAG.set(max(0.0, time.perf_counter() - before - interval))

# -- the cloud link (edge_node/cloud_link) ------------------------------------------------------
CLOUD_LINK_UP = Gauge("xiaozhi_edge_cloud_link_up", "1 while this edge is connected to its NATS server")
CLOUD_REQUESTS = Counter(
    "xiaozhi_edge_cloud_requests_total",
    "Requests to the cloud tier by kind (llm, asr) and result "
    "(ok, no_responders, timeout, refused, failed, cancelled, circuit_open, not_connected)",
    ["kind", "result"],
)
CLOUD_FIRST_CHUNK = Histogram(
    "xiaozhi_edge_cloud_first_chunk_seconds",
    "Escalated LLM request to its first streamed chunk",
    buckets=LATENCY_BUCKETS,
)
ROUTE_DECISIONS = Counter(
    "xiaozhi_edge_route_decisions_total", "Which LLM route the rules chose, and why", ["route", "reason"]
)
FALLBACKS = Counter(
    "xiaozhi_edge_fallbacks_total", "A route failed and the next in its chain answered", ["from_route", "to_route"]
)
ROUTING_RELOADS = Counter("xiaozhi_edge_routing_reloads_total", "Routing configs applied or refused", ["result"])
ASR_ESCALATIONS = Counter("xiaozhi_edge_asr_escalations_total", "Utterances sent to the cloud's ASR", ["result"])
