"""TLS on the hub's client port (``xiaozhi-cloud nats-config --client-tls``), all real: a nats-server hub
with the config ``cloud_config`` writes (a top-level ``tls`` block: the port speaks TLS only, with a
certificate of the fleet's CA, and clients still log in with their passwords) and the cloud's own
connection code (``shared/nats/connect.py``).

A client given the CA (``nats.ca_file``, ``--nats-ca``) connects over TLS and a request/reply crosses;
one that trusts only the system's CAs fails the certificate check, and so does one that dials a name the
certificate does not carry; a hand-written plain client never gets past the hub's INFO. A client given
a CA refuses a server that does not offer TLS before it sends its password (no downgrade). Real cloud
processes: an LLM worker (CA from the environment) registers over TLS (the hub's /connz shows the TLS
version), ``xiaozhi-cloud buckets --nats-ca`` works and fails in one line without it or with a bad CA
file. ``xiaozhi-cloud nats-config --client-tls`` writes the certificate and a config nats-server runs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest

from cloud.cli import main as cloud_main
from cloud.config import ENV_PREFIX, CloudConfig
from shared.nats.configs import CLIENT_TLS_TIMEOUT_S, load_credential, save_credential
from shared.nats.connect import LinkState, connect, connect_once, connect_until_up, dial, nats_tls
from shared.nats.local import Hub
from shared.nats.pki import cert_hosts, load_cert
from shared.nats.server import free_port, run_nats_server
from shared.nats.settings import NatsClientConfig, client_overrides
from shared.settings import load_settings
from shared.tls import TlsError
from tests.processes import Proc, spawn
from tests.security.helpers import wait_until

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    hub = Hub(tmp_path_factory.mktemp("client-tls") / "hub", http_port=free_port(), client_tls=True)
    hub.start(buckets=True)  # the buckets are made over the TLS client port already
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def cred_path(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("client-tls-cred") / "cloud.json"
    save_credential(hub.cloud, path)
    return path


def _client_connections(hub: Hub) -> list[dict]:
    answer = httpx.get(f"http://127.0.0.1:{hub.http_port}/connz?auth=1&state=open&limit=1024", timeout=5)
    answer.raise_for_status()
    return [c for c in answer.json().get("connections") or [] if c.get("kind", "Client") == "Client"]


def _run_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloud.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s
    )


def test_the_hub_config_puts_the_client_port_on_tls_without_client_certificates(hub: Hub) -> None:
    assert hub.server is not None
    conf = hub.server.config_path.read_text()
    top, leaf = conf.split("leafnodes {")
    block = top.split("tls {")[1].split("}")[0]
    assert str(hub.pki.hub_dir.resolve() / "client.pem") in block and "client.key" in block
    assert f"timeout: {CLIENT_TLS_TIMEOUT_S}" in block and "verify" not in block  # passwords, not certificates
    assert "verify: true" in leaf  # the leaf port keeps its mutual TLS
    assert hub.client_ca == str(hub.pki.ca_cert.resolve())
    assert set(cert_hosts(load_cert(hub.pki.hub_dir / "client.pem"))) == {"127.0.0.1", "localhost"}


async def test_a_client_with_the_ca_connects_and_a_request_crosses(hub: Hub) -> None:
    tls = nats_tls(hub.url, hub.client_ca)
    assert tls is not None
    name = "tls-client-ok"
    server = await connect(hub.url, "tls-server", user="cloud", password=hub.cloud.password, tls=tls)
    client = await connect_once(hub.url, name, 5, user="cloud", password=hub.cloud.password, tls=tls)
    try:

        async def echo(msg) -> None:  # type: ignore[no-untyped-def]
            await msg.respond(b"echo:" + msg.data)

        await server.subscribe("tls.echo", cb=echo)
        await server.flush()
        deadline = time.monotonic() + 10
        while True:  # the subscription is normally there once flushed; a loaded machine gets a few retries
            try:
                reply = await client.request("tls.echo", b"hello", timeout=5)
                break
            except nats.errors.NoRespondersError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert reply.data == b"echo:hello"
        [conn] = [c for c in await asyncio.to_thread(_client_connections, hub) if c.get("name") == name]
        assert conn["tls_version"] in ("1.2", "1.3"), conn
        assert conn["authorized_user"] == "cloud", conn  # still the password inside TLS
    finally:
        await client.close()
        await server.close()


async def test_a_service_connects_with_the_ca_from_its_settings(hub: Hub, cred_path: Path) -> None:
    cfg = NatsClientConfig(url=hub.url, credential=str(cred_path), ca_file=hub.client_ca)
    assert cfg.tls() is not None
    state = LinkState()
    nc = await asyncio.wait_for(connect_until_up(cfg.url, "tls-service", state, cfg.credential, cfg.ca_file), 10)
    try:
        assert state.connected and nc.is_connected
        js = nc.jetstream(domain="xiaozhi")
        assert await js.key_value("xz_revoked")  # JetStream over the TLS port
    finally:
        await nc.close()


async def test_a_client_trusting_only_the_system_cas_fails_the_certificate_check(hub: Hub) -> None:
    system = nats_tls(hub.url.replace("nats://", "tls://"))  # a tls:// URL without a CA: the system's CAs
    assert system is not None
    for tls in (system, None):  # None: nats-py on its own upgrades with the system's CAs as well
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await connect_once(hub.url, "tls-client-system", 5, user="cloud", password=hub.cloud.password, tls=tls)


async def test_the_host_name_is_checked_against_the_certificate(hub: Hub) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname mismatch"):
        await asyncio.wait_for(
            nats.connect(
                servers=[hub.url],
                tls=nats_tls(hub.url, hub.client_ca),
                tls_hostname="hub.elsewhere.example",
                allow_reconnect=False,
                max_reconnect_attempts=1,
                connect_timeout=3,
                user="cloud",
                password=hub.cloud.password,
            ),
            10,
        )


def test_a_plain_client_cannot_talk_to_the_hub(hub: Hub) -> None:
    """A client without TLS reads the hub's INFO (which demands TLS) and answers in clear: the hub drops it."""
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as sock:
        sock.settimeout(5)
        info = b""
        while not info.endswith(b"\r\n"):
            info += sock.recv(4096)
        assert info.startswith(b"INFO ")
        assert json.loads(info[5:])["tls_required"] is True
        connect = {"user": "cloud", "pass": hub.cloud.password, "verbose": False, "pedantic": False}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        got = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(4096)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break  # the hub closed the connection
            got += chunk
        assert b"PONG" not in got and b"+OK" not in got, got


