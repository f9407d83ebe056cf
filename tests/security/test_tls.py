"""WSS and HTTPS with a configured certificate, all real: a throwaway CA (trustme) signs a certificate
for 127.0.0.1/localhost, and a real edge process (timing engines: it starts in seconds), a real
provisioning process with a real nats-server hub, and the real console under uvicorn serve with it.

A device that trusts the CA completes a hello and a text turn over wss; the edge's OTA over https
sends devices to wss://; a client that trusts another CA (or only the system's) is refused during
the TLS handshake; a plain ws:// client gets nowhere on the TLS port; provisioning answers an OTA
over https; the console serves its login page over https with HSTS; and a certificate without its
key, a missing file or a key of another certificate stops each process at start, naming the file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from edge_node.config import load_config
from ops.validate import Deployment, validate
from provisioning.config import ProvisionConfig
from provisioning.service import ProvisionService
from shared import tokens
from shared.client.device import DeviceClient, DeviceClientError
from shared.client.ota import ota_request
from shared.nats import subjects as s
from shared.nats.configs import save_credential
from shared.nats.local import Hub
from shared.nats.server import free_port
from shared.nats.settings import NatsClientConfig
from shared.settings import ConfigError
from shared.tls import client_context
from tests.conftest import ROOT, EdgeProcess, start_edge, stop_edge
from tests.processes import ready_field, spawn

PROFILE = ROOT / "bench" / "fleet" / "timing.2026-11-25.yaml"


@dataclass
class Pki:
    ca: Path  # the CA the clients trust (the firmware's bundle)
    cert: Path  # the server's certificate chain for 127.0.0.1 and localhost
    key: Path
    other_ca: Path  # a CA that did not sign it
    other_key: Path  # a key that does not belong to ``cert``

    def trusting(self) -> ssl.SSLContext:
        """A verifying client context that trusts this CA only, as the firmware trusts its bundle."""
        return client_context(str(self.ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    work = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    stranger = other.issue_cert("127.0.0.1")
    paths = Pki(work / "ca.pem", work / "cert.pem", work / "key.pem", work / "other-ca.pem", work / "other-key.pem")
    ca.cert_pem.write_to_path(str(paths.ca))
    other.cert_pem.write_to_path(str(paths.other_ca))
    paths.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(paths.key))
    stranger.private_key_pem.write_to_path(str(paths.other_key))
    return paths


@pytest.fixture(scope="module")
def tls_edge(pki: Pki) -> Iterator[EdgeProcess]:
    edge = start_edge(
        "tls-edge",
        {
            "XIAOZHI__TIMING__PROFILE": str(PROFILE),
            "XIAOZHI__SERVER__TLS_CERT_FILE": str(pki.cert),
            "XIAOZHI__SERVER__TLS_KEY_FILE": str(pki.key),
        },
    )
    yield edge
    stop_edge(edge)


def _https(edge: EdgeProcess) -> str:
    return f"https://127.0.0.1:{edge.http_port}"


def _wss(edge: EdgeProcess) -> str:
    return f"wss://127.0.0.1:{edge.ws_port}/xiaozhi/v1/"


def _ota(base: str, verify: ssl.SSLContext, device: str) -> httpx.Response:
    headers, body = ota_request(device, f"client-{device}")
    return httpx.post(f"{base}/xiaozhi/ota/", headers=headers, content=body, verify=verify, timeout=10)


# -- the edge ------------------------------------------------------------------------------------
def test_the_edge_ota_over_https_sends_devices_to_wss(tls_edge: EdgeProcess, pki: Pki) -> None:
    # start_edge parsed "READY ws=<port> http=<port>": the line harnesses wait for is unchanged.
    answer = _ota(_https(tls_edge), pki.trusting(), "aa:71:5e:00:00:01")
    assert answer.status_code == 200, answer.text
    assert answer.json()["websocket"]["url"] == _wss(tls_edge)
    assert "mqtt" not in answer.json()
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(_https(tls_edge) + path, verify=pki.trusting(), timeout=10).status_code == 200
    log = tls_edge.log_text()
    assert f"WebSocket wss://127.0.0.1:{tls_edge.ws_port}/xiaozhi/v1/" in log
    assert f"HTTP https://127.0.0.1:{tls_edge.http_port}" in log


async def test_a_device_that_trusts_the_ca_talks_over_wss(tls_edge: EdgeProcess, pki: Pki) -> None:
    url = (await asyncio.to_thread(_ota, _https(tls_edge), pki.trusting(), "aa:71:5e:00:00:02")).json()["websocket"]
    client = DeviceClient(url["url"], device_id="aa:71:5e:00:00:02", ssl_context=client_context(str(pki.ca)))
    await client.connect()
    try:
        assert client.session_id and client.server_hello is not None
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect("What is the capital of France?")
        turn = await client.wait_turn_end(30)
    finally:
        await client.close()
    assert turn.audio_packets > 0 and turn.order[-1] == "tts:stop", turn.order
    assert client.violations == []


async def test_a_client_that_does_not_trust_the_ca_is_refused(tls_edge: EdgeProcess, pki: Pki) -> None:
    for ctx in (client_context(str(pki.other_ca)), None):  # another CA's bundle; the system's CAs
        client = DeviceClient(_wss(tls_edge), device_id="aa:71:5e:00:00:03", ssl_context=ctx)
        with pytest.raises(DeviceClientError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.connect()
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.to_thread(_ota, _https(tls_edge), client_context(str(pki.other_ca)), "aa:71:5e:00:00:03")


async def test_plain_ws_and_http_get_nowhere_on_the_tls_ports(tls_edge: EdgeProcess, pki: Pki) -> None:
    client = DeviceClient(
        f"ws://127.0.0.1:{tls_edge.ws_port}/xiaozhi/v1/", device_id="aa:71:5e:00:00:04", hello_timeout_s=5
    )
    with pytest.raises(DeviceClientError, match="cannot open WebSocket"):
        await client.connect()
    assert client._ws is None  # no session was opened in the clear
    with pytest.raises(httpx.TransportError):
        await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{tls_edge.http_port}/health", timeout=5)
    # The edge shrugs both off and keeps serving TLS clients.
    health = await asyncio.to_thread(httpx.get, _https(tls_edge) + "/health", verify=pki.trusting(), timeout=10)
    assert health.status_code == 200


async def test_xiaozhi_validate_checks_a_tls_edge_with_its_ca_file(tls_edge: EdgeProcess, pki: Pki) -> None:
    report = await validate(Deployment(edges=[_https(tls_edge)], ca_file=str(pki.ca), max_first_audio_s=10))
    status = {c.name: c.status for c in report.checks}
    assert {status[n] for n in ("health", "ota", "hello", "probe turn")} == {"pass"}, report.to_text()
    untrusted = await validate(Deployment(edges=[_https(tls_edge)], ca_file=str(pki.other_ca), timeout_s=5))
    assert {c.name: c.status for c in untrusted.checks}["health"] == "fail"


# -- provisioning ----------------------------------------------------------------------------------
def test_provisioning_answers_an_ota_over_https(pki: Pki, tmp_path: Path) -> None:
    import nats

    hub = Hub(tmp_path / "hub")
    cloud_cred = tmp_path / "cloud.json"
    save_credential(hub.cloud, cloud_cred)
    key_path = tmp_path / "token-keys"
    ring = tokens.KeyRing.create(key_path)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    hub.start()
    provision = None
    try:
        provision = spawn(
            "tls-provision",
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
                f"sqlite:///{tmp_path / 'console.db'}",
                "--nats",
                hub.url,
                "--credential",
                str(cloud_cred),
                "--token-keys",
                str(key_path),
                "--public-url",
                base,
            ],
            "READY provision",
            env={"XIAOZHI_PROVISION__TLS_CERT_FILE": str(pki.cert), "XIAOZHI_PROVISION__TLS_KEY_FILE": str(pki.key)},
        )
        edge_url = "wss://127.0.0.1:8000/xiaozhi/v1/"

        async def heartbeat() -> None:
            nc = await nats.connect(hub.url, user="cloud", password=hub.cloud.password)
            try:
                beat = {"site": "", "ws_url": edge_url, "sessions": 0, "max_sessions": 100}
                await nc.publish(s.heartbeat_subject("edge-tls"), json.dumps(beat).encode())
                await nc.flush()
            finally:
                await nc.close()

        deadline = time.monotonic() + 20
        while True:  # provisioning subscribes to heartbeats just after READY: beat until it has heard one
            asyncio.run(heartbeat())
            answer = _ota(base, pki.trusting(), "aa:71:5e:00:00:10")
            if answer.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["websocket"]["url"] == edge_url
        tokens.KeySet.load(ring.keyset_path).verify(body["websocket"]["token"], "aa:71:5e:00:00:10")
        assert "activation" in body  # an unknown device: activation goes on over the same https endpoint
        activate = httpx.post(
            f"{base}/xiaozhi/ota/activate",
            headers={"Device-Id": "aa:71:5e:00:00:10"},
            verify=pki.trusting(),
            timeout=10,
        )
        assert activate.status_code == 202
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            _ota(base, client_context(str(pki.other_ca)), "aa:71:5e:00:00:11")
        assert "devices would be sent to plain HTTP" not in provision.log_text()
    finally:
        if provision is not None:
            provision.stop()
        hub.stop()


async def test_provisioning_warns_when_tls_is_on_but_public_url_says_http(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens.KeyRing.create(tmp_path / "keys")
    cfg = ProvisionConfig(
        host="127.0.0.1",
        port=0,
        public_url="http://prov.example:8004",
        db=f"sqlite:///{tmp_path / 'c.db'}",
        token_keys_dir=str(tmp_path / "keys"),
        tls_cert_file=str(pki.cert),
        tls_key_file=str(pki.key),
        nats=NatsClientConfig(url=""),
    )
    service = ProvisionService(cfg)
    with caplog.at_level(logging.WARNING, logger="provisioning"):
        await service.start()
    try:
        assert any("public_url http://prov.example:8004 says http://" in r.getMessage() for r in caplog.records)
    finally:
        await service.stop()


# -- the console -------------------------------------------------------------------------------------
def test_the_console_over_https_serves_its_login_page_with_hsts(pki: Pki, tmp_path: Path) -> None:
    console = spawn(
        "tls-console",
        [
            sys.executable,
            "-m",
            "cloud.cli",
            "console",
            "--db",
            f"sqlite:///{tmp_path / 'console.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        "READY console",
        env={
            "XIAOZHI_CLOUD__CONSOLE__TLS_CERT_FILE": str(pki.cert),
            "XIAOZHI_CLOUD__CONSOLE__TLS_KEY_FILE": str(pki.key),
            "XIAOZHI_CLOUD__NATS__URL": "",
        },
    )
    try:
        base = ready_field(console, "http")
        assert base.startswith("https://127.0.0.1:")
        page = httpx.get(f"{base}/login", verify=pki.trusting(), timeout=10)
        assert page.status_code == 200 and "<form" in page.text.lower()
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")
        assert page.headers["X-Frame-Options"] == "DENY"
        api = httpx.get(f"{base}/api/session", verify=pki.trusting(), timeout=10)
        assert api.status_code == 401 and "Strict-Transport-Security" in api.headers
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{base}/login", verify=client_context(str(pki.other_ca)), timeout=10)
    finally:
        console.stop()


# -- configuration errors ------------------------------------------------------------------------------
def test_a_certificate_without_its_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="server.tls_cert_file is set but server.tls_key_file is not"):
        load_config(environ={"XIAOZHI__SERVER__TLS_CERT_FILE": "cert.pem"})
    with pytest.raises(ValueError, match="tls_key_file is set but tls_cert_file is not"):
        ProvisionConfig(tls_key_file="key.pem")


def _start_fails(args: list[str], env: dict[str, str]) -> str:
    """Run a server command that must refuse to start; its stderr (and stdout) for the message."""
    import os

    run = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    assert run.returncode != 0, run.stdout + run.stderr
    assert "READY" not in run.stdout
    assert "Traceback" not in run.stderr, run.stderr
    return run.stderr


EDGE = ["edge_node", "serve", "--host", "127.0.0.1", "--port", "0", "--http-port", "0"]
PROVISION = ["provisioning.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
CONSOLE = ["cloud.cli", "console", "--host", "127.0.0.1", "--port", "0"]


def test_bad_tls_settings_stop_each_server_at_start_naming_the_file(pki: Pki, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-cert.pem")
    edge = {"XIAOZHI__TIMING__PROFILE": str(PROFILE), "XIAOZHI__CACHE__DIR": str(tmp_path / "cache")}

    err = _start_fails(EDGE, {**edge, "XIAOZHI__SERVER__TLS_CERT_FILE": str(pki.cert)})
    assert "server.tls_cert_file is set but server.tls_key_file is not" in err
    err = _start_fails(
        EDGE, {**edge, "XIAOZHI__SERVER__TLS_CERT_FILE": missing, "XIAOZHI__SERVER__TLS_KEY_FILE": str(pki.key)}
    )
    assert f"TLS certificate file {missing}: cannot read it" in err
    err = _start_fails(
        EDGE, {**edge, "XIAOZHI__SERVER__TLS_CERT_FILE": str(pki.key), "XIAOZHI__SERVER__TLS_KEY_FILE": str(pki.key)}
    )
    assert f"TLS certificate file {pki.key}: not a PEM certificate" in err
    err = _start_fails(
        EDGE,
        {**edge, "XIAOZHI__SERVER__TLS_CERT_FILE": str(pki.cert), "XIAOZHI__SERVER__TLS_KEY_FILE": str(pki.other_key)},
    )
    assert f"TLS certificate {pki.cert} and key {pki.other_key} cannot be used together" in err

    prov = {"XIAOZHI_PROVISION__TOKEN_KEYS_DIR": str(tmp_path / "absent-keys")}
    err = _start_fails(PROVISION, {**prov, "XIAOZHI_PROVISION__TLS_CERT_FILE": str(pki.cert)})
    assert "tls_cert_file is set but tls_key_file is not" in err
    err = _start_fails(
        PROVISION,
        {**prov, "XIAOZHI_PROVISION__TLS_CERT_FILE": str(pki.cert), "XIAOZHI_PROVISION__TLS_KEY_FILE": missing},
    )
    assert f"TLS private key file {missing}: cannot read it" in err

    console = {"XIAOZHI_CLOUD__CONSOLE__DB": f"sqlite:///{tmp_path / 'c.db'}", "XIAOZHI_CLOUD__NATS__URL": ""}
    err = _start_fails(CONSOLE, {**console, "XIAOZHI_CLOUD__CONSOLE__TLS_KEY_FILE": str(pki.key)})
    assert "console.tls_key_file is set but console.tls_cert_file is not" in err
    err = _start_fails(
        CONSOLE,
        {
            **console,
            "XIAOZHI_CLOUD__CONSOLE__TLS_CERT_FILE": missing,
            "XIAOZHI_CLOUD__CONSOLE__TLS_KEY_FILE": str(pki.key),
        },
    )
    assert f"TLS certificate file {missing}: cannot read it" in err


def test_missing_or_bad_token_keys_stop_the_edge_and_provisioning_at_start(tmp_path: Path) -> None:
    """Device tokens on and no readable key set: one line naming the file, not a traceback after the models."""
    edge = {"XIAOZHI__TIMING__PROFILE": str(PROFILE), "XIAOZHI__AUTH__DEVICE_TOKENS": "true"}
    missing = tmp_path / "absent.json"
    err = _start_fails(EDGE, {**edge, "XIAOZHI__AUTH__TOKEN_KEYS_FILE": str(missing)})
    assert f"auth.token_keys_file: cannot read the device-token key set {missing}" in err
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": [{"kid": "k1", "public": "not hex", "signing_from": 0}]}')
    err = _start_fails(EDGE, {**edge, "XIAOZHI__AUTH__TOKEN_KEYS_FILE": str(bad)})
    assert f"{bad}: not a device-token key set" in err
    err = _start_fails(PROVISION, {"XIAOZHI_PROVISION__TOKEN_KEYS_DIR": str(tmp_path / "no-ring")})
    assert "cannot read the device-token key set" in err and "no-ring" in err
