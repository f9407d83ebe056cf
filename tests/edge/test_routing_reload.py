"""An edited routing.yaml takes effect on a running edge at SIGHUP, and a bad edit is refused.

Real edge process (on timing engines: the route taken is what is tested, not the answer), its routing
file polled never (``routing.file_poll_s: 0``) so that only the signal can have reloaded it.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_edge, stop_edge
from tests.edge.helpers import metric_at_least, metric_value, text_turn
from tests.faults.helpers import log_lines, metrics_text, timing_env, write_profile

pytestmark = pytest.mark.slow

RELOADS = "xiaozhi_routing_reloads_total"


async def _route(edge_url: str, device_id: str, edge: object, question: str) -> str:
    offset = edge.log_offset()  # type: ignore[attr-defined]
    await text_turn(edge_url, device_id, question, 30)
    lines = log_lines(edge, "-> route=", offset)  # type: ignore[arg-type]
    assert lines, "no route decision logged"
    return lines[-1].split("route=")[1].split()[0]


async def test_sighup_reloads_the_routing_file_and_a_bad_file_is_refused(tmp_path: Path) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("order: [intent, cache, llm]\n", encoding="utf-8")
    env = timing_env(
        write_profile(tmp_path),
        XIAOZHI__ROUTING__FILE=str(routing),
        XIAOZHI__ROUTING__FILE_POLL_S="0",
        XIAOZHI__LLM__MAX_TOKENS="6",
    )
    edge = start_edge("routing-reload", env)
    try:
        assert await _route(edge.url, "aa:bb:cc:00:09:01", edge, "What time is it?") == "intent"

        applied = metric_value(await metrics_text(edge), RELOADS, result="applied")
        routing.write_text("order: [llm]\n", encoding="utf-8")
        edge.proc.send_signal(signal.SIGHUP)
        assert await metric_at_least(edge.http, RELOADS, applied + 1, result="applied") == applied + 1
        assert await _route(edge.url, "aa:bb:cc:00:09:02", edge, "What time is it?") == "local_llm"

        refused = metric_value(await metrics_text(edge), RELOADS, result="refused")
        offset = edge.log_offset()
        routing.write_text("order: [intent, nonsense]\n", encoding="utf-8")
        edge.proc.send_signal(signal.SIGHUP)
        assert await metric_at_least(edge.http, RELOADS, refused + 1, result="refused") == refused + 1
        refusal = log_lines(edge, "routing config refused", offset)
        assert refusal and "order.1" in refusal[0], edge.log_text()[offset:]
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"{edge.http}/stats", timeout=10)).json()
        assert "order.1" in stats["edge"]["routing"]["error"], stats["edge"]["routing"]
        # The last good file stays in force.
        assert await _route(edge.url, "aa:bb:cc:00:09:03", edge, "What time is it?") == "local_llm"
        assert edge.proc.poll() is None and "Traceback" not in edge.log_text()
    finally:
        stop_edge(edge)
