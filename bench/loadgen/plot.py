"""The latency plot: first-audio percentiles over the run, connected devices on a second axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_report"]


def plot_report(report: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report.get("timeline") or []
    bucket = float(report.get("timeline_bucket_s", 5.0))
    t = [r["t"] + bucket / 2 for r in rows]
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    for key, label, style in (
        ("first_audio_p50", "first audio p50", "-o"),
        ("first_audio_p95", "first audio p95", "-s"),
    ):
        xs = [x for x, r in zip(t, rows, strict=True) if r.get(key) is not None]
        ys = [r[key] / 1000 for r in rows if r.get(key) is not None]
        ax.plot(xs, ys, style, markersize=3, label=label)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("end of speech → first audio (s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax2 = ax.twinx()
    ax2.step(
        [r["t"] for r in rows],
        [r["connected"] for r in rows],
        where="post",
        color="grey",
        alpha=0.6,
        label="connected devices",
    )
    ax2.set_ylabel("connected devices")
    ax2.set_ylim(bottom=0, top=max([r["connected"] for r in rows] + [1]) * 1.15)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper left")
    fa = report.get("first_audio_ms") or {}
    title = (
        f"{report.get('devices')} devices, {report.get('rate_per_min')}/min each: "
        f"{report.get('turns_per_s')} turns/s, first audio p50 {fa.get('p50')} ms / p95 {fa.get('p95')} ms"
    )
    if report.get("naive_turns_per_s"):
        title += f"\nnaive baseline {report['naive_turns_per_s']} turns/s (speedup {report.get('speedup')}x)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
