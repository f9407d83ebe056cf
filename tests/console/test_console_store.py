"""The console's store on each backend (a real SQLite file, a real PostgreSQL server: conftest.py):
the schema made on an empty database and found again on restart with every row, processes starting
on the same empty database at once, and values the database could refuse (long or NUL-holding text,
ids beyond a 32-bit integer, full-precision timestamps)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect

from cloud.console.serve import create_admin
from cloud.console.store import MAX_ID, LoginSession, Store, StoreError
from shared.fleet_registry import FleetRegistry

from . import pg
from .conftest import Databases

TABLES = {"audit", "device_revocations", "devices", "edges", "login_sessions", "routing_versions", "users"}
BEAT_AT = 1796469742.9474123  # a heartbeat's time, to the last bit a double holds


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _at_once(n: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``work(i)`` in n threads released together; (results, errors)."""
    barrier = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results.append(work(i))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


def test_the_schema_is_made_on_an_empty_database_and_found_again_with_every_row(databases: Databases) -> None:
    url = databases.new()
    assert _tables(url) == set()
    store = Store(url)
    try:
        assert _tables(url) == TABLES
        uid = store.add_user("alice", "hash-1")
        csrf = store.open_session(uid, "t" * 64, 3600)
        v1 = store.add_routing_version("llm: {}\n", "alice", "first", 7)
        store.audit("alice", "routing.publish", "routing v1", {"diff": "+ x", "n": 1})
        store.record_heartbeat("edge-a", {"version": "1.2.3", "devices": [{"id": "aa:bb:cc:00:00:01"}]}, now=BEAT_AT)
        store.add_pending_device("aa:bb:cc:00:00:02", "123456", "1.6.0")
        store.bind("123456", "edge-a", "alice")
        store.revoke("aa:bb:cc:00:00:02", "alice", "lost")
    finally:
        store.close()

    # Restart on the same database: the tables are there, nothing is lost or made twice.
    store = Store(url)
    try:
        assert _tables(url) == TABLES
        assert store.user_count() == 1 and store.user_hash("alice") == (uid, "hash-1")
        principal = store.session_principal("t" * 64)
        assert principal is not None and principal.username == "alice" and principal.csrf == csrf
        assert store.routing_version(v1["id"]) == v1
        entry = store.audit_log(10)[0]
        assert (entry["user"], entry["action"], entry["detail"], entry["ok"]) == (
            "alice",
            "routing.publish",
            {"diff": "+ x", "n": 1},
            True,
        )
        edge = store.edges()[0]
        assert edge["id"] == "edge-a" and edge["version"] == "1.2.3"
        assert edge["first_seen"] == BEAT_AT and edge["last_seen"] == BEAT_AT  # a double, not a 4-byte real
        device = store.device("aa:bb:cc:00:00:02")
        assert device is not None and device["state"] == "active" and device["edge_id"] == "edge-a"
        assert device["revoked_by"] == "alice" and device["revoked_reason"] == "lost"
        assert store.device("aa:bb:cc:00:00:01")["connected_edge"] == "edge-a"  # type: ignore[index]
        # Ids go on from where they were (a PostgreSQL sequence is not reset by a restart).
        v2 = store.add_routing_version("llm: {}\n", "alice", "second", 8, rollback_of=v1["id"])
        assert v2["id"] == v1["id"] + 1 and [v["id"] for v in store.routing_versions()] == [v2["id"], v1["id"]]
        with pytest.raises(StoreError, match="already exists"):
            store.add_user("alice", "hash-2")
        # Signing out everywhere on a password change (the cascade the session table relies on).
        store.set_password("alice", "hash-3")
        with store.tx() as s:
            assert s.query(LoginSession).count() == 0
    finally:
        store.close()

    # Provisioning's view of the same database (the registry alone) sees the console's changes.
    registry = FleetRegistry(url)
    try:
        assert registry.is_revoked("aa:bb:cc:00:00:02") and registry.assigned_counts() == {"edge-a": 2}
    finally:
        registry.close()


