"""The edge node dashboard: one node in depth, for "why is this edge slow, busy or failing?"."""

from __future__ import annotations

from ops.dashboards.promql import EDGE, RI, percentiles, quantile, rate, ratio, sel
from ops.dashboards.spec import Dashboard, Heatmap, Query, Row, Stat, StateTimeline, Table, TimeSeries, Variable

INST = 'instance="$instance"'
SPOKEN = sel(INST, 'outcome!="empty"')  # a turn without words is not one the device user had
STAGE = "xiaozhi_stage_duration_seconds"
CLOUD_FIRST_CHUNK = sel(INST, 'stage="cloud_first_chunk"')

NOW = Row(
    "Now",
    [
        Stat("Sessions", f"sum(xiaozhi_sessions_active{{{INST}}})"),
        Stat(
            "Sessions / max_sessions",
            f"sum(xiaozhi_sessions_active{{{INST}}}) / sum(xiaozhi_sessions_capacity{{{INST}}})",
            unit="percentunit",
            limit=0.9,
        ),
        Stat(
            "Demand / capacity",
            f"sum(xiaozhi_demand_turns_per_second{{{INST}}}) / sum(xiaozhi_capacity_turns_per_second{{{INST}}} > 0)",
            unit="percentunit",
            limit=0.9,
            description="Recent turn rate against the measured capacity; empty until measured.",
        ),
        Stat("Turns/s", rate("xiaozhi_turns_total", SPOKEN), unit="reqps"),
        Stat(
            "Cloud link",
            f"max(xiaozhi_cloud_link_up{{{INST}}})",
            up_down=True,
            text="value",
            description="Connected to this edge's NATS server.",
        ),
        Stat("Version", f"xiaozhi_build_info{{{INST}}}", legend="{{version}} ({{commit}})", text="name"),
    ],
    w=4,
    h=4,
)

