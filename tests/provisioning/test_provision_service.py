"""The provisioning service end to end, all real: a NATS hub, two edge nodes (each with its leaf
nats-server, sending heartbeats, checking device tokens), and ``xiaozhi-provision serve`` answering
a real HTTP client the way the firmware calls it (docs/protocol.md §1.2-§1.5).

An unknown device goes through activation (bound in the console's database, as the console's
bind endpoint does); its token works at its edge while a forged, another device's and an expired
token are refused there; firmware offers and downloads; a device on an edge that dies is sent to
the other one at its next OTA.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import tokens
from shared.client.device import DeviceClient, DeviceClientError
from shared.client.ota import ota_request
from shared.fleet_registry import FleetRegistry
from shared.nats.local import Hub, Leaf
from shared.nats.server import free_port
from tests.conftest import ROOT, EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import metric_value
from tests.processes import Proc, spawn

pytestmark = pytest.mark.slow

FIRMWARE = b"\xe9" + bytes(range(256)) * 64  # an "image": the bytes must arrive unchanged


@dataclass
class Fleet:
    hub: Hub
    leaves: dict[str, Leaf]
    edges: dict[str, EdgeProcess]
    provision: Proc
    url: str
    db: str
    ring: tokens.KeyRing  # the provisioning host's signing keys; the edges read ring.keyset_path

    def keys(self) -> tokens.KeySet:
        """The public key set as an edge reads it."""
        return tokens.KeySet.load(self.ring.keyset_path)

    def store(self) -> FleetRegistry:
        return FleetRegistry(self.db)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("provision")
    key_path = work / "token-keys"
    ring = tokens.KeyRing.create(key_path)
    hub = Hub(work / "hub")
    names = {"edge-p1": "site-a", "edge-p2": "site-a"}
    for name in names:
        hub.credential(name)
    leaves = {n: Leaf(work / n, n, hub) for n in names}
    (work / "fw").mkdir()
    (work / "fw" / "bread-2.5.0.bin").write_bytes(FIRMWARE)
    (work / "fw" / "firmware.yaml").write_text("- {board: bread-compact-wifi, version: 2.5.0, file: bread-2.5.0.bin}\n")
    cloud_cred = work / "cloud.json"
    from shared.nats.configs import save_credential

    save_credential(hub.cloud, cloud_cred)
    db = f"sqlite:///{work / 'console.db'}"
    edges: dict[str, EdgeProcess] = {}
    provision: Proc | None = None
    try:
        hub.start()
        for leaf in leaves.values():
            leaf.start()
            leaf.wait_linked()
        port = free_port()
        provision = spawn(
            "provision",
            [
                sys.executable,
                "-m",
                "provisioning.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--db",
                db,
                "--nats",
                hub.url,
                "--credential",
                str(cloud_cred),
                "--token-keys",
                str(key_path),
                "--public-url",
                f"http://127.0.0.1:{port}",
            ],
            "READY provision",
            env={
                "XIAOZHI_PROVISION__STALE_AFTER_S": "4",
                "XIAOZHI_PROVISION__FIRMWARE_DIR": str(work / "fw"),
                "XIAOZHI_PROVISION__CONSOLE_URL": "console.example",
                "XIAOZHI_PROVISION__SITES": "{site-a: [127.0.0.0/8]}",
                "XIAOZHI_PROVISION__PENDING_TOKEN_TTL_S": "0",
            },
        )
        for name, site in names.items():
            edges[name] = start_edge(
                f"prov-{name}",
                {
                    "XIAOZHI__NODE_ID": name,
                    "XIAOZHI__SITE": site,
                    "XIAOZHI__NATS__URL": leaves[name].url,
                    "XIAOZHI__NATS__HEARTBEAT_S": "1",
                    "XIAOZHI__LLM__WORKERS": "1",
                    "XIAOZHI__TTS__WORKERS": "1",
                    "XIAOZHI__AUTH__DEVICE_TOKENS": "true",
                    "XIAOZHI__AUTH__TOKEN_KEYS_FILE": str(ring.keyset_path),
                },
            )
        f = Fleet(hub, leaves, edges, provision, f"http://127.0.0.1:{port}", db, ring)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = httpx.get(f"{f.url}/ready", timeout=5)
            if ready.status_code == 200 and len(ready.json()["healthy_edges"]) == 2:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"edges never became healthy at provisioning: {ready.text}")
        yield f
    finally:
        for edge in edges.values():
            stop_edge(edge)
        if provision is not None:
            provision.stop()
        for leaf in leaves.values():
            leaf.stop()
        hub.stop()


def _ota(
    fleet: Fleet, device: str, version: str = "2.4.2", path: str = "/xiaozhi/ota/", body: Any = None
) -> httpx.Response:
    """What the firmware sends (docs/protocol.md §1.2, §1.3); ``body`` replaces the firmware's body."""
    headers, content = ota_request(device, str(uuid.uuid4()), version)
    if body is not None:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{fleet.url}{path}", headers=headers, content=content, timeout=10)