async def test_a_client_with_a_ca_refuses_a_server_without_tls_before_its_password(hub: Hub) -> None:
    """No downgrade: a server (or someone in between) whose INFO does not ask for TLS gets no CONNECT."""
    received = bytearray()
    done = asyncio.Event()

    async def plain_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = {"server_id": "fake", "version": "2.10.0", "proto": 1, "max_payload": 1048576, "auth_required": True}
        try:
            writer.write(b"INFO " + json.dumps(info).encode() + b"\r\n")
            await writer.drain()
            deadline = time.monotonic() + 1.0  # whatever the client sends after the INFO, until it hangs up
            while (left := deadline - time.monotonic()) > 0:
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), left)
                except TimeoutError:
                    break
                if not chunk:
                    break
                received.extend(chunk)
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(plain_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"nats://127.0.0.1:{port}"
        with pytest.raises(nats.errors.Error, match="does not offer TLS"):
            await connect_once(
                url, "tls-client-downgrade", 5, user="cloud", password="secret-pw", tls=nats_tls(url, hub.client_ca)
            )
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()
    assert b"secret-pw" not in received and b"CONNECT" not in received, bytes(received)


def test_an_unusable_ca_file_is_named_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing, junk = tmp_path / "missing.pem", tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    for bad in (missing, junk):
        with pytest.raises(TlsError, match=str(bad)):
            nats_tls("nats://hub:4222", str(bad))
    assert nats_tls("nats://hub:4222") is None  # no CA, no tls://: plain, as before
    # The worker and the console say so in one line and exit 2, before loading anything.
    for argv in (
        ["worker", "--role", "llm", "--nats", "nats://127.0.0.1:1", "--nats-ca", str(missing)],
        ["console", "--nats", "nats://127.0.0.1:1", "--nats-ca", str(junk), "--db", f"sqlite:///{tmp_path}/c.db"],
    ):
        assert cloud_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith("xiaozhi-cloud: ") and "CA certificate file" in err, err


def test_the_ca_comes_from_the_flag_or_the_environment() -> None:
    assert client_overrides(None, None, None, "/etc/xiaozhi/hub-ca.pem") == {
        "nats": {"ca_file": "/etc/xiaozhi/hub-ca.pem"}
    }
    env = {"XIAOZHI_CLOUD__NATS__CA_FILE": "/etc/xiaozhi/env-ca.pem"}
    cfg = load_settings(CloudConfig, None, {}, prefix=ENV_PREFIX, environ=env)
    assert cfg.nats.ca_file == "/etc/xiaozhi/env-ca.pem"
    flagged = load_settings(
        CloudConfig, None, client_overrides(None, None, None, "/flag.pem"), prefix=ENV_PREFIX, environ=env
    )
    assert flagged.nats.ca_file == "/flag.pem"  # the flag beats the environment


def test_the_buckets_command_works_over_tls_with_nats_ca(hub: Hub, cred_path: Path) -> None:
    args = ["buckets", "--nats", hub.url, "--credential", str(cred_path), "--timeout", "10"]
    done = _run_cli(*args, "--nats-ca", hub.client_ca)
    assert done.returncode == 0, done.stderr
    assert "buckets ready" in done.stdout
    without = _run_cli(*args)  # the system's CAs do not know the fleet's CA
    assert without.returncode == 1, without
    assert len(without.stderr.strip().splitlines()) == 1 and "certificate verify failed" in without.stderr
    bad = _run_cli(*args, "--nats-ca", str(cred_path))  # not a certificate
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and str(cred_path) in bad.stderr


async def test_an_llm_worker_serves_over_the_tls_client_port(hub: Hub, cred_path: Path) -> None:
    """A real worker process, its CA from the environment (``XIAOZHI_CLOUD__NATS__CA_FILE``)."""
    worker: Proc = await asyncio.to_thread(
        spawn,
        "cloud-llm-worker-tls",
        [
            sys.executable,
            "-m",
            "cloud.cli",
            "worker",
            "--role",
            "llm",
            "--nats",
            hub.url,
            "--credential",
            str(cred_path),
            "--openai-url",
            "http://127.0.0.1:9/v1",
            "--id",
            "llm-tls-1",
            "--http-port",
            "0",
        ],
        "READY worker=",
        60,
        {"XIAOZHI_CLOUD__NATS__CA_FILE": hub.client_ca},
    )
    try:
        await asyncio.to_thread(
            wait_until,
            "the worker's connection did not show up over TLS",
            lambda: any(c.get("name") == "worker llm-tls-1" for c in _client_connections(hub)),
            10,
            worker.log_text,
        )
        [conn] = [c for c in await asyncio.to_thread(_client_connections, hub) if c.get("name") == "worker llm-tls-1"]
        assert conn["tls_version"] in ("1.2", "1.3") and conn["authorized_user"] == "cloud", conn
        cred = load_credential(cred_path)
        nc = await dial(hub.client_tls_context(), servers=[hub.url], user=cred.user, password=cred.password)
        try:
            reply = await nc.request("$SRV.PING.xiaozhi-llm", b"", timeout=5)  # its NATS micro service answers
            assert json.loads(reply.data)["metadata"]["worker"] == "llm-tls-1"
        finally:
            await nc.close()
    finally:
        worker.stop()


async def test_nats_config_client_tls_writes_a_config_nats_server_runs(tmp_path: Path) -> None:
    out = tmp_path / "hub"
    port, leaf_port = free_port(), free_port()
    argv = [
        "nats-config",
        "--edges",
        "edge-1",
        "--out",
        str(out),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--leaf-port",
        str(leaf_port),
        "--http-port",
        "0",
        "--store-dir",
        str(tmp_path / "js"),
        "--client-tls",
        "--client-host",
        "nats.xiaozhi.svc,10.1.2.3",
    ]
    assert await asyncio.to_thread(cloud_main, argv) == 0
    hub_dir = out / "tls" / "hub"
    for name in ("client.pem", "client.key", "ca.pem", "leaf.pem", "leaf.key"):
        assert (hub_dir / name).is_file(), name
    assert (hub_dir / "client.key").stat().st_mode & 0o777 == 0o600
    hosts = set(cert_hosts(load_cert(hub_dir / "client.pem")))
    assert {"nats.xiaozhi.svc", "10.1.2.3", "localhost", "127.0.0.1"} <= hosts
    conf = (out / "cloud.conf").read_text()
    top = conf.split("jetstream {")[0]
    assert "tls {" in top and str((hub_dir / "client.pem").resolve()) in top and "verify" not in top
    # A re-run keeps the certificate (deployed clients trust the CA, the hub keeps its files).
    before = (hub_dir / "client.pem").read_bytes()
    assert await asyncio.to_thread(cloud_main, argv) == 0
    assert (hub_dir / "client.pem").read_bytes() == before

    server = await asyncio.to_thread(run_nats_server, out / "cloud.conf", tmp_path / "hub.log", "127.0.0.1", port)
    try:
        cred = load_credential(out / "credentials" / "cloud.json")
        url = f"nats://127.0.0.1:{port}"
        nc = await connect_once(
            url,
            "nats-config-tls",
            5,
            user=cred.user,
            password=cred.password,
            tls=nats_tls(url, str(hub_dir / "ca.pem")),
        )
        try:
            assert nc._server_info.get("tls_required") is True
            await nc.flush(timeout=5)
        finally:
            await nc.close()
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect_once(url, "nats-config-plain", 5, user=cred.user, password=cred.password)
    finally:
        server.stop()

    # Without --client-tls the client port stays plain (the default), and --client-host alone is refused.
    plain = tmp_path / "plain"
    assert await asyncio.to_thread(cloud_main, ["nats-config", "--edges", "e", "--out", str(plain)]) == 0
    assert "tls {" not in (plain / "cloud.conf").read_text().split("leafnodes {")[0]
    assert not (plain / "tls" / "hub" / "client.pem").exists()
    refused = ["nats-config", "--edges", "e", "--out", str(plain), "--client-host", "x"]
    assert await asyncio.to_thread(cloud_main, refused) == 2