def test_processes_starting_on_one_empty_database_at_once_all_start(databases: Databases) -> None:
    """Two console pods in a rollout, or console-admin beside the console: all but one failed on both
    backends before (PostgreSQL: a duplicate pg_type row; SQLite: "table ... already exists")."""
    for _round in range(3):
        url = databases.new()
        # Two consoles and two provisioning services (the registry alone) on one empty database.
        stores, errors = _at_once(4, lambda i, url=url: Store(url) if i % 2 else FleetRegistry(url))
        for store in stores:
            store.close()
        assert errors == [] and len(stores) == 4
        assert _tables(url) == TABLES


def test_a_heartbeat_the_database_could_refuse_is_fitted_not_lost(databases: Databases) -> None:
    """Edge ids are any [A-Za-z0-9_-] token, versions and device ids come from the edge: PostgreSQL
    refuses NUL and over-long text, and the heartbeat (the console's view of the edge) would be lost."""
    registry = FleetRegistry(databases.new())
    try:
        long_edge = "e" * 300
        beat = {"version": "1.0\x00beta", "devices": [{"id": "aa:bb\x00:cc" + "d" * 100, "firmware": "2.\x005"}]}
        registry.record_heartbeat(long_edge, beat, now=BEAT_AT)
        (edge,) = registry.edges()
        assert edge["id"] == long_edge[:128] and edge["version"] == "1.0beta"
        assert edge["snapshot"]["devices"][0]["firmware"] == "2.\x005"  # the JSON snapshot keeps what was sent
    finally:
        registry.close()


def test_one_user_name_added_at_once_by_several_callers_is_added_once(databases: Databases) -> None:
    store = Store(databases.new())
    try:
        ids, errors = _at_once(4, lambda _i: store.add_user("bob", "hash"))
        assert len(ids) == 1 and len(errors) == 3, errors
        assert all(isinstance(e, StoreError) and "already exists" in str(e) for e in errors), errors
        assert store.user_count() == 1
    finally:
        store.close()


def test_values_a_database_could_refuse_are_refused_or_fitted_before_they_reach_it(databases: Databases) -> None:
    url = databases.new()
    store = Store(url)
    try:
        for name in ("", "x" * 65, "a\x00b"):
            with pytest.raises(StoreError, match="1 to 64 characters"):
                store.add_user(name, "hash")
        assert store.add_user("x" * 64, "hash") >= 1
        # The audit log takes anything (it records refused requests): fitted to its columns.
        store.audit("u" * 80, "a\x00" * 40, "t\x00" * 150, {"raw": "\x00"}, ok=False)
        entry = store.audit_log(1)[0]
        assert entry["user"] == "u" * 64 and len(entry["action"]) == 64 and len(entry["target"]) == 200
        assert "\x00" not in entry["action"] + entry["target"] and entry["detail"] == {"raw": "\x00"}
        version = store.add_routing_version("llm: {}\n", "alice", "a\x00b" * 200, None)
        assert len(version["comment"]) == 500 and "\x00" not in version["comment"]
        # Ids no row can have: not found, not a database error (PostgreSQL's Integer is 32-bit; SQLite
        # refused anything past 64 bits).
        for missing in (0, -1, MAX_ID + 1, 2**63, 10**30):
            assert store.routing_version(missing) is None
        assert store.audit_log(10, before_id=10**30) == store.audit_log(10)
        assert store.audit_log(10, before_id=1) == [] and store.audit_log(10, before_id=-(10**30)) == []
    finally:
        store.close()
    # The command line gets a message, not a traceback.
    assert create_admin(url, "y" * 65, "correct horse battery") == 2
    assert create_admin(url, "carol", "correct horse battery") == 0
    assert create_admin(url, "carol", "correct horse battery") == 2


def test_without_the_server_binaries_postgresql_tests_skip_naming_the_debian_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg.glob, "glob", lambda _pattern: [])
    with pytest.raises(pg.PostgresUnavailable, match="apt-get install postgresql"):
        pg.postgres_bin_dir()