def _activate(fleet: Fleet, device: str) -> httpx.Response:
    return httpx.post(
        f"{fleet.url}/xiaozhi/ota/activate",
        headers={"Device-Id": device, "Activation-Version": "1", "Content-Type": "application/json"},
        content=b"{}",
        timeout=10,
    )


async def _hello(url: str, device: str, token: str) -> str:
    client = DeviceClient(url, device_id=device, token=token)
    await client.connect()
    try:
        return client.session_id
    finally:
        await client.close()


def test_an_unknown_device_goes_through_activation(fleet: Fleet) -> None:
    device = "d8:3b:da:00:aa:01"
    first = _ota(fleet, device)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert "mqtt" not in answer  # it would switch the firmware to MQTT
    code = answer["activation"]["code"]
    assert len(code) == 6 and code.isdigit()
    assert answer["activation"]["message"] == f"console.example\n{code}"
    assert answer["activation"]["challenge"] == device
    assert abs(answer["server_time"]["timestamp"] - time.time() * 1000) < 60_000  # milliseconds
    assert isinstance(answer["server_time"]["timezone_offset"], int)
    assert answer["websocket"]["url"].startswith("ws://127.0.0.1:") and answer["websocket"]["token"] == ""
    # Polling before an admin binds the code: 202, again and again, with the same code on re-OTA.
    assert _activate(fleet, device).status_code == 202
    assert _ota(fleet, device).json()["activation"]["code"] == code
    assert _activate(fleet, "ff:ff:ff:ff:ff:ff").status_code == 202  # never seen: still 202, not an error
    store = fleet.store()
    try:
        assert store.bind(code, "", "field-tech")["state"] == "active"  # what the console's bind does
    finally:
        store.close()
    assert _activate(fleet, device).status_code == 200
    bound = _ota(fleet, device).json()
    assert "activation" not in bound
    claims = fleet.keys().verify(bound["websocket"]["token"], device, site="site-a")
    assert claims.expiry > time.time() + 29 * 24 * 3600 and claims.site == "site-a"  # the assigned edge's site


async def test_the_token_opens_its_edge_and_nothing_else_does(fleet: Fleet) -> None:
    device = "d8:3b:da:00:aa:01"  # bound by the test above
    answer = (await asyncio.to_thread(_ota, fleet, device)).json()
    url, token = answer["websocket"]["url"], answer["websocket"]["token"]
    edge = next(e for e in fleet.edges.values() if f":{e.ws_port}/" in url)
    async with httpx.AsyncClient() as http:
        before = (await http.get(f"{edge.http}/metrics")).text
    assert await _hello(url, device, token)
    stolen = fleet.ring.issue("d8:3b:da:00:aa:99", 3600, site="site-a")  # valid, but another device's
    expired = fleet.ring.issue(device, -1, site="site-a")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    foreign = tokens.KeyRing.create(fleet.ring.dir.parent / "foreign-keys").issue(device, 3600)  # another ring
    other_site = fleet.ring.issue(device, 3600, site="site-b")  # this fleet's key, another site's edge
    for bad in (stolen, expired, forged, foreign, other_site, ""):
        with pytest.raises(DeviceClientError, match="HTTP 401"):
            await _hello(url, device, bad)
    async with httpx.AsyncClient() as http:
        after = (await http.get(f"{edge.http}/metrics")).text
    name = "xiaozhi_ws_connections_total"
    assert metric_value(after, name, result="unauthorised") - metric_value(before, name, result="unauthorised") == 6
    log_text = edge.log_text()
    for why in ("token expired", "another device", "signature does not verify", "unknown key", "site 'site-b'"):
        assert why in log_text, why


def test_firmware_updates_are_offered_and_downloadable(fleet: Fleet) -> None:
    device = "d8:3b:da:00:aa:01"
    old = _ota(fleet, device, version="2.4.2").json()["firmware"]
    assert old["version"] == "2.5.0" and old["force"] == 0 and old["url"].endswith("/xiaozhi/firmware/bread-2.5.0.bin")
    image = httpx.get(old["url"], timeout=10)
    assert image.status_code == 200 and image.content == FIRMWARE
    assert int(image.headers["Content-Length"]) == len(FIRMWARE)  # the firmware needs it
    current = _ota(fleet, device, version="2.5.0").json()["firmware"]
    assert current == {"version": "2.5.0", "url": "", "force": 0}  # its own version, empty URL: no update
    assert httpx.get(f"{fleet.url}/xiaozhi/firmware/firmware.yaml", timeout=5).status_code == 404
    assert httpx.get(f"{fleet.url}/xiaozhi/firmware/..%2Fconsole.db", timeout=5).status_code == 404


