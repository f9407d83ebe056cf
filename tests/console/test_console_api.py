"""The console's JSON API, every endpoint: unauthorised, CSRF, invalid input and the real thing.

The app runs in process (FastAPI's TestClient) connected to a real nats-server hub: heartbeats are
published on NATS, routing configs land in the real KV bucket. Every test runs twice, on a real SQLite
file and on a real PostgreSQL server (``databases`` in conftest.py), each time on a fresh database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
from fastapi.testclient import TestClient

from cloud.config import ConsoleConfig
from cloud.console.app import create_app
from cloud.console.auth import hash_password
from cloud.console.fleet import Fleet
from cloud.console.store import Store
from shared.nats import subjects as s
from shared.nats.configs import save_credential
from shared.nats.local import Hub
from shared.nats.server import free_port

from .conftest import Databases

PASSWORD = "correct horse battery"
ROUTING_A = """llm:
  default: local_llm
  rules:
    - {name: open-question, when: {complexity_at_least: 0.6}, route: cloud}
"""
ROUTING_B = ROUTING_A.replace("0.6", "0.7")


def _app(db: str, hub_url: str, cred: Path | str, **console: Any) -> tuple[TestClient, Store, Fleet]:
    """The console on the database at SQLAlchemy URL ``db`` (made on first use, reused after)."""
    cfg = ConsoleConfig(**{"cookie_secure": False, "stale_after_s": 2.0, "live_interval_s": 0.3, **console})
    store = Store(db)
    if store.user_hash("admin") is None:
        store.add_user("admin", hash_password(PASSWORD))
    fleet = Fleet(store, hub_url, str(cred), cfg.stale_after_s, cfg.live_interval_s)
    return TestClient(create_app(cfg, store, fleet)), store, fleet


@pytest.fixture(scope="module")
def hub(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, Path]]:
    """One hub per backend (hence ``databases``): each run of the module starts with empty KV buckets."""
    work = tmp_path_factory.mktemp("console-hub")
    hub = Hub(work / "hub")
    hub.credential("edge-t")
    cred = work / "cloud.json"
    save_credential(hub.cloud, cred)
    hub.start()
    yield hub, cred
    hub.stop()


@pytest.fixture(scope="module")
def api(hub: tuple[Hub, Path], databases: Databases) -> Iterator[tuple[TestClient, Store, Fleet]]:
    client, store, fleet = _app(databases.new(), hub[0].url, hub[1])
    with client:
        deadline = time.monotonic() + 10
        while not fleet.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fleet.connected
        yield client, store, fleet
    store.close()


def _login(client: TestClient, password: str = PASSWORD) -> dict[str, str]:
    r = client.post("/api/login", json={"username": "admin", "password": password})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf"]}


async def _nats(hub: Hub, action: Any) -> Any:
    nc = await nats.connect(hub.url, user="cloud", password=hub.cloud.password)
    try:
        return await action(nc)
    finally:
        await nc.close()


def _heartbeat(hub: Hub, edge: str, beat: dict[str, Any] | bytes) -> None:
    data = beat if isinstance(beat, bytes) else __import__("json").dumps(beat).encode()

    async def send(nc: Any) -> None:
        await nc.publish(s.heartbeat_subject(edge), data)
        await nc.flush()

    asyncio.run(_nats(hub, send))


def _kv_text(hub: Hub) -> str | None:
    async def read(nc: Any) -> str | None:
        js = nc.jetstream(domain=s.JS_DOMAIN)
        try:
            kv = await js.key_value(s.ROUTING_BUCKET)
            return (await kv.get(s.ROUTING_KEY)).value.decode()
        except Exception:  # noqa: BLE001 - no bucket or key yet
            return None

    return asyncio.run(_nats(hub, read))


def _wait(predicate: Any, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


# -- authentication -----------------------------------------------------------------------------
def test_every_api_endpoint_but_login_and_health_refuses_an_anonymous_caller(api: Any) -> None:
    client = TestClient(api[0].app)  # a fresh client: no cookie
    public = {"/api/login", "/api/health", "/api/openapi.json"}
    checked = 0
    for route in client.app.routes:
        path = getattr(route, "path", "")
        if not path.startswith("/api/") or path in public:
            continue
        for method in getattr(route, "methods", set()) - {"HEAD"}:
            url = path.replace("{edge_id}", "edge-t").replace("{device_id}", "x").replace("{version_id}", "1")
            r = client.request(method, url, json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert "log in" in r.json()["detail"]
            checked += 1
    assert checked >= 14


def test_login_refuses_a_wrong_password_and_sets_a_hardened_cookie(databases: Databases) -> None:
    client, store, _fleet = _app(databases.new(), "", "", cookie_secure=True)
    with client:
        r = client.post("/api/login", json={"username": "admin", "password": "wrong password!"})
        assert r.status_code == 401 and r.json()["detail"] == "wrong user name or password"
        r = client.post("/api/login", json={"username": "nobody", "password": PASSWORD})
        assert r.status_code == 401 and r.json()["detail"] == "wrong user name or password"
        r = client.post("/api/login", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 200 and len(r.json()["csrf"]) >= 32
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
        token = r.cookies.get("xz_console")
    with store.tx() as tx:  # only the token's hash is stored
        from cloud.console.store import LoginSession

        hashes = [row.token_hash for row in tx.query(LoginSession).all()]
    assert token is None or token not in hashes  # (httpx drops a Secure cookie over http)
    assert all(len(h) == 64 for h in hashes)
    store.close()


def test_failed_logins_are_rate_limited_even_for_the_right_password(databases: Databases) -> None:
    client, store, _fleet = _app(databases.new(), "", "", login_attempts=3, login_window_s=60)
    with client:
        for _ in range(3):
            wrong = {"username": "admin", "password": "guess guess guess"}
            assert client.post("/api/login", json=wrong).status_code == 401
        r = client.post("/api/login", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert "too many failed logins" in r.json()["detail"]
        audit = [e for e in store.audit_log() if e["action"] == "login"]
        assert [e["detail"]["result"] for e in audit[:2]] == ["rate_limited", "failed"]
    store.close()


def test_session_csrf_and_logout(api: Any) -> None:
    client = TestClient(api[0].app)
    headers = _login(client)
    assert client.get("/api/session").json() == {"user": "admin", "csrf": headers["X-CSRF-Token"]}
    # A state-changing request without (or with a wrong) CSRF token is refused before doing anything.
    r = client.post("/api/devices/bind", json={"code": "000000"})
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    r = client.post("/api/devices/bind", json={"code": "000000"}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    assert client.post("/api/logout").status_code == 403
    assert client.post("/api/logout", headers=headers).status_code == 204
    assert client.get("/api/session").status_code == 401


def test_pages_need_a_login_and_every_response_carries_security_headers(api: Any) -> None:
    client = TestClient(api[0].app)
    r = client.get("/fleet", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/fleet"
    assert client.get("/login").status_code == 200
    _login(client)
    for page in ("fleet", "devices", "routing", "live", "audit"):
        r = client.get(f"/{page}")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"], page
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"


def test_openapi_documents_every_endpoint(api: Any) -> None:
    spec = api[0].get("/api/openapi.json").json()
    for path in (
        "/api/login",
        "/api/session",
        "/api/logout",
        "/api/edges",
        "/api/edges/{edge_id}",
        "/api/devices",
        "/api/devices/{device_id}",
        "/api/devices/bind",
        "/api/devices/{device_id}/move",
        "/api/devices/{device_id}/revoke",
        "/api/devices/{device_id}/unrevoke",
        "/api/routing",
        "/api/routing/check",
        "/api/routing/publish",
        "/api/routing/rollback",
        "/api/routing/versions/{version_id}",
        "/api/live",
        "/api/audit",
        "/api/health",
    ):
        assert path in spec["paths"], path
    assert "422" in spec["paths"]["/api/routing/publish"]["post"]["responses"]


# -- fleet and devices --------------------------------------------------------------------------
def test_an_edge_appears_from_its_heartbeat_and_goes_stale(api: Any, hub: Any) -> None:
    client, _store, fleet = api
    _login(client)
    beat = {
        "edge": "edge-t",
        "version": "0.1.0",
        "sessions": 3,
        "max_sessions": 150,
        "capacity_turns_per_s": 1.5,
        "demand_turns_per_s": 0.2,
        "cloud_link": True,
        "first_audio_p95_s": 0.9,
        "escalation_ratio": 0.25,
        "ws_url": "ws://10.0.0.5:8000/xiaozhi/v1/",
        "turns_total": 10,
        "devices": [{"id": "aa:bb:cc:00:00:01", "session": "s1", "since": 1.0, "firmware": "1.6.0"}],
    }
    _heartbeat(hub[0], "edge-t", b"{not json")  # ignored, counted, nothing breaks
    _heartbeat(hub[0], "edge-t", beat)
    edge = _wait(lambda: next((e for e in client.get("/api/edges").json() if e["id"] == "edge-t"), None))
    assert edge["status"] == "up" and edge["sessions"] == 3 and edge["max_sessions"] == 150
    assert edge["cloud_link"] is True and edge["first_audio_p95_s"] == 0.9 and edge["escalation_ratio"] == 0.25
    assert fleet.bad_heartbeats >= 1
    assert client.get("/api/edges/edge-t").json()["version"] == "0.1.0"
    assert client.get("/api/edges/nope").status_code == 404
    device = client.get("/api/devices/AA:BB:CC:00:00:01").json()
    assert device["connected_edge"] == "edge-t" and device["firmware"] == "1.6.0" and device["state"] == "seen"
    # No heartbeat for stale_after_s: flagged stale, still listed.
    _wait(lambda: client.get("/api/edges/edge-t").json()["status"] == "stale", timeout_s=6)


def test_live_series_turns_heartbeat_counters_into_rates(api: Any, hub: Any) -> None:
    client, _store, _fleet = api
    _login(client)
    since = time.time()
    for total in (100, 130, 160):
        _heartbeat(
            hub[0],
            "edge-live",
            {"turns_total": total, "escalations_total": total // 10, "sessions": 2, "first_audio_p95_s": 1.1},
        )
        time.sleep(0.4)
    points = _wait(lambda: [p for p in client.get(f"/api/live?since={since}").json() if p["turns_per_s"] > 0])
    assert points[-1]["first_audio_p95_s"] >= 1.1 and points[-1]["edges_up"] >= 1


def test_bind_and_move_devices(api: Any, hub: Any) -> None:
    client, store, _fleet = api
    headers = _login(client)
    store.add_pending_device("aa:bb:cc:00:00:02", "424242", "1.5.9")  # stand-in for provisioning (issue 7)
    assert client.get("/api/devices?state=pending").json()[0]["activation_pending"] is True
    assert client.get("/api/devices?state=bogus").status_code == 422
    r = client.post("/api/devices/bind", json={"code": "4242"}, headers=headers)
    assert r.status_code == 422 and "6 digits" in r.json()["detail"]
    r = client.post("/api/devices/bind", json={"code": "999999"}, headers=headers)
    assert r.status_code == 404 and "999999" in r.json()["detail"]
    r = client.post("/api/devices/bind", json={"code": "424242", "edge": "no-such-edge"}, headers=headers)
    assert r.status_code == 422
    r = client.post("/api/devices/bind", json={"code": "424242", "edge": "edge-t", "extra": 1}, headers=headers)
    assert r.status_code == 422  # unknown fields are refused, not ignored
    r = client.post("/api/devices/bind", json={"code": "424242", "edge": "edge-t"}, headers=headers)
    assert r.status_code == 200
    bound = r.json()
    assert bound["state"] == "active" and bound["bound_by"] == "admin" and bound["edge_id"] == "edge-t"
    # The code is spent.
    assert client.post("/api/devices/bind", json={"code": "424242"}, headers=headers).status_code == 404
    _heartbeat(hub[0], "edge-u", {"sessions": 0})
    _wait(lambda: client.get("/api/edges/edge-u").status_code == 200)
    r = client.post("/api/devices/aa:bb:cc:00:00:02/move", json={"edge": "edge-u"}, headers=headers)
    assert r.status_code == 200 and r.json()["edge_id"] == "edge-u"
    assert client.post("/api/devices/ff:ff/move", json={"edge": "edge-u"}, headers=headers).status_code == 404
    assert client.post("/api/devices/aa:bb:cc:00:00:02/move", json={"edge": ""}, headers=headers).status_code == 422
    actions = [(e["action"], e["target"], e["ok"]) for e in client.get("/api/audit?limit=20").json()]
    assert ("device.move", "aa:bb:cc:00:00:02", True) in actions
    assert ("device.bind", "aa:bb:cc:00:00:02", True) in actions
    assert ("device.bind", "999999", False) in actions


def _revoked_in_kv(hub: Hub) -> dict[str, dict[str, Any]]:
    """Device id -> record, as the edges see the revocation bucket."""
    from shared.nats.revoked import device_of, parse_record

    async def read(nc: Any) -> dict[str, dict[str, Any]]:
        js = nc.jetstream(domain=s.JS_DOMAIN)
        try:
            kv = await js.key_value(s.REVOKED_BUCKET)
            keys = await kv.keys()
        except Exception:  # noqa: BLE001 - no bucket or no key yet
            return {}
        out = {}
        for k in keys:
            try:
                out[device_of(k)] = parse_record((await kv.get(k)).value)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                continue  # deleted (by the console's reconciliation) between listing and reading
        return out

    return asyncio.run(_nats(hub, read))


def test_revoke_and_unrevoke_a_device(api: Any, hub: Any) -> None:
    client, store, _fleet = api
    headers = _login(client)
    device = "aa:bb:cc:00:00:07"
    store.add_pending_device(device, "777777", "2.4.2")
    store.bind("777777", "", "admin")
    url = "/api/devices/AA:BB:CC:00:00:07/revoke"
    # Anonymous, without or with a wrong CSRF token: refused before anything changes.
    assert TestClient(client.app).post(url, json={"reason": "x"}).status_code == 401
    assert client.post(url, json={"reason": "stolen"}).status_code == 403
    assert client.post(url, json={"reason": "stolen"}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post(url, json={"reason": "x" * 201}, headers=headers).status_code == 422
    assert client.post(url, json={"reason": "x", "extra": 1}, headers=headers).status_code == 422
    assert not store.is_revoked(device) and device not in _revoked_in_kv(hub[0])
    r = client.post("/api/devices/ff:ff:ff:ff:ff:ff/revoke", json={}, headers=headers)
    assert r.status_code == 404 and "no device" in r.json()["detail"]

    r = client.post(url, json={"reason": "stolen from the lobby"}, headers=headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["changed"] is True and out["published"] is True and out["error"] is None
    assert out["device"]["revoked_by"] == "admin" and out["device"]["revoked_reason"] == "stolen from the lobby"
    assert abs(out["device"]["revoked_at"] - time.time()) < 60
    record = _revoked_in_kv(hub[0])[device]
    assert record["by"] == "admin" and record["reason"] == "stolen from the lobby" and record["device"] == device
    again = client.post(url, json={"reason": "twice"}, headers=headers).json()
    assert again["changed"] is False and again["device"]["revoked_reason"] == "stolen from the lobby"
    assert client.get(f"/api/devices/{device}").json()["revoked_at"] == out["device"]["revoked_at"]
    assert next(d for d in client.get("/api/devices").json() if d["id"] == device)["revoked_by"] == "admin"

    unrevoke = f"/api/devices/{device}/unrevoke"
    assert client.post(unrevoke).status_code == 403
    r = client.post(unrevoke, headers=headers)
    assert r.status_code == 200 and r.json()["changed"] is True and r.json()["published"] is True
    assert r.json()["device"]["revoked_at"] is None and not store.is_revoked(device)
    assert device not in _revoked_in_kv(hub[0])
    assert client.post(unrevoke, headers=headers).json()["changed"] is False
    assert client.post("/api/devices/ff:ff/unrevoke", headers=headers).status_code == 404
    entries = [(e["action"], e["target"], e["ok"], e["detail"]) for e in client.get("/api/audit?limit=50").json()]
    mine = [(a, tgt, ok) for a, tgt, ok, _d in entries if a.startswith("device.") and "revoke" in a]
    assert mine[:6] == [
        ("device.unrevoke", "ff:ff", False),
        ("device.unrevoke", device, True),
        ("device.unrevoke", device, True),
        ("device.revoke", device, True),
        ("device.revoke", device, True),
        ("device.revoke", "ff:ff:ff:ff:ff:ff", False),
    ]
    revoked = next(d for a, tgt, ok, d in entries if a == "device.revoke" and ok and d["changed"])
    assert revoked["reason"] == "stolen from the lobby" and revoked["published"] is True


def test_a_revocation_made_without_nats_reaches_the_bucket_when_the_console_connects(
    hub: Any, databases: Databases
) -> None:
    db = databases.new()
    dead = f"nats://127.0.0.1:{free_port()}"
    client, store, _fleet = _app(db, dead, "")
    with client:
        headers = _login(client)
        store.add_pending_device("aa:bb:cc:00:00:08", "888888")
        store.bind("888888", "", "admin")
        r = client.post("/api/devices/aa:bb:cc:00:00:08/revoke", json={"reason": "lost"}, headers=headers)
        assert r.status_code == 200 and r.json()["published"] is False and "not connected" in r.json()["error"]
        assert store.is_revoked("aa:bb:cc:00:00:08")  # provisioning refuses its token already
    store.close()
    # A key the database does not hold (lifted while the console was away) goes too.
    stray = "aa:bb:cc:00:00:09"

    async def put_stray(nc: Any) -> None:
        from shared.nats.revoked import key_of, open_bucket, record

        kv = await open_bucket(nc.jetstream(domain=s.JS_DOMAIN), create=True)
        await kv.put(key_of(stray), record(stray, "admin"))

    asyncio.run(_nats(hub[0], put_stray))
    assert stray in _revoked_in_kv(hub[0])
    client, store, _fleet = _app(db, hub[0].url, hub[1])
    with client:
        _wait(lambda: "aa:bb:cc:00:00:08" in (kv := _revoked_in_kv(hub[0])) and stray not in kv)
        assert _revoked_in_kv(hub[0])["aa:bb:cc:00:00:08"]["reason"] == "lost"
    store.close()


# -- routing ------------------------------------------------------------------------------------
def test_routing_check_publish_history_and_rollback_through_the_kv_bucket(api: Any, hub: Any) -> None:
    client, _store, _fleet = api
    headers = _login(client)
    state = client.get("/api/routing").json()
    assert state["nats_connected"] is True and state["current"] is None and state["versions"] == []
    bad = "llm:\n  default: nowhere\n"
    check = client.post("/api/routing/check", json={"text": bad}).json()
    assert check["valid"] is False and "llm.default" in check["error"]
    r = client.post("/api/routing/publish", json={"text": bad, "comment": "broken"}, headers=headers)
    assert r.status_code == 422 and "llm.default" in r.json()["detail"]
    assert _kv_text(hub[0]) is None  # nothing reached the edges
    r = client.post("/api/routing/publish", json={"text": ROUTING_A, "comment": "first"}, headers=headers)
    assert r.status_code == 200, r.text
    v1 = r.json()["version"]
    assert _kv_text(hub[0]) == ROUTING_A and v1["kv_revision"] >= 1 and v1["author"] == "admin"
    check = client.post("/api/routing/check", json={"text": ROUTING_B}).json()
    assert check["valid"] is True and "-    - {name: open-question, when: {complexity_at_least: 0.6}" in check["diff"]
    r = client.post("/api/routing/publish", json={"text": ROUTING_B, "comment": "stricter"}, headers=headers)
    assert r.status_code == 200 and "+    - {name: open-question, when: {complexity_at_least: 0.7}" in r.json()["diff"]
    assert _kv_text(hub[0]) == ROUTING_B
    r = client.post("/api/routing/rollback", json={"version_id": v1["id"]}, headers=headers)
    assert r.status_code == 200
    v3 = r.json()["version"]
    assert v3["rollback_of"] == v1["id"] and _kv_text(hub[0]) == ROUTING_A
    state = client.get("/api/routing").json()
    assert state["current"] == ROUTING_A and state["kv_revision"] == v3["kv_revision"]
    assert [v["comment"] for v in state["versions"]] == [f"rollback to v{v1['id']}", "stricter", "first"]
    assert client.get(f"/api/routing/versions/{v1['id']}").json()["text"] == ROUTING_A
    assert client.get("/api/routing/versions/999").status_code == 404
    assert client.post("/api/routing/rollback", json={"version_id": 999}, headers=headers).status_code == 404
    assert client.post("/api/routing/rollback", json={"version_id": 0}, headers=headers).status_code == 422
    huge = {"text": "#" * (64 * 1024 + 1), "comment": ""}
    assert client.post("/api/routing/publish", json=huge, headers=headers).status_code == 422
    entries = [e for e in client.get("/api/audit").json() if e["action"].startswith("routing.")]
    assert [(e["action"], e["ok"]) for e in entries[:4]] == [
        ("routing.rollback", True),
        ("routing.publish", True),
        ("routing.publish", True),
        ("routing.publish", False),
    ]
    assert entries[0]["detail"]["diff"]  # who changed what, and when
    assert client.get("/api/audit?limit=0").status_code == 422


def test_a_persona_per_site_or_device_is_published_like_any_routing_change(api: Any, hub: Any) -> None:
    """The console sets a site's or a device's system prompt (persona and spoken style) through the routing
    config: checked by the edges' own parser (a prompt too long to pay for on every turn is refused with
    its key path), then published to the bucket every edge follows."""
    client, _store, _fleet = api
    headers = _login(client)
    persona = (
        "prompts:\n"
        '  sites:\n    shop-12: {en: "You are Mia, the shop\'s assistant. Answer in one or two sentences."}\n'
        '  devices:\n    "aa:bb:cc:dd:ee:01": {zh: "你是小朋友的学习助手。用一两句简单的话回答。"}\n'
    )
    r = client.post("/api/routing/publish", json={"text": persona, "comment": "personas"}, headers=headers)
    assert r.status_code == 200, r.text
    assert _kv_text(hub[0]) == persona
    long = "prompts:\n  devices:\n    d1: {en: " + "x" * 1001 + "}\n"
    r = client.post("/api/routing/publish", json={"text": long, "comment": "too long"}, headers=headers)
    assert r.status_code == 422 and "prompts.devices" in r.json()["detail"] and "1000" in r.json()["detail"]
    assert _kv_text(hub[0]) == persona


def test_publishing_without_nats_is_refused_clearly(databases: Databases) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    client, store, _fleet = _app(databases.new(), dead, "")
    with client:
        headers = _login(client)
        r = client.post("/api/routing/publish", json={"text": ROUTING_A, "comment": "x"}, headers=headers)
        assert r.status_code == 503 and "not connected to NATS" in r.json()["detail"]
        state = client.get("/api/routing").json()
        assert state["nats_connected"] is False and "not connected" in state["error"]
        assert client.get("/api/health").json()["nats_connected"] is False
    store.close()


# -- input a database could refuse ----------------------------------------------------------------
def test_a_nul_character_anywhere_in_a_request_is_refused_before_it_reaches_the_database(api: Any, hub: Any) -> None:
    """PostgreSQL's text columns cannot hold NUL: each of these was a 500 there (a 404 or a stored
    value on SQLite), and a routing comment with one was published to the edges but never recorded."""
    client, store, _fleet = api
    headers = _login(client)
    r = client.post("/api/login", json={"username": "ad\x00min", "password": PASSWORD})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "username"]
    assert PASSWORD not in r.text  # the error echoes the field at fault, not the whole body
    for method, url in (
        ("GET", "/api/devices/aa%00bb"),
        ("GET", "/api/devices?edge=e%00"),
        ("POST", "/api/devices/aa%00bb/move"),
        ("POST", "/api/devices/aa%00bb/revoke"),
        ("POST", "/api/devices/aa%00bb/unrevoke"),
        ("GET", "/api/edges/e%00"),
    ):
        r = client.request(method, url, json={"edge": "edge-t"} if url.endswith("move") else {}, headers=headers)
        assert r.status_code == 422 and "NUL" in r.json()["detail"], (method, url, r.text)
    store.add_pending_device("aa:bb:cc:00:00:0a", "101010")
    store.bind("101010", "", "admin")
    r = client.post("/api/devices/aa:bb:cc:00:00:0a/revoke", json={"reason": "a\x00b"}, headers=headers)
    assert r.status_code == 422 and not store.is_revoked("aa:bb:cc:00:00:0a")
    before = _kv_text(hub[0])
    r = client.post("/api/routing/publish", json={"text": ROUTING_A, "comment": "a\x00b"}, headers=headers)
    assert r.status_code == 422 and _kv_text(hub[0]) == before


def test_an_id_beyond_any_row_is_not_found_rather_than_a_database_error(api: Any) -> None:
    """An Integer column is 32-bit on PostgreSQL ("integer out of range" was a 500 there); SQLite
    failed past 64 bits."""
    client, _store, _fleet = api
    headers = _login(client)
    for version in (2**31, 2**63, 10**30):
        assert client.get(f"/api/routing/versions/{version}").status_code == 404
        r = client.post("/api/routing/rollback", json={"version_id": version}, headers=headers)
        assert r.status_code == 404 and str(version) in r.json()["detail"]
    newest = client.get("/api/audit?limit=5").json()
    assert newest and client.get(f"/api/audit?limit=5&before={10**30}").json() == newest
    assert client.get(f"/api/audit?before={2**31}").status_code == 200
    assert client.get("/api/audit?before=-99999999999").json() == []
