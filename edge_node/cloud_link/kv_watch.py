"""Following a hub KV bucket for as long as the edge runs, across link outages.

The routing config and the revocation list are both kept by watching a bucket in the hub's
JetStream through the edge's leaf server. What differs is what a watch does (``_watch_once``);
what is the same lives here: watch only while the cloud link is up, start over when the link comes
back (a watcher does not survive the hub restarting behind the leaf), and retry after a short
pause when the bucket is missing or the watch fails, keeping what is in force meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from edge_node.cloud_link.link import CloudLink

__all__ = ["KvWatch"]

RETRY_S = 2.0


class KvWatch:
    """Subclasses implement ``_watch_once`` (return or raise when the watch ends) and ``_failed``."""

    task_name = "kv-watch"
    # Pause after a watch that ended normally before the next (0: go again at once).
    pause_after_watch_s = 0.0

    def __init__(self, link: CloudLink | None, enabled: bool) -> None:
        self.link = link
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None
        self._restart = asyncio.Event()

    async def start(self) -> None:
        if self.link is not None and self.link.configured and self.enabled:
            self.link.state.listeners.append(lambda up: self._restart.set() if up else None)
            self._task = asyncio.create_task(self._watch_forever(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch_once(self) -> None:
        raise NotImplementedError

    def _failed(self, exc: Exception) -> None:
        """A watch that failed (link down, no bucket yet...): say so at debug level, by default."""
        logging.getLogger(type(self).__module__).debug("%s: %r; retrying", self.task_name, exc)

    async def _watch_forever(self) -> None:
        assert self.link is not None
        while True:
            if not await self.link.wait_connected(5.0):
                continue
            try:
                await self._watch_once()
                pause = self.pause_after_watch_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the link went down, the bucket is missing...
                self._failed(exc)
                pause = RETRY_S
            if pause > 0:
                self._restart.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._restart.wait(), pause)
