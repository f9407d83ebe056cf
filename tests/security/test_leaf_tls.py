"""The leaf link is mutual TLS, all real: a nats-server hub with the config ``cloud_config`` writes (its
leaf port requires and verifies a client certificate of the fleet's leaf CA, ``verify: true``) and
nats-server leaves with the configs ``edge_config`` writes.

A leaf with a certificate of the CA links (the hub's /connz shows the link's TLS version and the
edge's certificate) and a message crosses it. Every other leaf below has the right password, so only
TLS can stop it, and each is stopped at the handshake, attempt after attempt, before its password is
even looked at: one with no client certificate, one whose certificate another CA signed (the hub
refuses both), one that does not trust the hub's CA (it refuses the hub), a plain leaf (the hub's
INFO demands TLS; it cannot meet it), and a hand-written client that answers the hub's INFO with a
plain-text CONNECT (the hub drops it). The CLIs are checked too: ``xiaozhi-cloud nats-config`` makes
the CA and certificates (keys 0600) and keeps them on a re-run or takes your own CA, ``xiaozhi-edge
nats-config`` wants the three files or ``--plain-leaf``, their two configs link, and
``xiaozhi-provision enroll-edge`` puts the edge's certificate, key and the CA into the bundle.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import nats
import pytest
from cryptography import x509

from shared.nats.configs import PLAIN_LEAF_WARNING, TlsFiles
from shared.nats.local import Hub, Leaf
from shared.nats.pki import LeafPki, load_cert
from shared.nats.server import free_port, run_nats_server
from tests.security.helpers import wait_until

pytestmark = pytest.mark.timeout(180)

# What the hub's nats-server logs when it refuses a leaf at the TLS handshake, and the leaf's when it
# refuses the hub (nats-server 2.10+, Go's crypto/tls and crypto/x509).
HANDSHAKE_FAILED = "Leafnode connection closed: TLS Handshake Failure"
NO_CLIENT_CERT = "TLS leafnode handshake error: tls: client didn't provide a certificate"
UNKNOWN_CA = (
    "TLS leafnode handshake error: tls: failed to verify certificate: x509: certificate signed by unknown authority"
)
PEER_REFUSED = "TLS leafnode handshake error: remote error: tls: bad certificate"
AUTH_FAILED = ("Authorization Violation", "authentication error")


def _leaf_connections(hub: Hub) -> list[dict]:
    """The hub's open leaf connections, as its monitoring port reports them (with TLS and auth details)."""
    answer = httpx.get(f"http://127.0.0.1:{hub.http_port}/connz?auth=1&state=open&limit=1024", timeout=5)
    answer.raise_for_status()
    return [c for c in answer.json().get("connections") or [] if c.get("kind") == "Leafnode"]


def _hub_log(hub: Hub) -> str:
    assert hub.server is not None
    return hub.server.log_text()


def _log(leaf: Leaf) -> str:
    assert leaf.server is not None
    return leaf.server.log_text()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    hub = Hub(tmp_path_factory.mktemp("leaf-tls") / "hub", http_port=free_port())
    for edge in ("edge-ok", "edge-nocert", "edge-otherca", "edge-distrust", "edge-plain"):
        hub.credential(edge)
    hub.start(buckets=False)
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> LeafPki:
    """A second CA, unknown to the hub: certificates from it must not open the leaf port."""
    pki = LeafPki(tmp_path_factory.mktemp("other-ca") / "tls")
    pki.ensure_ca()
    return pki


@pytest.fixture(scope="module")
def linked(hub: Hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leaf]:
    """The leaf that does everything right: it stays linked while the others are refused."""
    leaf = Leaf(tmp_path_factory.mktemp("edge-ok"), "edge-ok", hub).start()
    try:
        wait_until(
            "edge-ok did not link to the hub",
            lambda: any(c.get("name") == "edge-ok" for c in _leaf_connections(hub)),
            15,
            lambda: _log(leaf) + _hub_log(hub),
        )
        yield leaf
    finally:
        leaf.stop()


