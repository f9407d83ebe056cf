"""The fleet dashboard: every edge node at once, for "is the fleet healthy and is it keeping up?"."""

from __future__ import annotations

from ops.dashboards.promql import EDGE, FAST_ROUTES, LLM_ROUTES, RI, quantile, rate, ratio
from ops.dashboards.spec import Dashboard, Query, Row, Stat, StateTimeline, Table, TimeSeries

SPOKEN = 'outcome!="empty"'  # a turn without words is not one the device user had
LATENCY = "xiaozhi_turn_latency_seconds"
TURN_RATE = rate("xiaozhi_turns_total", SPOKEN)
NEAR_CAPACITY = (
    "count("
    "sum by (instance) (xiaozhi_sessions_active) / sum by (instance) (xiaozhi_sessions_capacity) > 0.9"
    " or sum by (instance) (xiaozhi_demand_turns_per_second)"
    " / sum by (instance) (xiaozhi_capacity_turns_per_second > 0) > 0.9"
    ") or vector(0)"
)

NOW = Row(
    "Fleet now",
    [
        Stat("Edges up", f"count(up{{{EDGE}}} == 1)", description="Edge nodes Prometheus scrapes."),
        Stat(
            "Edges down",
            f"count(up{{{EDGE}}} == 0) or vector(0)",
            limit=1,
            description="Edge nodes whose scrape fails (XiaozhiTargetDown).",
        ),
        Stat("Devices connected", "sum(xiaozhi_sessions_active)", description="Open device sessions, all edges."),
        Stat("Turns/s", TURN_RATE, unit="reqps", description="Turns with words in them, all edges."),
        Stat(
            "First audio p95, LLM turns",
            quantile(0.95, LATENCY, f'route=~"{LLM_ROUTES}"'),
            unit="s",
            limit=1.2,
            description="End of speech to first reply audio, routes local_llm and cloud. Target 1.2 s.",
        ),
        Stat(
            "First audio p95, intent + cache",
            quantile(0.95, LATENCY, f'route=~"{FAST_ROUTES}"'),
            unit="s",
            limit=0.5,
            description="End of speech to first reply audio, commands and cached answers. Target 0.5 s.",
        ),
        Stat(
            "Turn errors",
            ratio(rate("xiaozhi_turns_total", 'outcome="error"'), TURN_RATE),
            unit="percentunit",
            limit=0.05,
            description="Share of turns that ended in an apology.",
        ),
        Stat(
            'Answered "busy"',
            ratio(rate("xiaozhi_turns_total", 'outcome="busy"'), TURN_RATE),
            unit="percentunit",
            limit=0.05,
            description="Share of turns the edges were too saturated to serve.",
        ),
        Stat(
            "Escalated to the cloud",
            ratio(rate("xiaozhi_escalations_total", 'kind="llm"'), TURN_RATE),
            unit="percentunit",
            description="Share of turns whose answer the rules sent to the cloud LLM.",
        ),
        Stat(
            "Cloud links down",
            f"count(xiaozhi_cloud_link_up{{{EDGE}}} == 0 and on (job, instance) "
            f"xiaozhi_cloud_link_configured{{{EDGE}}} == 1) or vector(0)",
            limit=1,
            description="Edges not connected to their NATS server (edges without a cloud link left out).",
        ),
        Stat(
            "Edges near capacity",
            NEAR_CAPACITY,
            limit=1,
            description="Edges over 90 % of max_sessions or of their measured turn capacity.",
        ),
        Stat(
            "Alerts firing",
            'count(ALERTS{alertstate="firing", alertname=~"Xiaozhi.*"}) or vector(0)',
            limit=1,
            description="Xiaozhi alerts firing now (runbooks: docs/operations.md).",
        ),
    ],
    w=4,
    h=4,
)

TRAFFIC = Row(
    "Traffic",
    [
        TimeSeries(
            "Devices connected per edge",
            [Query("sum by (instance) (xiaozhi_sessions_active)", "{{instance}}")],
            description="Open WebSocket sessions.",
        ),
        TimeSeries(
            "Turns/s by route",
            [Query(rate("xiaozhi_turns_total", SPOKEN, "route"), "{{route}}")],
            unit="reqps",
            stack=True,
            description="Which route answered: intent, cache, local_llm, cloud, fallback/apology.",
        ),
        TimeSeries(
            "Turns/s by outcome",
            [Query(rate("xiaozhi_turns_total", "", "outcome"), "{{outcome}}")],
            unit="reqps",
            stack=True,
            description="ok, busy, interrupted, error, empty (no words).",
        ),
        TimeSeries(
            "Turns/s per edge",
            [Query(rate("xiaozhi_turns_total", SPOKEN, "instance"), "{{instance}}")],
            unit="reqps",
        ),
    ],
)

FIRST_AUDIO = Row(
    "First audio: end of speech to the first reply packet",
    [
        TimeSeries(
            "p95 by route",
            [Query(quantile(0.95, LATENCY, by="route"), "{{route}}")],
            unit="s",
            limit=1.2,
            description="Targets: 0.5 s for intent and cache, 1.2 s for local_llm and cloud (red line).",
        ),
        TimeSeries("p50 by route", [Query(quantile(0.5, LATENCY, by="route"), "{{route}}")], unit="s"),
        TimeSeries(
            "p95 per edge, LLM turns",
            [Query(quantile(0.95, LATENCY, f'route=~"{LLM_ROUTES}"', "instance"), "{{instance}}")],
            unit="s",
            limit=1.2,
        ),
        TimeSeries(
            "p95 per edge, intent + cache",
            [Query(quantile(0.95, LATENCY, f'route=~"{FAST_ROUTES}"', "instance"), "{{instance}}")],
            unit="s",
            limit=0.5,
        ),
    ],
)

