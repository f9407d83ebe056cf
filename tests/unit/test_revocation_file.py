"""The edge's revocation list on disk: read at start, rewritten atomically after every change, replaced
by the hub's bucket when it is heard (edge_node/auth/revocations.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edge_node.auth.revocations import RevocationSource, revocations_path
from edge_node.config import load_config


async def _settled(source: RevocationSource) -> None:
    """Until the background writer has caught up with the last change."""
    for _ in range(200):
        if source._saver is None or source._saver.done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the revocation file was never written")


async def test_the_list_survives_a_restart_and_the_bucket_stays_the_authority(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "revocations.json"
    first = RevocationSource(None, path=path)
    await first.start()
    assert first.revoked == set() and not path.exists()  # nothing known yet: nothing written
    first._revoke("aa:01", "test")
    first._revoke("aa:02", "test")
    await _settled(first)
    first._unrevoke("aa:02")
    await first.stop()  # waits for the last write
    assert json.loads(path.read_text())["devices"] == ["aa:01"]
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in path.parent.iterdir()] == ["revocations.json"]  # no temporary file left behind

    again = RevocationSource(None, path=path)  # the edge restarted, the hub unreachable
    await again.start()
    assert again.is_revoked("AA:01") and not again.is_revoked("aa:02")
    assert not again.synced  # known from disk, not yet from the hub
    seen: list[str] = []
    again.on_revoked.append(seen.append)
    again.replace({"aa:03"})  # the bucket: aa:01 was un-revoked while the edge was away, aa:03 revoked
    await again.stop()
    assert again.revoked == {"aa:03"} and seen == ["aa:03"]
    assert json.loads(path.read_text())["devices"] == ["aa:03"]


async def test_an_unreadable_file_is_set_aside_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "revocations.json"
    path.write_text("{torn")
    source = RevocationSource(None, path=path)
    await source.start()
    assert source.revoked == set()
    assert (tmp_path / "revocations.json.unreadable").read_text() == "{torn"  # kept for whoever investigates
    assert f"revocation file {path} unreadable" in caplog.text
    await source.stop()


def test_the_file_goes_next_to_the_disk_cache_unless_named() -> None:
    assert revocations_path(load_config(environ={})) is None  # no cache dir: memory only
    cfg = load_config(environ={}, overrides={"cache": {"dir": "/var/lib/xiaozhi/cache"}})
    assert revocations_path(cfg) == Path("/var/lib/xiaozhi/cache/revocations.json")
    cfg = load_config(environ={}, overrides={"auth": {"revocations_file": "/srv/r.json"}})
    assert revocations_path(cfg) == Path("/srv/r.json")
