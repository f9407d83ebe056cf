"""The soak's verdict (bench/soak.py): flat series pass, each kind of growth is named, a run too
short to judge is not called flat. The hour itself is a benchmark, not a test."""

from __future__ import annotations

import random

from bench.soak import Sample, analyse


def _series(n: int = 60, rss_per_s: float = 0.0, tasks_per_s: float = 0.0, fds_per_s: float = 0.0) -> list[Sample]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        t = i * 15.0
        sessions = 20 + rng.randint(-3, 3)  # devices come and go
        out.append(
            Sample(
                t=t,
                rss_mb=900 + rng.uniform(-8, 8) + rss_per_s * t,
                fds=40 + sessions + fds_per_s * t,
                tasks=10 + 6 * sessions + tasks_per_s * t,
                threads=12,
                sessions=sessions,
                turns=i * 5.0,
            )
        )
    return out


def _records(n: int = 60, ms: float = 800.0, grow_per_s: float = 0.0) -> list[dict]:
    return [{"t": i * 15.0 + 1, "first_audio_ms": ms + grow_per_s * i * 15.0} for i in range(n)]


def test_a_flat_run_is_flat() -> None:
    v = analyse(_series(), _records(), warmup_s=120)
    assert v["flat"], v["why"]
    assert abs(v["rss_mb"]["slope_mb_per_h"]) < 40


def test_each_kind_of_growth_is_named() -> None:
    assert "RSS grew" in " ".join(analyse(_series(rss_per_s=0.1), _records(), 120)["why"])  # 360 MB/h
    assert "tasks grew" in " ".join(analyse(_series(tasks_per_s=0.2), _records(), 120)["why"])
    assert "file descriptors" in " ".join(analyse(_series(fds_per_s=0.02), _records(), 120)["why"])
    assert "first audio" in " ".join(analyse(_series(), _records(grow_per_s=2.0), 120)["why"])


def test_too_short_to_judge_is_not_flat() -> None:
    v = analyse(_series(n=8), _records(n=8), warmup_s=100)
    assert not v["flat"] and "run longer" in v["why"][0]
