"""A NATS topology on one machine, real nats-server processes: a cloud hub (JetStream, leaf port)
and edge leaves. The tests and the fleet run (bench/fleet) build their clouds with it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.nats.configs import Credential, cloud_config, edge_config, new_credential
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

    def credential(self, edge: str) -> Credential:
        if edge not in self.edges:
            self.edges[edge] = new_credential(edge)
        return self.edges[edge]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def leaf_url(self) -> str:
        return f"nats-leaf://127.0.0.1:{self.leaf_port}"

    def start(self) -> Hub:
        text = cloud_config(
            server_name="test-hub",
            edges=list(self.edges.values()),
            clients=[self.cloud],
            host="127.0.0.1",
            port=self.port,
            leaf_port=self.leaf_port,
            http_port=None,
            store_dir=str(self.workdir / "js"),
        )
        self.server = start_nats_server(text, self.workdir, "hub", "127.0.0.1", self.port)
        return self

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

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        return edge_config(
            server_name=self.name, cloud_leaf_urls=[self.hub.leaf_url], credential=self.hub.credential(self.name),
            port=self.port,
        )  # fmt: skip

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
        events = [line for line in self.server.log_text().splitlines()
                  if "Leafnode connection created" in line or "Leafnode connection closed" in line
                  or "Leafnode Error" in line]  # fmt: skip
        return bool(events) and "Leafnode connection created" in events[-1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
