"""PromQL pieces the dashboards share, so every rate uses ``$__rate_interval`` and every latency
comes from a histogram the same way, and the job names stay those of deploy/prometheus/prometheus.yml.
"""

from __future__ import annotations

from ops.dashboards.spec import Query

EDGE = 'job="xiaozhi-edge"'
WORKER = 'job="xiaozhi-cloud-worker"'
RI = "$__rate_interval"

# Targets from docs/performance.md: first audio p95 <= 0.5 s for intent and cache, <= 1.2 s for LLM turns.
FAST_ROUTES = "intent|cache"
LLM_ROUTES = "local_llm|cloud"


def _select(metric: str, selector: str) -> str:
    return f"{metric}{{{selector}}}" if selector else metric


def rate(metric: str, selector: str = "", by: str = "") -> str:
    inner = f"rate({_select(metric, selector)}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q: float, histogram: str, selector: str = "", by: str = "") -> str:
    keep = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({keep}) (rate({_select(histogram + '_bucket', selector)}[{RI}])))"


def percentiles(histogram: str, selector: str = "", by: str = "", qs: tuple[float, ...] = (0.5, 0.95)) -> list[Query]:
    """The usual pair of latency lines, legends "p50", "p95" (followed by the ``by`` label)."""
    suffix = f" {{{{{by}}}}}" if by else ""
    return [Query(quantile(q, histogram, selector, by), f"p{round(q * 100)}{suffix}") for q in qs]


def sel(*matchers: str) -> str:
    """Label matchers joined into one selector body, empty ones left out."""
    return ", ".join(m for m in matchers if m)


def ratio(numerator: str, denominator: str) -> str:
    return f"{numerator} / {denominator}"