ROUTING = Row(
    "Routing and caches",
    [
        TimeSeries(
            "Escalated to the cloud LLM",
            [
                Query(
                    ratio(
                        rate("xiaozhi_escalations_total", 'kind="llm"', "instance"),
                        rate("xiaozhi_turns_total", SPOKEN, "instance"),
                    ),
                    "{{instance}}",
                ),
                Query(ratio(rate("xiaozhi_escalations_total", 'kind="llm"'), TURN_RATE), "fleet"),
            ],
            unit="percentunit",
            description="Share of turns sent to the cloud LLM.",
            w=8,
        ),
        TimeSeries(
            "Escalations by kind and reason",
            [Query(rate("xiaozhi_escalations_total", "", "kind, reason"), "{{kind}} {{reason}}")],
            unit="reqps",
            stack=True,
            w=8,
        ),
        TimeSeries(
            "Fallbacks",
            [Query(rate("xiaozhi_fallbacks_total", "", "from_route, to_route"), "{{from_route}} → {{to_route}}")],
            unit="reqps",
            stack=True,
            description="A route failed and the next in its chain answered (to_route cut_off: failed mid-answer).",
            w=8,
        ),
        TimeSeries(
            "Cache hit ratio",
            [
                Query(
                    ratio(
                        rate("xiaozhi_cache_requests_total", 'result="hit"', "cache"),
                        rate("xiaozhi_cache_requests_total", 'level="l1"', "cache"),
                    ),
                    "{{cache}}",
                )
            ],
            unit="percentunit",
            description="Hits at any level (L1 memory, L3 disk, L2 fleet KV) per lookup.",
        ),
        TimeSeries(
            "Cache hits by level",
            [Query(rate("xiaozhi_cache_requests_total", 'result="hit"', "cache, level"), "{{cache}} {{level}}")],
            unit="reqps",
            stack=True,
        ),
    ],
)

CAPACITY = Row(
    "Capacity",
    [
        TimeSeries(
            "Sessions / max_sessions",
            [
                Query(
                    "sum by (instance) (xiaozhi_sessions_active) / sum by (instance) (xiaozhi_sessions_capacity)",
                    "{{instance}}",
                )
            ],
            unit="percentunit",
            limit=0.9,
            soft_max=1,
            w=8,
        ),
        TimeSeries(
            "Turn demand / measured capacity",
            [
                Query(
                    "sum by (instance) (xiaozhi_demand_turns_per_second)"
                    " / sum by (instance) (xiaozhi_capacity_turns_per_second > 0)",
                    "{{instance}}",
                )
            ],
            unit="percentunit",
            limit=0.9,
            soft_max=1,
            description="Admission control refuses new connections at 100 %.",
            w=8,
        ),
        TimeSeries(
            "Connections refused/s",
            [Query(rate("xiaozhi_admission_total", 'result="refused"', "instance"), "{{instance}}")],
            unit="reqps",
            description="HTTP 503 at the handshake: the edge is at capacity.",
            w=8,
        ),
        TimeSeries(
            'Turns answered "busy"/s',
            [Query(rate("xiaozhi_turns_total", 'outcome="busy"', "instance"), "{{instance}}")],
            unit="reqps",
        ),
        TimeSeries(
            "CPU per edge (cores)",
            [Query(f"sum by (instance) (rate(process_cpu_seconds_total{{{EDGE}}}[{RI}]))", "{{instance}}")],
        ),
    ],
)

CLOUD_LINK = Row(
    "Cloud link",
    [
        StateTimeline(
            "Cloud link per edge",
            f"max by (instance) (xiaozhi_cloud_link_up{{{EDGE}}})",
            "{{instance}}",
            description="Connected to the edge's NATS server. Edges without a cloud link read down.",
            w=24,
        ),
        TimeSeries(
            "Requests to the cloud by result",
            [Query(rate("xiaozhi_nats_requests_total", "", "subject_class, result"), "{{subject_class}} {{result}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "No responders per edge",
            [
                Query(
                    ratio(
                        rate("xiaozhi_nats_requests_total", 'result="no_responders"', "instance, subject_class"),
                        rate(
                            "xiaozhi_nats_requests_total",
                            'result!~"circuit_open|not_connected"',
                            "instance, subject_class",
                        ),
                    ),
                    "{{instance}} {{subject_class}}",
                )
            ],
            unit="percentunit",
            limit=0.1,
            description="Share of requests sent to the cloud that no worker answered (leaf link down, no worker).",
        ),
    ],
)

VERSIONS = Row("Versions", [Table("Edge versions", f"xiaozhi_build_info{{{EDGE}}}", hide=("job", "component"), w=24)])

DASHBOARD = Dashboard(
    "xiaozhi-fleet",
    "Xiaozhi / Fleet",
    "Every edge node at once: devices, turns, first-audio latency, routing, capacity, cloud links.",
    [NOW, TRAFFIC, FIRST_AUDIO, ROUTING, CAPACITY, CLOUD_LINK, VERSIONS],
)
