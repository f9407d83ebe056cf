"""Where the edge's routing policy comes from: the hub's KV bucket, else the local file, else defaults.

Every edge watches ``xz_routing/routing`` in the hub's JetStream KV, so an admin changes routing
for the whole fleet in one place and it takes effect within a second, without a restart. The
local ``routing.yaml`` is the fallback: it is what the node uses before it has reached the hub
and if the bucket holds nothing. A config that does not validate is refused (logged with every
problem, counted in ``xiaozhi_routing_reloads_total{result="refused"}``) and the policy in
force stays; so does the last good one when the link goes down.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import nats.errors
import nats.js.errors

from edge_node import metrics
from edge_node.cloud_link.kv_watch import RETRY_S, KvWatch
from edge_node.cloud_link.link import CloudLink
from shared.nats import subjects as s
from shared.routing_config import RoutingConfigError, RoutingPolicy, default_policy, load_routing_file, parse_routing

log = logging.getLogger("edge_node.routing_source")

__all__ = ["RoutingSource"]


class RoutingSource(KvWatch):
    task_name = "routing-watch"
    pause_after_watch_s = RETRY_S

    def __init__(self, file: str = "", link: CloudLink | None = None, watch_kv: bool = True) -> None:
        super().__init__(link, watch_kv)
        self.file = file
        self.policy: RoutingPolicy = default_policy()
        self.origin = "defaults"
        self.revision: int | None = None  # KV revision in force, when it came from KV
        self.last_error = ""
        self.refused_revision: int | None = None  # not retried until a newer revision arrives
        if file:
            # A bad local file is a start-up error: the operator is at the box and must see it.
            self.policy = load_routing_file(file)
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

    def reload_file(self) -> bool:
        if not self.file:
            return False
        try:
            text = Path(self.file).read_text(encoding="utf-8")
        except OSError as exc:
            log.error("routing file %s unreadable, keeping %s: %s", self.file, self.origin, exc)
            return False
        return self.apply(text, f"file {self.file}")

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
