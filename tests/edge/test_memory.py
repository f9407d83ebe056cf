"""Models are loaded once per process: connecting and leaving 200 times leaves RSS flat."""

from __future__ import annotations

import psutil
import pytest

from shared.client.device import DeviceClient
from tests.conftest import EdgeProcess

pytestmark = pytest.mark.slow


async def _cycle(edge: EdgeProcess, i: int) -> None:
    client = DeviceClient(edge.url, device_id=f"cc:00:00:00:{i // 256:02x}:{i % 256:02x}")
    await client.connect()
    await client.listen_start("auto")
    await client.close()


async def test_rss_flat_over_200_connect_disconnect_cycles(edge: EdgeProcess) -> None:
    proc = psutil.Process(edge.proc.pid)
    for i in range(20):  # warm up allocator pools and lazy imports
        await _cycle(edge, i)
    before = proc.memory_info().rss
    for i in range(200):
        await _cycle(edge, 1000 + i)
    after = proc.memory_info().rss
    growth_mb = (after - before) / 2**20
    print(f"\nRSS before {before / 2**20:.1f} MB, after 200 cycles {after / 2**20:.1f} MB ({growth_mb:+.1f} MB)")
    # A model loaded per connection would add >= 25 MB (VAD) to 160 MB (LLM) per cycle.
    assert growth_mb < 8, f"RSS grew {growth_mb:.1f} MB over 200 connections"
