"""The heartbeat's turn summary: p95 over a sliding window, escalation ratio, cumulative counts."""

from edge_node.turn_stats import TurnStats


def test_p95_and_escalation_ratio_over_the_window() -> None:
    stats = TurnStats(window_s=60)
    for i in range(20):
        stats.record("cloud" if i % 4 == 0 else "local_llm", 0.1 * (i + 1), now=100.0 + i)
    summary = stats.summary(now=120.0)
    assert summary["recent_turns"] == 20
    assert summary["first_audio_p95_s"] == 2.0  # the 19th of 20 sorted latencies (0.1 .. 2.0 s)
    assert summary["escalation_ratio"] == 0.25
    assert summary["turns_total"] == 20 and summary["escalations_total"] == 5


def test_old_turns_leave_the_window_but_stay_counted() -> None:
    stats = TurnStats(window_s=60)
    stats.record("cache", 0.2, now=0.0)
    stats.record("intent", None, now=50.0)  # a turn that failed before any audio
    summary = stats.summary(now=100.0)
    assert summary["recent_turns"] == 1 and summary["first_audio_p95_s"] is None
    assert summary["escalation_ratio"] == 0.0
    assert summary["turns_total"] == 2 and summary["cache_hits_total"] == 1
    assert TurnStats().summary()["escalation_ratio"] is None
