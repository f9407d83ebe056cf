"""Where the edge's routing policy comes from: the hub's KV bucket, else the local file, else defaults.

Every edge watches ``xz_routing/routing`` in the hub's JetStream KV, so an admin changes routing
for the whole fleet in one place and it takes effect within a second, without a restart. The
local ``routing.yaml`` is the fallback: it is what the node uses before it has reached the hub
and if the bucket holds nothing. It is watched too (checked every ``routing.file_poll_s`` and at
SIGHUP), so a field tech's edit takes effect without a restart; while the hub's policy is in force
an edited file is only validated and kept as the fallback. A config that does not validate, from
either source, is refused (logged with every problem, counted in
``xiaozhi_routing_reloads_total{result="refused"}``) and the policy in force stays; so does the
last good one when the link goes down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import nats.errors
import nats.js.errors

from edge_node import metrics
from edge_node.cloud_link.kv_watch import RETRY_S, KvWatch
from edge_node.cloud_link.link import CloudLink
from shared.nats import subjects as s
from shared.routing_config import RoutingConfigError, RoutingPolicy, default_policy, load_routing_file, parse_routing

log = logging.getLogger(__name__)

__all__ = ["RoutingSource"]


class RoutingSource(KvWatch):
    task_name = "routing-watch"
    pause_after_watch_s = RETRY_S

    def __init__(
        self, file: str = "", link: CloudLink | None = None, watch_kv: bool = True, file_poll_s: float = 2.0
    ) -> None:
        super().__init__(link, watch_kv)
        self.file = file
        self.file_poll_s = file_poll_s
        self.policy: RoutingPolicy = default_policy()
        self.origin = "defaults"
        self.revision: int | None = None  # KV revision in force, when it came from KV
        self.last_error = ""
        self.refused_revision: int | None = None  # not retried until a newer revision arrives
        # The local file as last read: its stat (to notice an edit cheaply) and its text (to tell an
        # edit from a touch), and the policy it holds while the hub's is in force.
        self._file_stamp: tuple[int, int, int] | None = None
        self._file_text: str | None = None
        self.file_policy: RoutingPolicy | None = None
        self._file_task: asyncio.Task[None] | None = None
        self._file_check: asyncio.Event | None = None
        if file:
            # A bad local file is a start-up error: the operator is at the box and must see it.
            self._file_stamp = _stamp(file)
            self.policy = self.file_policy = load_routing_file(file)
            self._file_text = _read(file)
            self.origin = f"file {file}"
        self._apply_limits()

    def _apply_limits(self) -> None:
        if self.link is not None:
            self.link.configure_breakers(self.policy.limits("cloud"))

    def apply(self, data: bytes | str, origin: str, revision: int | None = None) -> bool:
        """Validate and switch to a new policy; on any problem keep the current one."""
        try:
            policy = parse_routing(data, origin)
        except RoutingConfigError as exc:
            self.last_error = str(exc)
            self.refused_revision = revision
            metrics.ROUTING_RELOADS.labels(result="refused").inc()
            log.error("routing config refused, keeping the one from %s: %s", self.origin, exc)
            return False
        self.policy, self.origin, self.revision, self.last_error = policy, origin, revision, ""
        self._apply_limits()
        metrics.ROUTING_RELOADS.labels(result="applied").inc()
        log.info("routing config applied from %s", origin)
        return True

    # -- the local file -------------------------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        if self.file:
            self._file_check = asyncio.Event()
            self._file_task = asyncio.create_task(self._watch_file(), name="routing-file-watch")

    async def stop(self) -> None:
        if self._file_task is not None:
            self._file_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._file_task
        await super().stop()

    def check_file_now(self) -> None:
        """Re-read the file at once (SIGHUP) instead of at the next poll."""
        if self._file_check is not None:
            self._file_check.set()

    async def _watch_file(self) -> None:
        assert self._file_check is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._file_check.wait(), self.file_poll_s if self.file_poll_s > 0 else None)
            asked = self._file_check.is_set()
            self._file_check.clear()
            stamp = await asyncio.to_thread(_stamp, self.file)
            if stamp == self._file_stamp and not asked:
                continue
            self._file_stamp = stamp
            try:
                await self.reload_file()
            except Exception:  # noqa: BLE001 - the watch must outlive any one bad edit
                log.exception("routing file %s: reload failed, keeping %s", self.file, self.origin)

    async def reload_file(self) -> bool:
        """Read the file again; True when its policy now answers turns.

        The same parser as at start and as the KV watch: a file that does not validate is refused
        and the policy in force stays. While the hub's policy is in force, a valid file is only kept
        as the fallback (the fleet's copy wins, as at start).
        """
        if not self.file:
            return False
        try:
            text = await asyncio.to_thread(_read, self.file)
        except (OSError, UnicodeDecodeError) as exc:
            self.last_error = f"routing file {self.file} unreadable: {exc}"
            metrics.ROUTING_RELOADS.labels(result="refused").inc()
            log.error("routing file %s unreadable, keeping the config from %s: %s", self.file, self.origin, exc)
            return False
        origin = f"file {self.file}"
        if text == self._file_text:  # touched, or edited back to what is already in use
            if self.origin == origin:
                self.last_error = ""
            return self.origin == origin
        if self.revision is not None:  # the hub's policy is in force
            try:
                policy = parse_routing(text, origin)
            except RoutingConfigError as exc:
                self.last_error = str(exc)
                metrics.ROUTING_RELOADS.labels(result="refused").inc()
                log.error("routing file %s refused (the hub's policy stays in force): %s", self.file, exc)
                return False
            self.file_policy, self._file_text = policy, text
            metrics.ROUTING_RELOADS.labels(result="standby").inc()
            log.info(
                "routing file %s changed and is valid; kept as the fallback, %s stays in force", self.file, self.origin
            )
            return False
        if not self.apply(text, origin):
            return False
        self.file_policy, self._file_text = self.policy, text
        return True

    # -- KV watch ------------------------------------------------------------------------------
    async def _watch_once(self) -> None:
        """Follow the key until the watcher breaks; re-checks the revision when it goes quiet."""
        nc = self.link.nc if self.link is not None else None
        if nc is None:
            return
        js = nc.jetstream(timeout=2.0, domain=s.JS_DOMAIN)
        try:
            kv = await js.key_value(s.ROUTING_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            log.debug("routing bucket %s not created yet", s.ROUTING_BUCKET)
            return
        watcher = await kv.watch(s.ROUTING_KEY)
        try:
            while not self._restart.is_set():
                try:
                    entry = await watcher.updates(timeout=10.0)
                except nats.errors.TimeoutError:
                    # Quiet: make sure nothing was missed (a watcher can silently die with the link).
                    try:
                        latest = await kv.get(s.ROUTING_KEY)
                    except nats.js.errors.KeyNotFoundError:
                        continue
                    if latest.revision not in (self.revision, self.refused_revision) and latest.value is not None:
                        self.apply(latest.value, f"kv {s.ROUTING_BUCKET}/{s.ROUTING_KEY}", latest.revision)
                    continue
                if entry is None or entry.value is None or entry.operation not in (None, "PUT"):
                    continue  # the end-of-initial-values marker, a delete or a purge
                if entry.revision in (self.revision, self.refused_revision):
                    continue
                self.apply(entry.value, f"kv {s.ROUTING_BUCKET}/{s.ROUTING_KEY} rev {entry.revision}", entry.revision)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()


def _stamp(path: str) -> tuple[int, int, int] | None:
    """What changes when a file is edited in place or replaced (an editor's rename): None if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")
