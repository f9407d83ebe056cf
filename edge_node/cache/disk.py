"""L3: a directory of files that survives a restart, with a size cap and LRU eviction.

One file per entry, named by the SHA-256 of the key (the key may hold any text). A file is
``MAGIC | payload length (u32) | CRC-32 of payload (u32) | payload``; it is written to a temporary
file in the same directory and renamed over the final name, so a reader sees either the old
entry, the new one or nothing, never half a file. Recency is the file's mtime (touched on a
hit), so the LRU order survives a restart too. An entry that is truncated, has a bad header or
a bad checksum is a miss: it is logged and deleted, and nothing is raised to the caller. At start
every entry's header is checked against its file size (a cheap read of 12 bytes), so truncated and
foreign files are dropped before they count against the size cap.

A disk that fails (full: ENOSPC, over a file-size limit: EFBIG, read-only: EROFS/EACCES) costs the
turn nothing: the write is skipped, each failure is counted in ``xiaozhi_cache_errors_total`` and
logged once per kind of failure, not once per entry -- a full disk would otherwise write a warning
for every sentence of every turn into the log on that same full disk.

Every method does file I/O and is synchronous: callers on the event loop run them in an
executor (``TieredCache`` does). A lock makes the index safe if more than one thread is used.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import struct
import tempfile
import threading
import time
import zlib
from pathlib import Path

from edge_node import metrics

log = logging.getLogger(__name__)

MAGIC = b"XZC1"
_HEADER = struct.Struct("<4sII")
_SUFFIX = ".bin"


def _file_name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest() + _SUFFIX


class DiskCache:
    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_bytes = max(0, int(max_bytes))
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.corrupt = 0
        self.errors = 0
        # (op, error) pairs already logged: each kind of disk failure gets one line, then only counts.
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        # file name -> (size on disk, last use); rebuilt from the directory at start.
        self._index: dict[str, tuple[int, float]] = {}
        self.size_bytes = 0
        self.usable = True
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._scan()
        except OSError as exc:
            # A cache that cannot be opened is an empty one: the node still serves every turn.
            log.warning("disk cache %s unusable, running without it: %s", self.dir, exc)
            self.usable = False

    def _problem(self, op: str, exc: OSError | None, message: str, *args: object) -> None:
        """Count a disk problem; log it only the first time this kind (op, errno) happens."""
        error = errno.errorcode.get(exc.errno or 0, "OSError") if exc is not None else "bad_entry"
        self.errors += 1
        metrics.CACHE_ERRORS.labels(cache=self.dir.name, op=op, error=error).inc()
        if (op, error) in self._logged:
            log.debug(message, *args)
            return
        self._logged.add((op, error))
        log.warning(
            message + " (further %s %s errors are counted in xiaozhi_cache_errors_total, not logged)", *args, op, error
        )

    def _scan(self) -> None:
        bad = 0
        for entry in os.scandir(self.dir):
            if not entry.is_file():
                continue
            if entry.name.startswith(".tmp"):
                # A write that never reached its rename (killed mid-write): garbage.
                self._unlink(Path(entry.path))
                continue
            if not entry.name.endswith(_SUFFIX):
                continue
            st = entry.stat()
            if not self._header_fits(entry.path, st.st_size):
                bad += 1
                self._unlink(Path(entry.path))
                continue
            self._index[entry.name] = (st.st_size, st.st_mtime)
            self.size_bytes += st.st_size
        if bad:
            self.corrupt += bad
            metrics.CACHE_ERRORS.labels(cache=self.dir.name, op="corrupt", error="bad_entry").inc(bad)
            log.warning(
                "disk cache %s: %d corrupt entries (truncated or not cache files) removed at start", self.dir, bad
            )
        self._evict()

    @staticmethod
    def _header_fits(path: str, size: int) -> bool:
        """The entry's header is ours and its length field matches the file: what a truncated or
        foreign file fails (a damaged payload is caught by its CRC when it is read)."""
        if size < _HEADER.size:
            return False
        try:
            with open(path, "rb") as f:
                head = f.read(_HEADER.size)
        except OSError:
            return False
        magic, length, _crc = _HEADER.unpack(head)
        return magic == MAGIC and length == size - _HEADER.size

    def __len__(self) -> int:
        return len(self._index)

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._problem("remove", exc, "disk cache: cannot remove %s: %s", path, exc)

    def _forget(self, name: str) -> None:
        old = self._index.pop(name, None)
        if old is not None:
            self.size_bytes -= old[0]

    def get(self, key: str) -> bytes | None:
        if not self.usable:
            self.misses += 1
            return None
        name = _file_name(key)
        path = self.dir / name
        with self._lock:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                self._forget(name)
                self.misses += 1
                return None
            except OSError as exc:
                self._problem("read", exc, "disk cache: cannot read %s: %s", path, exc)
                self.misses += 1
                return None
            payload = self._decode(data)
            if payload is None:
                self.corrupt += 1
                self.misses += 1
                metrics.CACHE_ERRORS.labels(cache=self.dir.name, op="corrupt", error="bad_entry").inc()
                log.warning("disk cache: corrupt entry %s (%d bytes) removed", path, len(data))
                self._unlink(path)
                self._forget(name)
                return None
            now = time.time()
            try:
                os.utime(path, (now, now))
            except OSError:
                pass
            if name not in self._index:
                self.size_bytes += len(data)
            self._index[name] = (len(data), now)
            self.hits += 1
            return payload

    @staticmethod
    def _decode(data: bytes) -> bytes | None:
        if len(data) < _HEADER.size:
            return None
        magic, length, crc = _HEADER.unpack_from(data)
        payload = data[_HEADER.size :]
        if magic != MAGIC or length != len(payload) or zlib.crc32(payload) != crc:
            return None
        return payload

    def put(self, key: str, value: bytes) -> bool:
        """Write ``value`` atomically; False when it is not stored (too big, disk error)."""
        if not self.usable:
            return False
        data = _HEADER.pack(MAGIC, len(value), zlib.crc32(value)) + value
        if len(data) > self.max_bytes:
            return False
        name = _file_name(key)
        with self._lock:
            tmp: str | None = None
            try:
                fd, tmp = tempfile.mkstemp(prefix=".tmp", dir=self.dir)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.dir / name)
            except OSError as exc:
                self._problem("write", exc, "disk cache: cannot write %s: %s", self.dir / name, exc)
                if tmp is not None:
                    self._unlink(Path(tmp))
                return False
            self._forget(name)
            self._index[name] = (len(data), time.time())
            self.size_bytes += len(data)
            self._evict()
            return True

    def delete(self, key: str) -> None:
        name = _file_name(key)
        with self._lock:
            self._unlink(self.dir / name)
            self._forget(name)

    def _evict(self) -> None:
        if self.size_bytes <= self.max_bytes:
            return
        for name, _ in sorted(self._index.items(), key=lambda item: item[1][1]):
            if self.size_bytes <= self.max_bytes:
                break
            self._unlink(self.dir / name)
            self._forget(name)
            self.evictions += 1
