"""The fleet's processes on one machine, each the real program: a cloud NATS hub, one leaf
nats-server per edge, the edges (with timing engines), the provisioning service, and the cloud
LLM worker in front of a timed vLLM stand-in.

Every edge runs as it would in the field: its own leaf (mutual TLS to the hub), heartbeats to the hub,
device tokens checked with the fleet's public key set, escalations over the leaf to the worker. Only the
models are timing stand-ins (edge_node/engines/timing.py and bench/fleet/timing_openai.py), because a
2-core machine cannot run a thousand devices' models; the report says so.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.loadgen.server import ROOT, EdgeProcess, spawn_edge, stop_edge
from bench.processes import Proc, ready_field, spawn
from shared import tokens
from shared.nats.configs import save_credential
from shared.nats.local import Hub, Leaf
from shared.nats.server import free_port

log = logging.getLogger("bench.fleet")

__all__ = ["DEFAULT_PROFILE", "FleetSpec", "FleetTopology"]

DEFAULT_PROFILE = ROOT / "bench" / "fleet" / "timing.2026-11-25.yaml"


@dataclass
class FleetSpec:
    edges: int = 8
    sites: int = 1  # edges are spread over this many sites (all on loopback: provisioning balances within one)
    max_sessions: int = 150  # per edge (server.max_sessions): what provisioning balances against
    profile: Path = DEFAULT_PROFILE
    # What an operator deploys: open questions and fresh facts (weather, news) go to the cloud.
    routing_file: Path = ROOT / "deploy" / "routing.example.yaml"
    heartbeat_s: float = 1.0
    stale_after_s: float = 4.0  # provisioning stops assigning to an edge this long without a heartbeat
    cloud_first_token_s: float = 0.35  # the vLLM stand-in (assumed: no GPU here)
    cloud_per_token_s: float = 0.03
    edge_env: dict[str, str] = field(default_factory=dict)  # extra XIAOZHI__* for every edge


@dataclass
class FleetEdge:
    name: str
    site: str
    leaf: Leaf
    process: EdgeProcess | None = None
    killed_at: float | None = None

    @property
    def ws_port(self) -> int:
        assert self.process is not None
        return self.process.ws_port


class FleetTopology:
    """Start with :meth:`start`, end with :meth:`stop` (also after a failed start)."""

    def __init__(self, spec: FleetSpec, workdir: Path, log_dir: Path) -> None:
        self.spec = spec
        self.work = workdir
        self.log_dir = log_dir
        self.hub = Hub(workdir / "hub")
        self.edges: dict[str, FleetEdge] = {}
        self.procs: list[Proc] = []
        self.provision_url = ""
        self.worker_http = ""
        self.key_path = workdir / "token-keys"  # the device-token key ring; edges get its keyset.json
        self.db = f"sqlite:///{workdir / 'fleet-console.db'}"

    # -- start / stop -----------------------------------------------------------------------------
    def start(self) -> None:
        started = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        tokens.KeyRing.create(self.key_path)
        for i in range(self.spec.edges):
            name = f"edge-{i + 1:02d}"
            self.hub.credential(name)
            site = f"site-{i % self.spec.sites + 1}"
            self.edges[name] = FleetEdge(name, site, Leaf(self.work / name, name, self.hub))
        cloud_cred = self.work / "cloud.json"
        save_credential(self.hub.cloud, cloud_cred)
        self.hub.start()
        for edge in self.edges.values():
            edge.leaf.start()
        for edge in self.edges.values():
            edge.leaf.wait_linked(30)
        log.info("hub and %d leaves up in %.1f s", len(self.edges), time.monotonic() - started)
        openai = self._spawn(
            "fleet-timing-openai",
            [
                sys.executable,
                "-m",
                "bench.fleet.timing_openai",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--first-token-s",
                str(self.spec.cloud_first_token_s),
                "--per-token-s",
                str(self.spec.cloud_per_token_s),
            ],
            "READY timing-openai",
        )
        openai_url = ready_field(openai, "url")
        worker = self._spawn(
            "fleet-llm-worker",
            [
                sys.executable,
                "-m",
                "cloud.cli",
                "worker",
                "--role",
                "llm",
                "--nats",
                self.hub.url,
                "--credential",
                str(cloud_cred),
                "--openai-url",
                openai_url,
                "--model",
                "qwen2.5-7b-instruct",
                "--id",
                "llm-fleet-1",
                "--http-port",
                "0",
            ],
            "READY worker=",
        )
        self.worker_http = f"http://127.0.0.1:{ready_field(worker, 'http')}"
        port = free_port()
        self._spawn(
            "fleet-provision",
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
                self.db,
                "--nats",
                self.hub.url,
                "--credential",
                str(cloud_cred),
                "--token-keys",
                str(self.key_path),
                "--public-url",
                f"http://127.0.0.1:{port}",
            ],
            "READY provision",
            env={
                "XIAOZHI_PROVISION__STALE_AFTER_S": str(self.spec.stale_after_s),
                # A fleet registered in advance: devices are served at once, no activation codes.
                "XIAOZHI_PROVISION__ACTIVATION_REQUIRED": "false",
            },
        )
        self.provision_url = f"http://127.0.0.1:{port}"
        for edge in self.edges.values():
            self.start_edge(edge)
        self.wait_healthy(len(self.edges), 60)
        log.info(
            "fleet up in %.1f s: %d edges, provisioning %s",
            time.monotonic() - started,
            len(self.edges),
            self.provision_url,
        )

    def start_edge(self, edge: FleetEdge) -> None:
        env = {
            "XIAOZHI__NODE_ID": edge.name,
            "XIAOZHI__SITE": edge.site,
            "XIAOZHI__NATS__URL": edge.leaf.url,
            "XIAOZHI__NATS__HEARTBEAT_S": str(self.spec.heartbeat_s),
            "XIAOZHI__TIMING__PROFILE": str(self.spec.profile),
            "XIAOZHI__ROUTING__FILE": str(self.spec.routing_file),
            "XIAOZHI__AUTH__DEVICE_TOKENS": "true",
            "XIAOZHI__AUTH__TOKEN_KEYS_FILE": str(self.key_path / tokens.KEYSET_FILE),
            "XIAOZHI__SERVER__MAX_SESSIONS": str(self.spec.max_sessions),
            # Devices hold their sessions for the whole run, speaking or not.
            "XIAOZHI__SERVER__IDLE_TIMEOUT_S": "3600",
            **self.spec.edge_env,
        }
        edge.process = spawn_edge(f"fleet-{edge.name}", env, timeout=180, log_dir=self.log_dir)
        edge.killed_at = None

    def _spawn(self, name: str, args: list[str], ready: str, env: dict[str, str] | None = None) -> Proc:
        proc = spawn(name, args, ready, timeout_s=120, env=env, log_dir=self.log_dir)
        self.procs.append(proc)
        return proc

    def wait_healthy(self, count: int, timeout_s: float) -> list[str]:
        """Until provisioning counts ``count`` healthy edges (their heartbeats arrived)."""
        deadline = time.monotonic() + timeout_s
        body: dict = {}
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.provision_url}/ready", timeout=5)
                body = r.json()
                if len(body.get("healthy_edges") or []) >= count:
                    return list(body["healthy_edges"])
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"provisioning saw {body.get('healthy_edges')} healthy, wanted {count}")

    def kill_edge(self, name: str) -> None:
        """The edge machine dies: its edge process and its leaf, SIGKILL, no goodbye."""
        edge = self.edges[name]
        assert edge.process is not None
        os.kill(edge.process.pid, signal.SIGKILL)
        edge.process.proc.wait()
        if edge.leaf.server is not None:
            edge.leaf.server.stop(kill=True)
        edge.killed_at = time.monotonic()
        log.warning("killed %s (edge pid %d and its leaf)", name, edge.process.pid)

    def stop(self) -> None:
        for edge in self.edges.values():
            if edge.process is not None and edge.process.proc.poll() is None:
                stop_edge(edge.process)
            elif edge.process is not None and edge.process.temp_cache is not None:
                stop_edge(edge.process)  # already dead: removes its temporary cache
        for proc in reversed(self.procs):
            proc.stop()
        for edge in self.edges.values():
            edge.leaf.stop()
        self.hub.stop()

    # -- lookups ----------------------------------------------------------------------------------
    def edge_by_port(self) -> dict[int, str]:
        return {e.ws_port: name for name, e in self.edges.items() if e.process is not None}

    def pids(self) -> dict[str, int]:
        """Every process of the fleet (for CPU and memory sampling)."""
        out = {
            f"edge:{n}": e.process.pid
            for n, e in self.edges.items()
            if e.process is not None and e.process.proc.poll() is None
        }
        for n, e in self.edges.items():
            if e.leaf.server is not None and e.leaf.server.proc.poll() is None:
                out[f"leaf:{n}"] = e.leaf.server.proc.pid
        if self.hub.server is not None:
            out["hub"] = self.hub.server.proc.pid
        for p in self.procs:
            if p.proc.poll() is None:
                out[p.log_path.stem.rsplit("-", 1)[0]] = p.proc.pid
        return out
