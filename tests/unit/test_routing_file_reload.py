"""The local routing file is followed while the node runs: an edit takes effect, a bad edit is refused
and the policy in force stays, and while the hub's policy is in force an edit only replaces the
fallback. In process, no cloud link: the file watch is what is tested (the edge-level test with
SIGHUP is tests/edge/test_routing_reload.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from edge_node.routing.source import RoutingSource

GOOD = "order: [intent, cache, llm]\n"
LLM_ONLY = "order: [llm]\n"
BAD = "order: [intent, nonsense]\n"


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _edit(path: Path, text: str) -> None:
    """Write as an editor does (a new file renamed over the old), and make sure the stat differs
    even on a file system with coarse timestamps."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


async def test_edits_apply_bad_edits_are_refused_and_the_last_good_policy_stays(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(GOOD, encoding="utf-8")
    source = RoutingSource(str(path), None, watch_kv=False, file_poll_s=0.05)
    await source.start()
    try:
        assert source.policy.order == ["intent", "cache", "llm"] and source.origin == f"file {path}"
        _edit(path, LLM_ONLY)
        assert await _until(lambda: source.policy.order == ["llm"]), source.policy.order
        assert source.last_error == ""

        _edit(path, BAD)
        assert await _until(lambda: "order.1" in source.last_error), source.last_error
        assert source.policy.order == ["llm"]  # the last good one stays

        path.unlink()  # a file removed by mistake: nothing changes
        await asyncio.sleep(0.3)
        assert source.policy.order == ["llm"] and "unreadable" in source.last_error

        _edit(path, GOOD)
        assert await _until(lambda: source.policy.order == ["intent", "cache", "llm"]), source.policy.order
        assert source.last_error == ""
    finally:
        await source.stop()


async def test_a_check_can_be_asked_for_without_polling(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(GOOD, encoding="utf-8")
    source = RoutingSource(str(path), None, watch_kv=False, file_poll_s=0)  # SIGHUP only
    await source.start()
    try:
        _edit(path, LLM_ONLY)
        await asyncio.sleep(0.3)
        assert source.policy.order == ["intent", "cache", "llm"], "polled although polling is off"
        source.check_file_now()
        assert await _until(lambda: source.policy.order == ["llm"]), source.policy.order
    finally:
        await source.stop()


async def test_while_the_hubs_policy_is_in_force_an_edit_only_replaces_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(GOOD, encoding="utf-8")
    source = RoutingSource(str(path), None, watch_kv=False, file_poll_s=0.05)
    await source.start()
    try:
        assert source.apply("order: [cache, llm]\n", "kv xz_routing/routing rev 3", revision=3)
        _edit(path, LLM_ONLY)
        assert await _until(lambda: source.file_policy is not None and source.file_policy.order == ["llm"])
        assert source.policy.order == ["cache", "llm"] and source.revision == 3
        _edit(path, BAD)
        assert await _until(lambda: "order.1" in source.last_error)
        assert source.file_policy is not None and source.file_policy.order == ["llm"]
        assert source.policy.order == ["cache", "llm"]
    finally:
        await source.stop()