SESSIONS = Row(
    "Sessions and admission",
    [
        TimeSeries(
            "Sessions",
            [
                Query(f"sum by (transport) (xiaozhi_sessions_active{{{INST}}})", "{{transport}}"),
                Query(f"xiaozhi_sessions_capacity{{{INST}}}", "max_sessions"),
            ],
        ),
        TimeSeries(
            "Connections ended/s by result",
            [Query(rate("xiaozhi_ws_connections_total", INST, "result"), "{{result}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "Admission decisions/s",
            [Query(rate("xiaozhi_admission_total", INST, "result"), "{{result}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "Turn demand vs measured capacity",
            [
                Query(f"xiaozhi_demand_turns_per_second{{{INST}}}", "demand"),
                Query(f"xiaozhi_capacity_turns_per_second{{{INST}}}", "capacity"),
            ],
            unit="reqps",
            description="Admission refuses new connections when demand reaches capacity.",
        ),
    ],
    w=6,
)

TURNS = Row(
    "Turns",
    [
        TimeSeries(
            "Turns/s by route",
            [Query(rate("xiaozhi_turns_total", SPOKEN, "route"), "{{route}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "Turns/s by outcome",
            [Query(rate("xiaozhi_turns_total", INST, "outcome"), "{{outcome}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "LLM route decisions/s",
            [Query(rate("xiaozhi_route_decisions_total", INST, "route, reason"), "{{route}} {{reason}}")],
            unit="reqps",
            stack=True,
            description="Which LLM route the rules chose, and why.",
        ),
        TimeSeries(
            "Interruptions/s",
            [Query(rate("xiaozhi_interruptions_total", INST, "reason"), "{{reason}}")],
            unit="reqps",
            stack=True,
            description="Replies cut short: barge-in by voice, listen/start, abort, disconnect, a new turn.",
        ),
        TimeSeries(
            "Replies cut short by a saturated stage/s",
            [Query(rate("xiaozhi_replies_cut_short_total", INST, "stage"), "{{stage}}")],
            unit="reqps",
        ),
        TimeSeries(
            "Speculative ASR and early commits/s",
            [
                Query(rate("xiaozhi_speculative_asr_total", INST, "result"), "speculative ASR {{result}}"),
                Query(f"sum(rate(xiaozhi_early_commits_total{{{INST}}}[{RI}]))", "early commit"),
            ],
            unit="reqps",
        ),
    ],
    w=8,
)

LATENCY = Row(
    "Latency",
    [
        TimeSeries(
            "First audio by route",
            percentiles("xiaozhi_turn_latency_seconds", INST, "route"),
            unit="s",
            limit=1.2,
            description="End of speech to the first reply audio packet. Targets (p95): 0.5 s "
            "intent and cache, 1.2 s local_llm and cloud.",
        ),
        Heatmap(
            "First audio, all routes",
            f"sum by (le) (increase(xiaozhi_turn_latency_seconds_bucket{{{INST}}}[{RI}]))",
        ),
        TimeSeries(
            "Stage duration p95",
            [Query(quantile(0.95, STAGE, INST, "stage"), "{{stage}}")],
            unit="s",
            description="asr, llm, tts (whole job), llm_first_token, vad_tick, opus_decode, cloud_first_chunk.",
        ),
        TimeSeries("Stage duration p50", [Query(quantile(0.5, STAGE, INST, "stage"), "{{stage}}")], unit="s"),
    ],
)

QUEUES = Row(
    "Engine queues",
    [
        TimeSeries(
            "Queue depth",
            [Query(f"sum by (stage) (xiaozhi_queue_depth{{{INST}}})", "{{stage}}")],
            description="Jobs waiting for an engine worker.",
        ),
        TimeSeries(
            "Queue wait p95",
            [Query(quantile(0.95, "xiaozhi_queue_wait_seconds", INST, "stage"), "{{stage}}")],
            unit="s",
        ),
        TimeSeries(
            "Jobs refused (busy)/s",
            [Query(rate("xiaozhi_busy_total", INST, "stage, reason"), "{{stage}} {{reason}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "VAD streams per batch",
            [
                Query(
                    ratio(rate("xiaozhi_vad_batch_size_sum", INST), rate("xiaozhi_vad_batch_size_count", INST)), "mean"
                )
            ],
            description="Streams per batched Silero call (one call per 30 ms tick).",
        ),
        TimeSeries(
            "LLM tokens/s",
            [Query(rate("xiaozhi_llm_tokens_total", INST, "direction, model"), "{{direction}} {{model}}")],
        ),
        Table("Models loaded", f"xiaozhi_model_info{{{INST}}}", hide=("job", "instance", "node")),
    ],
    w=8,
)

PROCESS = Row(
    "CPU, event loop, pacing",
    [
        TimeSeries(
            "CPU by thread role (cores)",
            [
                Query(f"sum by (role) (rate(xiaozhi_thread_cpu_seconds_total{{{INST}}}[{RI}]))", "{{role}}"),
                Query(f"sum(rate(process_cpu_seconds_total{{{INST}}}[{RI}]))", "process"),
            ],
            stack=True,
            unstacked=("process",),
            description="Live threads by role (edge_node/cpu_roles.py); the dashed line is the whole process.",
        ),
        TimeSeries(
            "Server overhead",
            [
                Query(
                    f'sum(rate(xiaozhi_thread_cpu_seconds_total{{{INST}, role=~"event_loop|cache|other"}}[{RI}]))'
                    f" / sum(rate(xiaozhi_thread_cpu_seconds_total{{{INST}}}[{RI}]))",
                    "overhead",
                )
            ],
            unit="percentunit",
            limit=0.1,
            description="Thread CPU not spent on inference or audio coding "
            "(event loop, cache, other). Target under 10 %.",
        ),
        TimeSeries("Memory", [Query(f"process_resident_memory_bytes{{{INST}}}", "RSS")], unit="bytes"),
        TimeSeries(
            "Event loop lag",
            percentiles("xiaozhi_event_loop_lag_seconds", INST, qs=(0.5, 0.99)),
            unit="s",
            limit=0.05,
            description="How late the loop woke a 0.5 s timer. Alert: p99 over 50 ms.",
        ),
        TimeSeries(
            "Downlink pacing lag",
            percentiles("xiaozhi_audio_send_lag_seconds", INST, qs=(0.5, 0.99)),
            unit="s",
            limit=0.1,
            description="How late reply audio packets left against their schedule. Alert: p99 over 100 ms.",
        ),
        TimeSeries(
            "Audio packets/s",
            [Query(rate("xiaozhi_audio_packets_total", INST, "direction"), "{{direction}}")],
            unit="pps",
        ),
    ],
    w=8,
)

ERRORS = Row(
    "Errors",
    [
        TimeSeries(
            "Protocol errors/s by code",
            [Query(rate("xiaozhi_protocol_errors_total", INST, "code"), "{{code}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "Failed turns/s by route",
            [Query(rate("xiaozhi_turns_total", sel(INST, 'outcome="error"'), "route"), "{{route}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "Device MCP tool calls/s",
            [Query(rate("xiaozhi_mcp_tool_calls_total", INST, "result"), "{{result}}")],
            unit="reqps",
            stack=True,
        ),
    ],
    w=8,
)

CACHES = Row(
    "Caches",
    [
        TimeSeries(
            "Hit ratio",
            [
                Query(
                    ratio(
                        rate("xiaozhi_cache_requests_total", sel(INST, 'result="hit"'), "cache"),
                        rate("xiaozhi_cache_requests_total", sel(INST, 'level="l1"'), "cache"),
                    ),
                    "{{cache}}",
                )
            ],
            unit="percentunit",
            description="Hits at any level per lookup.",
        ),
        TimeSeries(
            "Lookups/s by level and result",
            [
                Query(
                    rate("xiaozhi_cache_requests_total", INST, "cache, level, result"), "{{cache}} {{level}} {{result}}"
                )
            ],
            unit="reqps",
        ),
    ],
)

CLOUD_LINK = Row(
    "Cloud link and routing",
    [
        StateTimeline("Cloud link", f"max(xiaozhi_cloud_link_up{{{INST}}})", "link", w=12, h=5),
        TimeSeries(
            "Requests to the cloud/s",
            [Query(rate("xiaozhi_nats_requests_total", INST, "subject_class, result"), "{{subject_class}} {{result}}")],
            unit="reqps",
            stack=True,
            w=12,
            h=5,
        ),
        TimeSeries(
            "Cloud first chunk",
            percentiles(STAGE, CLOUD_FIRST_CHUNK),
            unit="s",
            description="Request to the first chunk of a cloud LLM reply, as this edge saw it.",
        ),
        TimeSeries(
            "Escalations/s",
            [Query(rate("xiaozhi_escalations_total", INST, "kind, reason"), "{{kind}} {{reason}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "Fallbacks/s",
            [Query(rate("xiaozhi_fallbacks_total", INST, "from_route, to_route"), "{{from_route}} → {{to_route}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "Routing configs",
            [Query(f"sum by (result) (increase(xiaozhi_routing_reloads_total{{{INST}}}[{RI}]))", "{{result}}")],
            description="Routing configs applied or refused (refused: see /stats edge.routing.error).",
        ),
    ],
    w=6,
)

DASHBOARD = Dashboard(
    "xiaozhi-edge-node",
    "Xiaozhi / Edge node",
    "One edge node: sessions, turns, latency by route and stage, engine queues, CPU by thread role, "
    "the event loop, pacing, errors, caches and its cloud link.",
    [NOW, SESSIONS, TURNS, LATENCY, QUEUES, PROCESS, ERRORS, CACHES, CLOUD_LINK],
    variables=[Variable("instance", "Edge node", f"label_values(xiaozhi_sessions_capacity{{{EDGE}}}, instance)")],
)
