"""Hub and leaf configs: nats-server accepts them, edges authenticate with their own credential."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from shared.nats.configs import (
    PLAIN_LEAF_WARNING,
    TlsFiles,
    cloud_config,
    edge_config,
    edge_permissions,
    hash_password,
    new_credential,
)
from shared.nats.local import Hub, Leaf
from shared.nats.pki import LeafPki
from shared.nats.server import NatsServerError, free_port, start_nats_server

TLS = TlsFiles("/x/leaf.pem", "/x/leaf.key", "/x/ca.pem")


def test_hub_config_hashes_every_password() -> None:
    edge, cloud = new_credential("edge-1"), new_credential("cloud", "cloud")
    text = cloud_config(server_name="h", edges=[edge], clients=[cloud], tls=TLS, http_port=None)
    assert edge.password not in text and cloud.password not in text
    assert text.count('"$2a$11$') == 2 and "leafnodes" in text and "jetstream" in text
    assert hash_password("x").startswith("$2a$")


def test_leaf_tls_blocks_and_the_plain_warning() -> None:
    """TLS unless asked otherwise: the hub requires and verifies the edge's certificate; the edge presents
    its own and checks the hub's against the CA; a plain config says so at the top."""
    edge, cloud = new_credential("edge-1"), new_credential("cloud", "cloud")
    hub = cloud_config(server_name="h", edges=[edge], clients=[cloud], tls=TLS, http_port=None)
    leafnodes = hub.split("leafnodes {")[1]
    block = leafnodes.split("tls {")[1].split("}")[0]
    assert '"/x/leaf.pem"' in block and '"/x/leaf.key"' in block and '"/x/ca.pem"' in block
    assert "verify: true" in block and "timeout: 3" in block and PLAIN_LEAF_WARNING not in hub
    mine = TlsFiles("/e/edge-1.pem", "/e/edge-1.key", "/e/ca.pem")
    leaf = edge_config(server_name="e", cloud_leaf_urls=["nats-leaf://hub:7422"], credential=edge, tls=mine)
    remote = leaf.split("remotes: [")[1]
    assert '"/e/edge-1.pem"' in remote and '"/e/edge-1.key"' in remote and '"/e/ca.pem"' in remote
    assert "verify" not in remote and PLAIN_LEAF_WARNING not in leaf
    plain_hub = cloud_config(server_name="h", edges=[edge], clients=[cloud], tls=None, http_port=None)
    plain_leaf = edge_config(server_name="e", cloud_leaf_urls=["nats-leaf://hub:7422"], credential=edge, tls=None)
    for text in (plain_hub, plain_leaf):
        assert "tls {" not in text and text.splitlines()[1] == f"# {PLAIN_LEAF_WARNING}"


def test_edge_users_carry_their_own_permissions() -> None:
    edge, cloud = new_credential("edge-1"), new_credential("cloud", "cloud")
    text = cloud_config(server_name="h", edges=[edge], clients=[cloud], tls=TLS, http_port=None)
    users = text.split("leafnodes {")[0]
    assert '"xz.fleet.heartbeat.edge-1"' in users and '"_INBOX.edge-1.>"' in users
    assert users.count('allowed_connection_types: ["LEAFNODE"]') == 1  # the edge, not the cloud user
    perms = edge_permissions("edge-1")
    assert perms["subscribe"] == ["_INBOX.edge-1.>"]
    assert not [p for p in perms["publish"] if "STREAM.CREATE" in p or "DELETE" in p or p.endswith("API.>")]
    with pytest.raises(ValueError, match="subject token"):
        edge_permissions("edge.>")  # a user name must not widen its own heartbeat permission


def test_edge_config_needs_a_leaf_url() -> None:
    with pytest.raises(ValueError, match="nats-leaf://"):
        edge_config(server_name="e", cloud_leaf_urls=["http://hub:7422"], credential=None, tls=None)
    with pytest.raises(ValueError, match="leaf URL"):
        edge_config(server_name="e", cloud_leaf_urls=[], credential=None, tls=None)


def test_a_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(NatsServerError, match="refused"):
        start_nats_server("listen: [unclosed\n", tmp_path, "bad", "127.0.0.1", port)


async def test_leaf_links_with_its_credential_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    hub = Hub(tmp_path / "hub")
    hub.credential("edge-a")
    hub.credential("edge-b")
    hub.start()
    good = Leaf(tmp_path / "a", "edge-a", hub)
    bad = Leaf(tmp_path / "b", "edge-b", hub)
    try:
        good.start()
        hub.edges["edge-b"] = type(hub.edges["edge-b"])("edge-b", "wrong-password")  # the hub has the real hash
        bad.start()
        good.wait_linked()
        # A message published on the edge's local server reaches a cloud subscriber over the leaf link
        # (a subject the edge may publish: its own heartbeat; tests/cloud/test_nats_permissions.py).
        cloud_nc = await nats.connect(hub.url, user="cloud", password=hub.cloud.password)
        edge_nc = await nats.connect(good.url)
        sub = await cloud_nc.subscribe("xz.fleet.heartbeat.edge-a")
        await cloud_nc.flush()
        for _ in range(50):  # interest propagates over the link asynchronously
            await edge_nc.publish("xz.fleet.heartbeat.edge-a", b"hello")
            try:
                msg = await sub.next_msg(timeout=0.1)
                break
            except nats.errors.TimeoutError:
                continue
        else:
            raise AssertionError("nothing crossed the leaf link")
        assert msg.data == b"hello"
        await cloud_nc.close()
        await edge_nc.close()
        assert bad.server is not None
        with pytest.raises(RuntimeError):
            bad.wait_linked(timeout_s=1.5)
        assert "Authorization Violation" in bad.server.log_text() or "authorization" in bad.server.log_text().lower()
        # Clients of the hub need the cloud credential too.
        with pytest.raises(Exception):  # noqa: B017 - nats-py raises a few different errors here
            await nats.connect(hub.url, user="cloud", password="nope", allow_reconnect=False, connect_timeout=1)
    finally:
        bad.stop()
        good.stop()
        hub.stop()


def test_a_three_hub_cluster_config_is_accepted(tmp_path: Path) -> None:
    """Production runs three hubs: each one's config names the other two as routes."""
    import subprocess

    from shared.nats.server import nats_server_binary

    edge, cloud = new_credential("edge-1"), new_credential("cloud", "cloud")
    pki = LeafPki(tmp_path / "tls")
    pki.ensure_ca()
    pki.ensure_hub(["hub.example"])  # nats-server -t loads the certificate files
    ports = [free_port() for _ in range(3)]
    for i in range(3):
        routes = [f"nats-route://127.0.0.1:{p}" for j, p in enumerate(ports) if j != i]
        text = cloud_config(
            server_name=f"hub-{i}",
            edges=[edge],
            clients=[cloud],
            tls=pki.hub_files(),
            host="127.0.0.1",
            port=free_port(),
            leaf_port=free_port(),
            http_port=None,
            cluster_port=ports[i],
            routes=routes,
            store_dir=str(tmp_path / f"js{i}"),
        )
        conf = tmp_path / f"hub-{i}.conf"
        conf.write_text(text)
        check = subprocess.run([str(nats_server_binary()), "-t", "-c", str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        assert "cluster {" in text and routes[0] in text
