"""Shared fixtures: a real edge node process on free loopback ports, with the bundled models.

Edge nodes are started the same way the load generator starts them (bench/loadgen/server.py): a
fresh cache directory per node unless the test names one, so answers cached by an earlier run do
not change which route a test sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.loadgen.server import EdgeProcess, spawn_edge, stop_edge

__all__ = ["ARTIFACTS", "ROOT", "EdgeProcess", "start_edge", "stop_edge"]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def start_edge(
    name: str, env_extra: dict[str, str] | None = None, timeout: float = 120, fsize_bytes: int | None = None
) -> EdgeProcess:
    return spawn_edge(name, env_extra, timeout=timeout, log_dir=ARTIFACTS, fsize_bytes=fsize_bytes)


@pytest.fixture(scope="session")
def edge() -> Iterator[EdgeProcess]:
    """One edge node for the whole run; idle timeout shortened so idle tests finish quickly."""
    node = start_edge("edge", {"XIAOZHI__SERVER__IDLE_TIMEOUT_S": "6"})
    yield node
    stop_edge(node)
