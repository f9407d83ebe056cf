"""Revoking a device's token, end to end and all real: a NATS hub, an edge (its own leaf nats-server,
device tokens on, timing engines), ``xiaozhi-provision serve`` and the console app on the same
database, its Fleet connected to the hub.

An admin revokes a connected device in the console: the edge closes its session within seconds
and refuses its reconnect (401) even with a still-valid token, while another device is untouched;
provisioning answers its OTA without a token; the edge keeps the revocation while the hub is down,
also across a restart of the edge (its revocation file), and notices changes after the hub comes
back; un-revoking lets the device in again.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cloud.config import ConsoleConfig
from cloud.console.app import create_app
from cloud.console.auth import hash_password
from cloud.console.fleet import Fleet
from cloud.console.store import Store
from shared import tokens
from shared.client.device import DeviceClient, DeviceClientError
from shared.client.ota import ota_request
from shared.nats.configs import save_credential
from shared.nats.local import Hub, Leaf
from shared.nats.server import free_port
from tests.conftest import ROOT, EdgeProcess, start_edge, stop_edge
from tests.edge.helpers import metric_value
from tests.processes import Proc, spawn

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
STOLEN = "d8:3b:da:00:cc:01"
OTHER = "d8:3b:da:00:cc:02"


@dataclass
class Stack:
    hub: Hub
    leaf: Leaf
    edge: EdgeProcess
    provision: Proc
    ota_url: str
    console: TestClient
    fleet: Fleet
    csrf: dict[str, str]
    keys: tokens.KeySet
    edge_env: dict[str, str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("revocation")
    key_path = work / "token-keys"
    ring = tokens.KeyRing.create(key_path)
    hub = Hub(work / "hub")
    hub.credential("edge-r1")
    leaf = Leaf(work / "edge-r1", "edge-r1", hub)
    cloud_cred = work / "cloud.json"
    save_credential(hub.cloud, cloud_cred)
    db = f"sqlite:///{work / 'console.db'}"
    store = Store(db)
    store.add_user("admin", hash_password(PASSWORD))
    edge: EdgeProcess | None = None
    provision: Proc | None = None
    try:
        hub.start()
        leaf.start()
        leaf.wait_linked()
        port = free_port()
        provision = spawn(
            "provision-revoke",
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
            env={"XIAOZHI_PROVISION__ACTIVATION_REQUIRED": "false", "XIAOZHI_PROVISION__STALE_AFTER_S": "10"},
        )
        edge_env = {
            "XIAOZHI__NODE_ID": "edge-r1",
            "XIAOZHI__NATS__URL": leaf.url,
            "XIAOZHI__NATS__HEARTBEAT_S": "1",
            "XIAOZHI__TIMING__PROFILE": str(ROOT / "bench" / "fleet" / "timing.2026-11-25.yaml"),
            "XIAOZHI__LLM__WORKERS": "1",
            "XIAOZHI__TTS__WORKERS": "1",
            "XIAOZHI__ASR__WORKERS": "1",
            "XIAOZHI__AUTH__DEVICE_TOKENS": "true",
            "XIAOZHI__AUTH__TOKEN_KEYS_FILE": str(ring.keyset_path),
            "XIAOZHI__CACHE__DIR": str(work / "edge-cache"),  # the revocation file lives beside the disk cache
        }
        edge = start_edge("revoke-edge", edge_env)
        ota_url = f"http://127.0.0.1:{port}/xiaozhi/ota/"
        deadline = time.monotonic() + 30
        while httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the edge never became healthy at provisioning"
            time.sleep(0.3)
        fleet = Fleet(store, hub.url, str(cloud_cred), stale_after_s=5.0)
        cfg = ConsoleConfig(cookie_secure=False)
        with TestClient(create_app(cfg, store, fleet)) as console:
            r = console.post("/api/login", json={"username": "admin", "password": PASSWORD})
            assert r.status_code == 200, r.text
            _until(lambda: fleet.connected)
            edge.wait_for_log("revocation list read from KV", timeout=30)  # the console created the bucket
            csrf = {"X-CSRF-Token": r.json()["csrf"]}
            held = Stack(hub, leaf, edge, provision, ota_url, console, fleet, csrf, ring.keyset, edge_env)
            yield held
            edge = held.edge  # the test restarts it
    finally:
        if edge is not None:
            stop_edge(edge)
        if provision is not None:
            provision.stop()
        leaf.stop()
        hub.stop()
        store.close()


def _until(predicate: Any, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _ota(stack: Stack, device: str) -> dict[str, Any]:
    headers, body = ota_request(device, str(uuid.uuid4()), "2.4.2")
    r = httpx.post(stack.ota_url, headers=headers, content=body, timeout=10)
    assert r.status_code == 200, r.text  # a revoked device too: see provisioning/service.py
    return r.json()


async def _connect(url: str, device: str, token: str) -> DeviceClient:
    client = DeviceClient(url, device_id=device, token=token)
    await client.connect()
    return client


async def _metrics(edge: EdgeProcess) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{edge.http}/metrics", timeout=10)).text


async def test_a_revoked_device_is_dropped_refused_and_let_back_in(stack: Stack) -> None:
    edge = stack.edge
    stolen, other = await asyncio.to_thread(_ota, stack, STOLEN), await asyncio.to_thread(_ota, stack, OTHER)
    url, token = stolen["websocket"]["url"], stolen["websocket"]["token"]
    assert f":{edge.ws_port}/" in url and stack.keys.verify(token, STOLEN)
    before = await _metrics(edge)
    device = await _connect(url, STOLEN, token)
    bystander = await _connect(other["websocket"]["url"], OTHER, other["websocket"]["token"])
    offset = edge.log_offset()

    # The admin revokes it: its live session is closed within a few seconds.
    revoked_at = time.monotonic()
    r = await asyncio.to_thread(
        stack.console.post, f"/api/devices/{STOLEN}/revoke", json={"reason": "stolen"}, headers=stack.csrf
    )
    assert r.status_code == 200 and r.json()["published"] is True, r.text
    assert await device.wait_closed(5), "the revoked device's session was not closed"
    assert time.monotonic() - revoked_at < 5
    assert device.close_code == 1008 and device.close_reason == "device revoked"
    await device.close()
    # Its token is still valid, but the edge refuses the handshake; the other device stays connected.
    with pytest.raises(DeviceClientError, match="HTTP 401"):
        await _connect(url, STOLEN, token)
    assert not bystander.closed
    log = edge.log_text()[offset:]
    assert f"device {STOLEN} revoked (by admin: stolen)" in log and f"refused {STOLEN}: device revoked" in log
    assert "device revoked: closing its session" in log
    after = await _metrics(edge)
    name = "xiaozhi_revocations_enforced_total"
    assert metric_value(after, name, action="closed") - metric_value(before, name, action="closed") == 1
    assert metric_value(after, name, action="refused") - metric_value(before, name, action="refused") == 1
    assert metric_value(after, "xiaozhi_revoked_devices") == 1
    # Provisioning answers its OTA with an empty token (what the firmware stores over the old one).
    answer = await asyncio.to_thread(_ota, stack, STOLEN)
    assert answer["websocket"] == {"token": ""} and "activation" not in answer and answer["firmware"]["url"] == ""
    assert "token revoked in the console" in stack.provision.log_text()

    # The hub goes down: the edge keeps the revocation it knows.
    stack.hub.stop(kill=True)
    await asyncio.sleep(2)
    with pytest.raises(DeviceClientError, match="HTTP 401"):
        await _connect(url, STOLEN, token)
    # ...and across its own restart while the site is cut off: the revocation file is read at start.
    revocations = Path(stack.edge_env["XIAOZHI__CACHE__DIR"]) / "revocations.json"
    assert STOLEN in json.loads(revocations.read_text())["devices"]
    await asyncio.to_thread(stop_edge, edge)
    edge = stack.edge = await asyncio.to_thread(start_edge, "revoke-edge-restarted", stack.edge_env)
    assert "revocation list read from" in edge.log_text() and "1 device(s)" in edge.log_text()
    url = f"ws://127.0.0.1:{edge.ws_port}/xiaozhi/v1/"
    with pytest.raises(DeviceClientError, match="HTTP 401"):
        await _connect(url, STOLEN, token)
    assert f"refused {STOLEN}: device revoked" in edge.log_text()
    other_again = await _connect(url, OTHER, other["websocket"]["token"])  # not a node that refuses everyone
    await other_again.close()
    stack.hub.start()  # same ports, same store: the leaf, the console and provisioning reconnect
    await asyncio.to_thread(stack.leaf.wait_linked, 20)
    await asyncio.to_thread(_until, lambda: stack.fleet.connected, 20)

    # Un-revoked after the hub's restart: the edge notices, and a fresh OTA token lets it in.
    offset = edge.log_offset()
    r = await asyncio.to_thread(stack.console.post, f"/api/devices/{STOLEN}/unrevoke", headers=stack.csrf)
    assert r.status_code == 200 and r.json()["published"] is True, r.text
    await asyncio.to_thread(edge.wait_for_log, f"device {STOLEN} un-revoked", 15, offset)
    fresh = await asyncio.to_thread(_ota, stack, STOLEN)
    assert stack.keys.verify(fresh["websocket"]["token"], STOLEN)
    device = await _connect(fresh["websocket"]["url"], STOLEN, fresh["websocket"]["token"])
    assert device.session_id
    await device.close()
    await bystander.close()
