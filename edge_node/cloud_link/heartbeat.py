"""This edge's heartbeat on ``xz.fleet.heartbeat.<edge>``: what the console and provisioning need.

Sessions, measured capacity and demand, whether the cloud link is up, which routing config is in
force, the WebSocket URL devices should use, version and uptime; every ``interval_s`` seconds. A
heartbeat that cannot be sent (link down) is skipped, not queued: a stale one is worthless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from edge_node.cloud_link.link import CloudLink
from shared.nats import subjects as s

log = logging.getLogger("edge_node.heartbeat")

__all__ = ["Heartbeat"]


class Heartbeat:
    def __init__(
        self, link: CloudLink, edge_id: str, snapshot: Callable[[], dict[str, Any]], interval_s: float
    ) -> None:
        self.link = link
        self.subject = s.heartbeat_subject(s.safe_token(edge_id))
        self.snapshot = snapshot
        self.interval_s = interval_s
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.link.configured:
            self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def beat(self) -> bool:
        nc = self.link.nc
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.publish(self.subject, json.dumps(self.snapshot()).encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - a missed heartbeat is only a missed heartbeat
            log.debug("heartbeat not sent: %r", exc)
            return False
        self.sent += 1
        return True

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval_s)