def test_hub_and_leaf_configs_carry_the_tls_blocks(hub: Hub, linked: Leaf) -> None:
    assert hub.server is not None and linked.server is not None
    hub_conf = hub.server.config_path.read_text()
    tls = hub_conf.split("leafnodes {")[1].split("tls {")[1].split("}")[0]
    assert "verify: true" in tls and str(hub.pki.hub_dir.resolve() / "leaf.pem") in tls
    leaf_conf = linked.server.config_path.read_text()
    assert str(hub.pki.edge_cert("edge-ok").resolve()) in leaf_conf and str(hub.pki.ca_cert.resolve()) in leaf_conf
    assert PLAIN_LEAF_WARNING not in hub_conf + leaf_conf


async def test_a_leaf_with_the_ca_s_certificate_links_and_a_message_crosses(hub: Hub, linked: Leaf) -> None:
    [conn] = [c for c in await asyncio.to_thread(_leaf_connections, hub) if c.get("name") == "edge-ok"]
    # Over TLS, authenticated by both: the certificate the hub verified and the password of the edge's user.
    assert conn["tls_version"] in ("1.2", "1.3"), conn
    assert [p["subject"] for p in conn["tls_peer_certs"]] == ["CN=edge-ok,O=xiaozhi-fleet"], conn
    assert conn["authorized_user"] == "edge-ok", conn
    cloud = await nats.connect(hub.url, user="cloud", password=hub.cloud.password)
    edge = await nats.connect(linked.url)
    try:
        sub = await cloud.subscribe("xz.fleet.heartbeat.edge-ok")
        await cloud.flush()
        deadline = time.monotonic() + 10
        while True:  # the cloud's interest reaches the leaf asynchronously
            await edge.publish("xz.fleet.heartbeat.edge-ok", b"over tls")
            try:
                msg = await sub.next_msg(timeout=0.1)
                break
            except nats.errors.TimeoutError:
                assert time.monotonic() < deadline, "nothing crossed the leaf link"
        assert msg.data == b"over tls"
    finally:
        await edge.close()
        await cloud.close()


def _no_client_cert(hub: Hub, other: LeafPki, edge: str) -> TlsFiles:
    return TlsFiles("", "", str(hub.pki.ca_cert.resolve()))  # only the CA to check the hub: no certificate


def _other_ca_cert(hub: Hub, other: LeafPki, edge: str) -> TlsFiles:
    other.ensure_edge(edge)  # the right CN, the wrong issuer
    return TlsFiles(str(other.edge_cert(edge)), str(other.edge_key(edge)), str(hub.pki.ca_cert.resolve()))


def _distrusts_hub(hub: Hub, other: LeafPki, edge: str) -> TlsFiles:
    good = hub.leaf_tls(edge)
    assert good is not None
    return TlsFiles(good.cert_file, good.key_file, str(other.ca_cert))  # a good certificate, the wrong trust


class _CertlessLeaf(Leaf):
    """A leaf whose tls block has a CA but no certificate (``edge_config`` always writes both)."""

    def config_text(self) -> str:
        lines = super().config_text().splitlines()
        return "\n".join(line for line in lines if '_file: ""' not in line) + "\n"


# (edge, its tls, the log that must name the refusal: hub or leaf, what it must say)
REFUSED = [
    ("edge-nocert", _no_client_cert, "hub", NO_CLIENT_CERT),
    ("edge-otherca", _other_ca_cert, "hub", UNKNOWN_CA),
    ("edge-distrust", _distrusts_hub, "leaf", UNKNOWN_CA),
    ("edge-plain", None, "leaf", "TLS leafnode handshake error"),
]