def test_bad_requests_get_a_clear_400(fleet: Fleet) -> None:
    r = _ota(fleet, "d8:3b:da:00:aa:02", body=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = _ota(fleet, "d8:3b:da:00:aa:02", body=[1, 2])
    assert r.status_code == 400 and "JSON object" in r.json()["error"]
    r = httpx.post(f"{fleet.url}/xiaozhi/ota/", content=b"{}", timeout=5)
    assert r.status_code == 400 and "Device-Id" in r.json()["error"]
    r = httpx.post(f"{fleet.url}/xiaozhi/ota/", content=b"x" * (70 * 1024), headers={"Device-Id": "a"}, timeout=5)
    assert r.status_code == 413


def test_xiaozhi_validate_checks_a_fleet_with_device_tokens(fleet: Fleet, tmp_path: Path) -> None:
    edge = fleet.edges["edge-p1"]
    base = [
        sys.executable,
        "-m",
        "ops.validate",
        "--edge",
        edge.http,
        "--ota",
        f"{fleet.url}/xiaozhi/ota/",
        "--max-first-audio-s",
        "10",
        "--json",
    ]
    with_keys = [*base, "--token-keys", str(fleet.ring.dir)]  # the admin's ring signs the probe device a token
    run = subprocess.run(with_keys, cwd=ROOT, capture_output=True, text=True, timeout=120)
    report = json.loads(run.stdout)
    assert run.returncode == 0 and report["ok"], report
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["fleet ota"]["status"] == "pass" and "ws://127.0.0.1:" in checks["fleet ota"]["detail"]
    assert checks["hello"]["status"] == "pass" and checks["probe turn"]["status"] == "pass"
    # Without the ring the probe device has no token the edge accepts: the report says so.
    run = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=120)
    hello = next(c for c in json.loads(run.stdout)["checks"] if c["name"] == "hello")
    assert run.returncode == 1 and hello["status"] == "fail" and "HTTP 401" in hello["detail"]


async def test_a_rotated_key_signs_new_tokens_while_old_ones_still_open(fleet: Fleet) -> None:
    """``rotate-key`` beside the running service: it signs with the new key once it has re-read the
    ring, the edges accept the new key once they have re-read the key set, and the old key's tokens
    keep working meanwhile (it is accepted until its last token expires)."""
    import jwt

    device = "d8:3b:da:00:aa:01"  # bound by the activation test
    old = (await asyncio.to_thread(_ota, fleet, device)).json()["websocket"]
    old_kid = jwt.get_unverified_header(old["token"])["kid"]
    rotate = [sys.executable, "-m", "provisioning.cli", "rotate-key", "--token-keys", str(fleet.ring.dir)]
    run = await asyncio.to_thread(
        subprocess.run, [*rotate, "--publish-window-h", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    keys = fleet.keys()
    new_kid = next(k for k in keys.keys if k != old_kid)
    assert keys.keys[old_kid].accept_until is not None and keys.keys[old_kid].accept_until > time.time() + 29 * 86400
    deadline = time.monotonic() + 40
    while True:  # the service re-reads the ring every 10 s
        new = (await asyncio.to_thread(_ota, fleet, device)).json()["websocket"]
        if jwt.get_unverified_header(new["token"])["kid"] == new_kid or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert jwt.get_unverified_header(new["token"])["kid"] == new_kid, fleet.provision.log_text()[-2000:]
    while True:  # the edges re-read the key set every 5 s
        try:
            await _hello(new["url"], device, new["token"])
            break
        except DeviceClientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    assert await _hello(old["url"], device, old["token"])  # the old key's token still opens the edge
    assert "device-token key set reloaded" in fleet.provision.log_text()


def test_devices_stick_to_their_edge_and_leave_a_dead_one(fleet: Fleet) -> None:
    devices = [f"d8:3b:da:00:bb:{i:02x}" for i in range(6)]
    store = fleet.store()
    try:
        for device in devices:
            code = _ota(fleet, device).json()["activation"]["code"]
            store.bind(code, "", "field-tech")
        first = {d: _ota(fleet, d).json()["websocket"]["url"] for d in devices}
        assert {d: _ota(fleet, d).json()["websocket"]["url"] for d in devices} == first  # sticky
        # An admin moves half of them to edge-p2 in the console: their next OTA follows.
        for device in devices[:3]:
            store.move(device, "edge-p2")
        victim_edge = fleet.edges["edge-p2"]
        first = {d: _ota(fleet, d).json()["websocket"]["url"] for d in devices}
        assert all(f":{victim_edge.ws_port}/" in first[d] for d in devices[:3])
        on_victim = [d for d, url in first.items() if f":{victim_edge.ws_port}/" in url]
        assert on_victim and all(store.device(d)["edge_id"] == "edge-p2" for d in on_victim)
        stop_edge(victim_edge)
        time.sleep(5)  # stale_after_s is 4: the dead edge's heartbeats have stopped
        survivor = fleet.edges["edge-p1"]
        for device in on_victim:
            answer = _ota(fleet, device).json()
            assert f":{survivor.ws_port}/" in answer["websocket"]["url"]
            assert store.device(device)["edge_id"] == "edge-p1"
        assert "(edge_down)" in fleet.provision.log_text()
    finally:
        store.close()
