"""The revoked-devices KV bucket (``xz_revoked``): the console writes it, every edge watches it.

One key per revoked device, its value a small JSON record (who, when, why); un-revoking deletes
the key. The console's database is the source of truth: the console puts what it holds into the
bucket after every change and again whenever it (re)connects, so a revocation made while NATS was
down still reaches the edges. The cloud creates the bucket (the console at connect, ``xiaozhi-cloud
buckets``), with these settings; edges only read and watch it.

Device ids are MACs (``d8:3b:da:12:34:56``) and KV keys may not hold ``:``: a key is the device id
with every character outside ``[a-z0-9_-]`` written as ``=`` and two hex digits per UTF-8 byte,
which reads back without a lookup (a delete marker carries only its key).
"""

from __future__ import annotations

import json
import time
from typing import Any

from shared.nats.subjects import REVOKED_BUCKET

__all__ = ["REVOKED_BUCKET", "device_of", "key_of", "open_bucket", "parse_record", "record"]

_PLAIN = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


def key_of(device_id: str) -> str:
    """The KV key of a device (ids compare lower-case everywhere: the edge lower-cases Device-Id)."""
    out = []
    for ch in device_id.strip().lower():
        out.append(ch if ch in _PLAIN else "".join(f"={b:02x}" for b in ch.encode("utf-8")))
    return "".join(out) or "=00"


def device_of(key: str) -> str:
    """The device id a key stands for (the inverse of :func:`key_of`)."""
    raw = bytearray()
    i = 0
    while i < len(key):
        escape = key[i + 1 : i + 3] if key[i] == "=" else ""
        if len(escape) == 2 and all(c in "0123456789abcdefABCDEF" for c in escape):
            raw.append(int(escape, 16))
            i += 3
        else:  # not an escape this module wrote (a hand-made key): taken literally
            raw += key[i].encode("utf-8")
            i += 1
    return raw.decode("utf-8", errors="replace")


def record(device_id: str, by: str, reason: str = "", at: float | None = None) -> bytes:
    return json.dumps(
        {"device": device_id, "revoked_at": time.time() if at is None else at, "by": by, "reason": reason}
    ).encode("utf-8")


def parse_record(data: bytes | None) -> dict[str, Any]:
    """The value as a dict; a value that is not one (hand-written with the nats CLI) still revokes."""
    try:
        value = json.loads(data or b"{}")
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, huge numbers, deep nesting
        return {}
    return value if isinstance(value, dict) else {}


async def open_bucket(js: Any, create: bool) -> Any:
    """The bucket, created when missing and ``create``; None when missing and not ``create``.

    One history entry per key is enough: only the current state matters, and a delete marker
    replaces the record, so the stream holds one message per device ever revoked.
    """
    import nats.js.errors
    from nats.js.api import KeyValueConfig, StorageType

    try:
        return await js.key_value(REVOKED_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        if not create:
            return None
        return await js.create_key_value(KeyValueConfig(bucket=REVOKED_BUCKET, history=1, storage=StorageType.FILE))
