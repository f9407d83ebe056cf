"""The cloud tier dashboard: the workers and the cloud as the edges see it, for "is the cloud
keeping up, and is it the cloud or the way to it that is slow?"."""

from __future__ import annotations

from ops.dashboards.promql import EDGE, RI, WORKER, percentiles, quantile, rate, ratio, sel
from ops.dashboards.spec import Dashboard, Query, Row, Stat, StateTimeline, Table, TimeSeries, Variable

W = sel(WORKER, 'role=~"$role"', 'instance=~"$worker"')  # the xiaozhi_worker_* metrics, which carry a role
P = sel(WORKER, 'instance=~"$worker"')  # everything else a worker exports has no role label
STAGE = "xiaozhi_stage_duration_seconds"


def _worker_stage(title: str, stage: str) -> TimeSeries:
    return TimeSeries(
        title,
        percentiles(STAGE, sel(P, f'stage="{stage}"')),
        unit="s",
        description=f"stage {stage}, measured on the workers.",
    )


def _tokens(direction: str) -> TimeSeries:
    return TimeSeries(
        f"{direction.capitalize()} tokens/s",
        [Query(rate("xiaozhi_llm_tokens_total", sel(P, f'direction="{direction}"'), "model"), "{{model}}")],
    )


NOW = Row(
    "Now",
    [
        Stat(
            "Workers by role",
            f"count by (role) (xiaozhi_worker_capacity{{{W}}})",
            legend="{{role}}",
            description="Worker processes scraped, per role.",
        ),
        Stat(
            "Not connected to NATS",
            f"count(xiaozhi_cloud_link_up{{{P}}} == 0) or vector(0)",
            limit=1,
            description="Workers out of rotation (their /ready answers 503).",
        ),
        Stat(
            "In flight / capacity",
            f"sum(xiaozhi_worker_inflight{{{W}}}) / sum(xiaozhi_worker_capacity{{{W}}})",
            unit="percentunit",
            limit=0.85,
        ),
        Stat("Requests/s", rate("xiaozhi_worker_requests_total", W), unit="reqps"),
        Stat(
            "Errors",
            ratio(
                rate("xiaozhi_worker_requests_total", sel(W, 'result="error"')),
                rate("xiaozhi_worker_requests_total", W),
            ),
            unit="percentunit",
            limit=0.1,
        ),
        Stat(
            "LLM first token p95",
            quantile(0.95, STAGE, sel(P, 'stage="cloud_llm_first_token"')),
            unit="s",
        ),
    ],
    w=4,
    h=4,
)

WORKERS = Row(
    "Workers",
    [
        TimeSeries(
            "Workers by role",
            [Query(f"count by (role) (xiaozhi_worker_capacity{{{W}}})", "{{role}}")],
            w=8,
        ),
        TimeSeries(
            "In flight vs capacity",
            [
                Query(f"sum by (role) (xiaozhi_worker_inflight{{{W}}})", "in flight {{role}}"),
                Query(f"sum by (role) (xiaozhi_worker_capacity{{{W}}})", "capacity {{role}}"),
            ],
            description="LLM: streams (llm.max_inflight per worker); ASR: utterances (asr.max_inflight).",
            w=8,
        ),
        TimeSeries(
            "Utilisation per worker",
            [Query(f"xiaozhi_worker_inflight{{{W}}} / xiaozhi_worker_capacity{{{W}}}", "{{instance}} {{role}}")],
            unit="percentunit",
            limit=0.85,
            soft_max=1,
            w=8,
        ),
        TimeSeries(
            "Requests/s by result",
            [Query(rate("xiaozhi_worker_requests_total", W, "role, result"), "{{role}} {{result}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "Refused (full)/s per worker",
            [Query(rate("xiaozhi_worker_requests_total", sel(W, 'result="refused_busy"'), "instance"), "{{instance}}")],
            unit="reqps",
            description="503 answers: the worker was at capacity; the edge retries another.",
        ),
    ],
)

LATENCY = Row(
    "Latency",
    [
        _worker_stage("LLM first token", "cloud_llm_first_token"),
        _worker_stage("LLM whole reply", "cloud_llm_total"),
        _worker_stage("ASR per utterance", "cloud_asr"),
    ],
    w=8,
)

TOKENS = Row("Tokens", [_tokens("completion"), _tokens("prompt")])

FROM_THE_EDGES = Row(
    "The cloud as the edges see it",
    [
        TimeSeries(
            "Requests from edges/s",
            [Query(rate("xiaozhi_nats_requests_total", EDGE, "subject_class, result"), "{{subject_class}} {{result}}")],
            unit="reqps",
            stack=True,
        ),
        TimeSeries(
            "No responders",
            [
                Query(
                    ratio(
                        rate("xiaozhi_nats_requests_total", sel(EDGE, 'result="no_responders"'), "subject_class"),
                        rate(
                            "xiaozhi_nats_requests_total",
                            sel(EDGE, 'result!~"circuit_open|not_connected"'),
                            "subject_class",
                        ),
                    ),
                    "{{subject_class}}",
                )
            ],
            unit="percentunit",
            limit=0.1,
            description="Share of requests sent that no worker answered.",
        ),
        TimeSeries(
            "First chunk at the edges",
            percentiles(STAGE, sel(EDGE, 'stage="cloud_first_chunk"')),
            unit="s",
            description="Includes NATS (edge leaf, hub) on top of the worker's first token.",
        ),
        TimeSeries(
            "Escalations from edges/s",
            [Query(rate("xiaozhi_escalations_total", EDGE, "kind, reason"), "{{kind}} {{reason}}")],
            unit="reqps",
            stack=True,
        ),
    ],
    w=6,
)

PROCESSES = Row(
    "Processes",
    [
        StateTimeline(
            "NATS connection per worker", f"max by (instance) (xiaozhi_cloud_link_up{{{P}}})", "{{instance}}"
        ),
        TimeSeries(
            "Event loop lag p99",
            [Query(quantile(0.99, "xiaozhi_event_loop_lag_seconds", P, "instance"), "{{instance}}")],
            unit="s",
            limit=0.05,
        ),
        TimeSeries(
            "CPU (cores)",
            [Query(f"sum by (instance) (rate(process_cpu_seconds_total{{{P}}}[{RI}]))", "{{instance}}")],
        ),
        TimeSeries("Memory", [Query(f"process_resident_memory_bytes{{{P}}}", "{{instance}}")], unit="bytes"),
        Table("Worker versions", f"xiaozhi_build_info{{{P}}}", hide=("job",), w=24, h=6),
    ],
)

DASHBOARD = Dashboard(
    "xiaozhi-cloud",
    "Xiaozhi / Cloud workers",
    "The cloud tier: workers by role, in-flight against capacity, request results, LLM first token "
    "and total time, tokens, ASR time, and the cloud as the edges see it.",
    [NOW, WORKERS, LATENCY, TOKENS, FROM_THE_EDGES, PROCESSES],
    variables=[
        Variable("role", "Role", f"label_values(xiaozhi_worker_capacity{{{WORKER}}}, role)", multi=True),
        Variable(
            "worker",
            "Worker",
            f'label_values(xiaozhi_worker_capacity{{{WORKER}, role=~"$role"}}, instance)',
            multi=True,
        ),
    ],
)