@pytest.mark.parametrize(("edge", "tls", "where", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_leaf_without_a_good_certificate_or_trust_cannot_link(
    hub: Hub,
    linked: Leaf,
    other_ca: LeafPki,
    tmp_path: Path,
    edge: str,
    tls: Callable[[Hub, LeafPki, str], TlsFiles] | None,
    where: str,
    reason: str,
) -> None:
    before = len(_hub_log(hub))
    cls = _CertlessLeaf if tls is _no_client_cert else Leaf
    leaf = cls(tmp_path, edge, hub, plain=tls is None, tls=tls(hub, other_ca, edge) if tls else None)
    text = leaf.config_text()
    assert hub.credential(edge).password in text  # the right password: only TLS may stop it
    assert ("tls {" in text) == (tls is not None)
    leaf.start()
    try:

        def attempts() -> str:
            return _hub_log(hub)[before:] if where == "hub" else _log(leaf)

        # Refused at every attempt (the leaf re-dials every second), not once by chance: three in a row.
        wait_until(
            f"{edge}: {reason!r} did not appear three times in the {where}'s log",
            lambda: attempts().count(reason) >= 3,
            20,
            lambda: f"hub:\n{_hub_log(hub)[before:]}\nleaf:\n{_log(leaf)}",
        )
        hub_text, leaf_text = _hub_log(hub)[before:], _log(leaf)
        # The hub closed each attempt at the handshake and never checked the password.
        assert hub_text.count(HANDSHAKE_FAILED) >= 3, hub_text
        assert not any(a in hub_text or a in leaf_text for a in AUTH_FAILED), hub_text + leaf_text
        if where == "leaf":  # the leaf gave up on the hub's certificate: the hub saw it abort
            assert "CN=xiaozhi leaf hub" in leaf_text and PEER_REFUSED in hub_text, leaf_text + hub_text
        if tls is _other_ca_cert:
            assert f"CN={edge}," in hub_text, hub_text  # the certificate the hub refused was this edge's
        names = [c.get("name") for c in _leaf_connections(hub)]
        assert edge not in names and "edge-ok" in names, names
    finally:
        leaf.stop()


def test_a_plain_text_connect_with_the_right_password_is_dropped(hub: Hub, linked: Leaf) -> None:
    """Below nats-server's own leaf code: a client that ignores the hub's demand for TLS and sends its
    (correct) credentials in clear gets no answer, and the hub logs a TLS failure, not an auth one."""
    before = len(_hub_log(hub))
    cred = hub.credential("edge-plain")
    with socket.create_connection(("127.0.0.1", hub.leaf_port), timeout=5) as sock:
        info = json.loads(sock.recv(65536).decode().removeprefix("INFO ").strip())
        assert info["tls_required"] is True and info["tls_verify"] is True, info
        connect = {"user": cred.user, "pass": cred.password, "name": "edge-plain", "tls_required": False}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # the hub hangs up
            answer += chunk
    assert b"PONG" not in answer and b"+OK" not in answer, answer
    wait_until(
        "the hub did not log the plain-text attempt as a TLS failure",
        lambda: HANDSHAKE_FAILED in _hub_log(hub)[before:],
        10,
        lambda: _hub_log(hub)[before:],
    )
    assert not any(a in _hub_log(hub)[before:] for a in AUTH_FAILED)


def test_the_leaf_port_speaks_tls_with_the_ca_s_certificate_for_the_dialled_name(hub: Hub) -> None:
    """What an edge sees: after INFO, a TLS server whose certificate chains to the CA and names 127.0.0.1."""
    ctx = ssl.create_default_context(cafile=str(hub.pki.ca_cert))
    good = hub.leaf_tls("edge-ok")
    assert good is not None
    ctx.load_cert_chain(good.cert_file, good.key_file)
    with socket.create_connection(("127.0.0.1", hub.leaf_port), timeout=5) as raw:
        raw.recv(65536)  # INFO, in clear (nats-server upgrades after it)
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
    assert cert == load_cert(hub.pki.hub_dir / "leaf.pem")
    wrong = ssl.create_default_context(cafile=str(hub.pki.ca_cert))
    with socket.create_connection(("127.0.0.1", hub.leaf_port), timeout=5) as raw:
        raw.recv(65536)
        with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
            wrong.wrap_socket(raw, server_hostname="hub.invalid")  # a name the certificate does not carry


# -- the CLIs ----------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _cloud(*argv: str) -> int:
    from cloud.cli import main

    return main(["nats-config", *argv])


def test_nats_config_makes_the_ca_and_certificates_and_keeps_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "hub"
    assert _cloud("--edges", "e1,e2", "--out", str(out), "--leaf-host", "hub.example,10.0.0.5") == 0
    pki = LeafPki(out / "tls")
    files = [pki.ca_cert, pki.ca_key, pki.hub_dir / "leaf.pem", pki.hub_dir / "leaf.key", pki.hub_dir / "ca.pem"]
    files += [pki.edge_cert("e1"), pki.edge_key("e1"), pki.edge_cert("e2"), pki.edge_key("e2")]
    for f in files:
        assert _mode(f) == (0o600 if f.suffix == ".key" else 0o644), f
    assert set(pki.hub_hosts()) == {"hub.example", "10.0.0.5", "localhost", "127.0.0.1"}
    edge_cert = load_cert(pki.edge_cert("e1"))
    edge_cert.verify_directly_issued_by(load_cert(pki.ca_cert))
    assert edge_cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "e1"
    conf = (out / "cloud.conf").read_text()
    assert f'cert_file: "{(pki.hub_dir / "leaf.pem").resolve()}"' in conf and "verify: true" in conf
    before = {f: f.read_bytes() for f in files}
    # A re-run (one more edge, one more name) keeps the CA and every edge's certificate; the hub's is
    # issued again for the new name, keeping the old ones.
    assert _cloud("--edges", "e1,e2,e3", "--out", str(out), "--leaf-host", "hub2.example") == 0
    assert all(f.read_bytes() == before[f] for f in files if "hub" not in f.parent.name), "a kept file changed"
    assert {"hub.example", "10.0.0.5", "hub2.example"} <= set(pki.hub_hosts())
    assert pki.edge_cert("e3").is_file()
    hub_cert = (pki.hub_dir / "leaf.pem").read_bytes()
    assert _cloud("--edges", "e1,e2,e3", "--out", str(out)) == 0
    assert (pki.hub_dir / "leaf.pem").read_bytes() == hub_cert  # nothing new asked: nothing re-issued
    # Your own CA: copied, and what it signs verifies against it; another CA over an existing one is refused.
    own = tmp_path / "own"
    assert _cloud("--edges", "e9", "--out", str(own), "--ca-cert", str(pki.ca_cert), "--ca-key", str(pki.ca_key)) == 0
    load_cert(own / "tls" / "edges" / "e9.pem").verify_directly_issued_by(load_cert(pki.ca_cert))
    assert (own / "tls" / "ca.pem").read_bytes() == pki.ca_cert.read_bytes() and _mode(own / "tls" / "ca.key") == 0o600
    other = LeafPki(tmp_path / "other")
    other.ensure_ca()
    capsys.readouterr()
    assert (
        _cloud("--edges", "e1", "--out", str(out), "--ca-cert", str(other.ca_cert), "--ca-key", str(other.ca_key)) == 2
    )
    assert "another CA" in capsys.readouterr().err
    assert _cloud("--edges", "e1", "--out", str(out), "--ca-cert", str(pki.ca_cert), "--ca-key", str(other.ca_key)) == 2
    # Plain only when asked, and then the config says so.
    plain = tmp_path / "plain"
    assert _cloud("--edges", "e1", "--out", str(plain), "--plain-leaf") == 0
    text = (plain / "cloud.conf").read_text()
    assert "tls {" not in text and PLAIN_LEAF_WARNING in text and not (plain / "tls").exists()


def test_the_clis_configs_link_over_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_node.cli import main as edge_main

    hub_port, leaf_port, http_port, edge_port = free_port(), free_port(), free_port(), free_port()
    out = tmp_path / "hub"
    flags = ["--host", "127.0.0.1", "--port", str(hub_port), "--leaf-port", str(leaf_port)]
    flags += ["--http-port", str(http_port), "--store-dir", str(tmp_path / "js")]
    assert _cloud("--edges", "site-1", "--out", str(out), *flags) == 0
    pki = LeafPki(out / "tls")
    leaf_conf = tmp_path / "edge" / "nats-leaf.conf"
    base = ["nats-config", "--cloud", f"nats-leaf://127.0.0.1:{leaf_port}", "--credential"]
    base += [str(out / "credentials" / "site-1.json"), "--out", str(leaf_conf), "--port", str(edge_port)]
    capsys.readouterr()
    assert edge_main(base) == 2  # neither the files nor --plain-leaf
    assert "--plain-leaf" in capsys.readouterr().err
    assert edge_main([*base, "--plain-leaf"]) == 0 and PLAIN_LEAF_WARNING in leaf_conf.read_text()
    tls = ["--cert", str(pki.edge_cert("site-1")), "--key", str(pki.edge_key("site-1")), "--ca", str(pki.ca_cert)]
    assert edge_main([*base, *tls]) == 0
    assert "tls {" in leaf_conf.read_text() and PLAIN_LEAF_WARNING not in leaf_conf.read_text()
    hub = run_nats_server(out / "cloud.conf", tmp_path / "hub.log", "127.0.0.1", hub_port)
    leaf = run_nats_server(leaf_conf, tmp_path / "leaf.log", "127.0.0.1", edge_port)
    try:

        def linked() -> bool:
            answer = httpx.get(f"http://127.0.0.1:{http_port}/connz?auth=1", timeout=5).json()
            conns = [c for c in answer.get("connections") or [] if c.get("kind") == "Leafnode"]
            return any(c.get("authorized_user") == "site-1" and c.get("tls_version") for c in conns)

        wait_until("the CLIs' leaf did not link over TLS", linked, 15, lambda: hub.log_text() + leaf.log_text())
    finally:
        leaf.stop()
        hub.stop()


def test_enroll_edge_bundles_the_certificate_key_and_ca(tmp_path: Path) -> None:
    from provisioning.cli import main as provision_main

    hub_dir = tmp_path / "hub"
    assert _cloud("--edges", "site-1", "--out", str(hub_dir), "--leaf-host", "hub.example") == 0
    pki = LeafPki(hub_dir / "tls")
    for edge in ("site-1", "site-2"):  # nats-config made site-1's certificate; enroll-edge makes site-2's
        out = tmp_path / edge
        argv = ["enroll-edge", "--edge-id", edge, "--hub-dir", str(hub_dir), "--hub-leaf-url"]
        argv += ["nats-leaf://hub.example:7422", "--token-keys", str(tmp_path / "keys"), "--out", str(out)]
        assert provision_main([*argv, "--edge-config-dir", "/srv/edge"]) == 0
        assert (out / "nats-leaf.pem").read_bytes() == pki.edge_cert(edge).read_bytes()
        assert (out / "nats-leaf.key").read_bytes() == pki.edge_key(edge).read_bytes()
        assert (out / "nats-leaf-ca.pem").read_bytes() == pki.ca_cert.read_bytes()
        assert _mode(out / "nats-leaf.key") == 0o600 and _mode(out / "nats-leaf.conf") == 0o600
        conf = (out / "nats-leaf.conf").read_text()
        for line in (
            'cert_file: "/srv/edge/nats-leaf.pem"',
            'key_file: "/srv/edge/nats-leaf.key"',
            'ca_file: "/srv/edge/nats-leaf-ca.pem"',
        ):
            assert line in conf, conf
    load_cert(tmp_path / "site-2" / "nats-leaf.pem").verify_directly_issued_by(load_cert(pki.ca_cert))
    assert provision_main([*argv[:-2], "--out", str(tmp_path / "p"), "--plain-leaf"]) == 0
    assert not (tmp_path / "p" / "nats-leaf.key").exists()
    assert PLAIN_LEAF_WARNING in (tmp_path / "p" / "nats-leaf.conf").read_text()
