"""The fleet's revoked devices, as this edge knows them: the hub's ``xz_revoked`` KV bucket, watched.

The console writes one key per revoked device (``shared.nats.revoked``) and deletes it when an admin
lifts the revocation. The edge watches the whole bucket through its leaf server. The cloud creates
the bucket (the console when it connects, ``xiaozhi-cloud buckets``): an edge may not create streams
(``shared.nats.configs.edge_permissions``), so until it exists the edge knows no revoked device and
looks again every few seconds. Each (re)watch starts with a
full snapshot, which replaces the set wholesale, so a change missed while the link was down is
caught up when it comes back. A watcher can die silently (the hub restarted behind the edge's own
leaf server, which stays up): whenever the watch is quiet the bucket's last sequence is checked,
and a change the watcher did not deliver starts a new watch; it is also renewed every
``resync_s``. While the link is down the last known set stays in force.

The set is also kept on disk (``auth.revocations_file``, by default ``revocations.json`` in the
cache directory), written atomically off the event loop after every change and read at start, so
an edge restarted while its site is cut off from the hub still refuses the devices it knew were
revoked. The bucket stays the authority: its first snapshot replaces what the file said, which is
how a revocation lifted while the edge was away reaches it.

A device that becomes revoked is handed to ``on_revoked`` (the server closes its live sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats.errors

from edge_node import metrics
from edge_node.cloud_link.kv_watch import KvWatch
from edge_node.cloud_link.link import CloudLink
from edge_node.config import EdgeConfig
from shared.files import write_atomic
from shared.nats import revoked
from shared.nats import subjects as s

log = logging.getLogger(__name__)

__all__ = ["RevocationSource", "revocations_path"]


def revocations_path(cfg: EdgeConfig) -> Path | None:
    """``auth.revocations_file``, else ``revocations.json`` next to the disk cache, else none."""
    if cfg.auth.revocations_file:
        return Path(cfg.auth.revocations_file)
    return Path(cfg.cache.dir) / "revocations.json" if cfg.cache.dir else None


class RevocationSource(KvWatch):
    task_name = "revocation-watch"

    def __init__(
        self,
        link: CloudLink | None,
        watch: bool = True,
        resync_s: float = 300.0,
        quiet_check_s: float = 3.0,
        path: Path | None = None,
    ) -> None:
        super().__init__(link, watch)
        self.path = path  # where the set is kept across restarts; None: memory only
        self.resync_s = resync_s
        self.quiet_check_s = quiet_check_s  # how long the watch may be quiet before the bucket is checked
        self.revoked: set[str] = set()  # lower-case device ids
        self.synced = False  # the fleet's list is known: a snapshot was read, or there is no bucket yet
        self.snapshots = 0  # full snapshots read from the bucket
        self.on_revoked: list[Callable[[str], None]] = []
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.path is not None:
            loaded = await asyncio.to_thread(self._load, self.path)
            self.revoked |= loaded
            metrics.REVOKED_DEVICES.set(len(self.revoked))
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._saver is not None:
            await asyncio.gather(self._saver, return_exceptions=True)

    def is_revoked(self, device_id: str) -> bool:
        return device_id.strip().lower() in self.revoked

    # -- the file ----------------------------------------------------------------------------------
    @staticmethod
    def _load(path: Path) -> set[str]:
        """The devices the file lists; a missing file is an empty list, an unreadable one is set aside."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            devices = {str(d).strip().lower() for d in data["devices"]}
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = path.with_name(path.name + ".unreadable")
            with contextlib.suppress(OSError):
                path.replace(aside)
            log.error("revocation file %s unreadable (%s): set aside as %s; waiting for the hub", path, exc, aside)
            return set()
        log.info("revocation list read from %s: %d device(s)", path, len(devices))
        return devices

    def _changed(self) -> None:
        """Write the set soon, off the loop; one writer, which picks up changes made while it wrote."""
        metrics.REVOKED_DEVICES.set(len(self.revoked))
        if self.path is None:
            return
        self._dirty = True
        if self._saver is None or self._saver.done():
            try:
                self._saver = asyncio.get_running_loop().create_task(self._save(), name="revocation-save")
            except RuntimeError:  # no loop (a synchronous caller): write now
                self._write(self.path, sorted(self.revoked))

    async def _save(self) -> None:
        assert self.path is not None
        while self._dirty:
            self._dirty = False
            try:
                await asyncio.to_thread(self._write, self.path, sorted(self.revoked))
            except OSError as exc:
                log.error("cannot write the revocation file %s: %s (kept in memory)", self.path, exc)
                return

    @staticmethod
    def _write(path: Path, devices: list[str]) -> None:
        data = {"saved_at": int(time.time()), "devices": devices}
        write_atomic(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"), 0o640)

    # -- changes ---------------------------------------------------------------------------------
    def _revoke(self, device_id: str, why: str) -> None:
        if device_id in self.revoked:
            return
        self.revoked.add(device_id)
        self._changed()
        log.warning("device %s revoked (%s)", device_id, why, extra={"device_id": device_id})
        for callback in list(self.on_revoked):
            try:
                callback(device_id)
            except Exception:  # noqa: BLE001 - one failing listener must not stop the watch
                log.exception("revocation listener failed for %s", device_id, extra={"device_id": device_id})

    def _unrevoke(self, device_id: str) -> None:
        if device_id in self.revoked:
            self.revoked.discard(device_id)
            self._changed()
            log.info("device %s un-revoked: it may connect again", device_id, extra={"device_id": device_id})

    def replace(self, snapshot: set[str]) -> None:
        """Take a full snapshot of the bucket as the set in force."""
        for device_id in self.revoked - snapshot:
            self._unrevoke(device_id)
        for device_id in sorted(snapshot - self.revoked):
            self._revoke(device_id, f"in KV {s.REVOKED_BUCKET}")
        if not self.snapshots:
            log.info("revocation list read from KV %s: %d device(s)", s.REVOKED_BUCKET, len(self.revoked))
        self.synced = True
        self.snapshots += 1
        self._changed()  # the file now says what the bucket says (and when it was last heard)

    # -- KV watch ------------------------------------------------------------------------------
    def _failed(self, exc: Exception) -> None:
        log.debug("revocation watch: %r; retrying (keeping %d revoked)", exc, len(self.revoked))

    async def _watch_once(self) -> None:
        """One snapshot, then changes, until the link restarts or ``resync_s`` passes."""
        nc = self.link.nc if self.link is not None else None
        if nc is None:
            raise RuntimeError("not connected")
        self._restart.clear()
        kv = await revoked.open_bucket(nc.jetstream(timeout=2.0, domain=s.JS_DOMAIN), create=False)
        if kv is None:
            if not self.synced:
                log.info("revocation bucket %s not created yet: no device is revoked", s.REVOKED_BUCKET)
                self.synced = True
            raise RuntimeError(f"no KV bucket {s.REVOKED_BUCKET} yet")  # looked for again shortly
        seen = await self._last_seq(kv)  # everything after it, the watcher must deliver
        watcher = await kv.watch(">")
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + self.resync_s
        snapshot: set[str] | None = set()  # None once the initial values are in
        try:
            while not self._restart.is_set() and loop.time() < renew_at:
                try:
                    entry = await watcher.updates(timeout=min(self.quiet_check_s, max(0.1, renew_at - loop.time())))
                except nats.errors.TimeoutError:
                    if snapshot is not None:
                        raise  # the initial values never finished: start over
                    if await self._last_seq(kv) > seen:
                        log.info("revocation watch missed a change (the hub restarted?): watching anew")
                        return
                    continue
                if entry is None:  # the end of the initial values
                    if snapshot is not None:
                        self.replace(snapshot)
                        snapshot = None
                    continue
                seen = max(seen, int(entry.revision or 0))
                device_id = revoked.device_of(entry.key)
                deleted = entry.operation in ("DEL", "PURGE")
                if snapshot is not None:
                    (snapshot.discard if deleted else snapshot.add)(device_id)
                elif deleted:
                    self._unrevoke(device_id)
                else:
                    record = revoked.parse_record(entry.value)
                    why = f"by {record.get('by') or '?'}: {record.get('reason') or 'no reason given'}"
                    self._revoke(device_id, why)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    @staticmethod
    async def _last_seq(kv: Any) -> int:
        status = await kv.status()
        return int(status.stream_info.state.last_seq or 0)
