"""A NATS topology on one machine, real nats-server processes: a cloud hub (JetStream, leaf port)
and edge leaves. The tests and the fleet run (bench/fleet) build their clouds with it.

The leaf link is mutual TLS, as in production: the hub makes a throwaway leaf CA in its workdir
(``tls/``, :class:`shared.nats.pki.LeafPki`), a leaf-port certificate for 127.0.0.1 and a client
certificate per edge. ``Hub(..., tls=False)`` (and its leaves) run plain; ``Leaf(..., plain=True)``
or ``Leaf(..., tls=TlsFiles(...))`` make one leaf differ from its hub (the refusal tests).

The client port is plain, as by default in production; ``Hub(..., client_tls=True)`` puts it on TLS
(``nats-config --client-tls``) with a certificate of the same CA for 127.0.0.1 and localhost: clients
then pass :attr:`Hub.client_ca` (``--nats-ca``, ``nats.ca_file``) and :meth:`Hub.client_tls_context`."""

from __future__ import annotations

import asyncio
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from shared.nats.configs import Credential, TlsFiles, cloud_config, edge_config, new_credential
from shared.nats.pki import LeafPki
from shared.nats.server import NatsServerProcess, free_port, start_nats_server


@dataclass
class Hub:
    """The cloud side: a nats-server with JetStream and a leaf-node port, users per edge."""

    workdir: Path
    port: int = field(default_factory=free_port)
    leaf_port: int = field(default_factory=free_port)
    cloud: Credential = field(default_factory=lambda: new_credential("cloud", "cloud"))
    edges: dict[str, Credential] = field(default_factory=dict)
    server: NatsServerProcess | None = None
    tls: bool = True  # mutual TLS on the leaf port (False: plain, as `nats-config --plain-leaf`)
    http_port: int | None = None  # nats-server's monitoring port (/leafz), off unless given
    client_tls: bool = False  # TLS required on the client port (as `nats-config --client-tls`); clients need client_ca

    def credential(self, edge: str) -> Credential:
        if edge not in self.edges:
            self.edges[edge] = new_credential(edge)
        return self.edges[edge]

    @property
    def pki(self) -> LeafPki:
        """The hub's throwaway leaf CA and certificates (``workdir/tls``), made on first use."""
        pki = LeafPki(self.workdir / "tls")
        if pki.ensure_ca():
            pki.ensure_hub(["127.0.0.1", "localhost"])
        return pki

    def leaf_tls(self, edge: str) -> TlsFiles | None:
        """Edge ``edge``'s side of the link: its client certificate from the hub's CA (None: a plain hub)."""
        if not self.tls:
            return None
        pki = self.pki
        pki.ensure_edge(edge)
        return pki.edge_files(edge)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def client_ca(self) -> str:
        """The CA file a client checks the client port's certificate with ("" while that port is plain)."""
        return str(self.pki.ca_cert.resolve()) if self.client_tls else ""

    def client_tls_context(self) -> ssl.SSLContext | None:
        """What a client of this hub passes as ``tls`` (None while the client port is plain)."""
        from shared.nats.connect import nats_tls

        return nats_tls(self.url, self.client_ca)

    @property
    def leaf_url(self) -> str:
        return f"nats-leaf://127.0.0.1:{self.leaf_port}"

    def start(self, buckets: bool = True) -> Hub:
        """Start the server; with ``buckets``, create the KV buckets edges use but may not create."""
        client_tls = None
        if self.client_tls:
            self.pki.ensure_hub_client(["127.0.0.1", "localhost"])
            client_tls = self.pki.hub_client_files()
        text = cloud_config(
            server_name="test-hub",
            edges=list(self.edges.values()),
            clients=[self.cloud],
            tls=self.pki.hub_files() if self.tls else None,
            client_tls=client_tls,
            host="127.0.0.1",
            port=self.port,
            leaf_port=self.leaf_port,
            http_port=self.http_port,
            store_dir=str(self.workdir / "js"),
        )
        self.server = start_nats_server(text, self.workdir, "hub", "127.0.0.1", self.port)
        if buckets:
            # In a thread: start() is also called from inside running event loops (async tests).
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, self._create_buckets()).result(timeout=60)
        return self

    async def _create_buckets(self) -> None:
        """The cache buckets (as ``xiaozhi-cloud buckets``) and the revoked-devices bucket (as the console):
        edges read and write them but may not create streams (``shared.nats.configs.edge_permissions``).
        The routing bucket is left to each test: whether it exists is part of what some of them check."""
        from nats.js.api import KeyValueConfig, StorageType

        from shared.nats import revoked
        from shared.nats.connect import dial
        from shared.nats.subjects import CACHE_BUCKETS, JS_DOMAIN

        nc = await dial(
            self.client_tls_context(), servers=[self.url], user=self.cloud.user, password=self.cloud.password
        )
        try:
            js = nc.jetstream(domain=JS_DOMAIN, timeout=10.0)
            for bucket in CACHE_BUCKETS.values():
                cfg = KeyValueConfig(
                    bucket=bucket, ttl=7 * 24 * 3600, history=1, max_value_size=512 * 1024, storage=StorageType.FILE
                )
                await js.create_key_value(cfg)
            await revoked.open_bucket(js, create=True)
        finally:
            await nc.close()

    def stop(self, kill: bool = False) -> None:
        if self.server is not None:
            self.server.stop(kill=kill)


@dataclass
class Leaf:
    """An edge's own nats-server, a leaf of the hub, on loopback."""

    workdir: Path
    name: str
    hub: Hub
    port: int = field(default_factory=free_port)
    server: NatsServerProcess | None = None
    plain: bool = False  # no TLS block, whatever the hub does
    tls: TlsFiles | None = None  # these files instead of the certificate the hub's CA issues this edge

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        tls = None if self.plain else (self.tls or self.hub.leaf_tls(self.name))
        return edge_config(
            server_name=self.name,
            cloud_leaf_urls=[self.hub.leaf_url],
            credential=self.hub.credential(self.name),
            tls=tls,
            port=self.port,
        )

    def start(self) -> Leaf:
        self.server = start_nats_server(self.config_text(), self.workdir, f"leaf-{self.name}", "127.0.0.1", self.port)
        return self

    def wait_linked(self, timeout_s: float = 10.0) -> None:
        """Until the leaf's log says its connection to the hub is up."""
        assert self.server is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._linked():
                time.sleep(0.3)  # the server logs "created" before the hub has checked the password
                if self._linked():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"leaf {self.name} did not link to the hub:\n{self.server.log_text()[-2000:]}")

    def _linked(self) -> bool:
        assert self.server is not None
        events = [
            line
            for line in self.server.log_text().splitlines()
            if "Leafnode connection created" in line or "Leafnode connection closed" in line or "Leafnode Error" in line
        ]
        return bool(events) and "Leafnode connection created" in events[-1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
