"""``xiaozhi-validate`` against a deployment the test starts, all real: a NATS hub and an edge's
leaf server, a cloud LLM worker (in front of llama-cpp-python's OpenAI server), an edge node with
the bundled models, and Debian's Prometheus scraping the edge and the worker. Then parts are
stopped one by one and the validator must fail, naming the part."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.nats.server import free_port
from tests.cloud.deployment import Cloud, start_cloud
from tests.conftest import ARTIFACTS, ROOT, EdgeProcess, start_edge, stop_edge
from tests.processes import Proc, start_prometheus

pytestmark = pytest.mark.slow


@dataclass
class Site:
    cloud: Cloud
    edge: EdgeProcess
    prometheus: Proc
    prometheus_url: str
    work: Path

    def args(self) -> list[str]:
        return [
            "--edge",
            self.edge.http,
            "--nats",
            self.cloud.hub.url,
            "--credential",
            str(self.cloud.cred_path),
            "--worker",
            self._worker,
            "--expect-workers",
            "llm=1",
            "--prometheus",
            self.prometheus_url,
            "--max-first-audio-s",
            "10",
        ]

    @property
    def _worker(self) -> str:
        return self.cloud.llm_worker_http


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("site")
    cloud = start_cloud(work, ["edge-v"])
    edge = prometheus = None
    try:
        env = {
            "XIAOZHI__NODE_ID": "edge-v",
            "XIAOZHI__NATS__URL": cloud.leaves["edge-v"].url,
            "XIAOZHI__NATS__HEARTBEAT_S": "1",
            "XIAOZHI__LLM__WORKERS": "1",
        }
        edge = start_edge("validate-edge", env)
        port = free_port()
        worker = cloud.llm_worker_http.removeprefix("http://")
        prometheus = start_prometheus(
            work / "prometheus",
            {"xiaozhi-edge": [f"127.0.0.1:{edge.http_port}"], "xiaozhi-cloud-worker": [worker]},
            port,
        )
        s = Site(cloud, edge, prometheus, f"http://127.0.0.1:{port}", work)
        _wait_scraped(s.prometheus_url, want_up=2)
        yield s
    finally:
        if prometheus is not None:
            prometheus.stop()
        if edge is not None:
            stop_edge(edge)
        cloud.stop()


def _targets(url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]


def _wait_scraped(url: str, want_up: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(t["health"] == "up" for t in _targets(url)) == want_up:
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus targets: {json.dumps(_targets(url), indent=1)[:2000]}")


def _validate(site: Site, name: str) -> tuple[int, dict[str, Any], str]:
    """Run the real command line; returns (exit status, JSON report, text report)."""
    text_path = ARTIFACTS / f"validate-{name}.txt"
    ARTIFACTS.mkdir(exist_ok=True)
    args = [sys.executable, "-m", "ops.validate", *site.args(), "--json", "--out", str(text_path)]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout), text_path.read_text(encoding="utf-8")


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{c['target'].split()[0]}:{c['name']}": c for c in report["checks"]}


def test_validate_passes_against_a_working_deployment(site: Site) -> None:
    code, report, text = _validate(site, "pass")
    assert code == 0, text
    assert report["ok"] is True and report["failed"] == 0
    checks = _by_name(report)
    for key in (
        "edge:health",
        "edge:ready",
        "edge:models",
        "edge:metrics",
        "edge:ota",
        "edge:hello",
        "edge:probe turn",
        "edge:metrics live",
        "edge:cloud link",
        "nats:connect",
        "nats:workers llm",
        "nats:leaf links",
        "worker:ready",
        "worker:metrics",
        "prometheus:scrapes",
    ):
        assert checks[key]["status"] == "pass", (key, text)
    assert "llm-test-1" in checks["nats:workers llm"]["detail"]
    assert "edge-v" in checks["nats:leaf links"]["detail"]
    assert checks["edge:probe turn"]["ms"] is not None and "first audio" in checks["edge:probe turn"]["detail"]
    assert "edge edge-v (" in text and text.rstrip().endswith("RESULT: PASS")


def test_validate_fails_when_the_cloud_worker_is_stopped(site: Site) -> None:
    assert site.cloud.llm_worker is not None
    site.cloud.llm_worker.stop()
    _wait_scraped(site.prometheus_url, want_up=1)
    code, report, text = _validate(site, "worker-stopped")
    assert code == 1, text
    checks = _by_name(report)
    assert checks["nats:workers llm"]["status"] == "fail"
    assert "0 xiaozhi-llm worker(s) answered $SRV.INFO, expected at least 1" in checks["nats:workers llm"]["detail"]
    assert checks["worker:ready"]["status"] == "fail" and "cannot connect" in checks["worker:ready"]["detail"]
    assert checks["prometheus:scrapes"]["status"] == "fail"
    assert "xiaozhi-cloud-worker" in checks["prometheus:scrapes"]["detail"]
    # The edge itself still works: it answers locally.
    assert checks["edge:probe turn"]["status"] == "pass"
    assert "RESULT: FAIL" in text


def test_validate_fails_when_nats_is_stopped(site: Site) -> None:
    site.cloud.hub.stop()
    site.cloud.leaves["edge-v"].stop()
    code, report, text = _validate(site, "nats-stopped")
    assert code == 1, text
    checks = _by_name(report)
    assert checks["nats:connect"]["status"] == "fail"
    assert checks["nats:workers llm"]["detail"] == "hub unreachable: cannot list workers"
    assert checks["edge:cloud link"]["status"] == "fail"
    assert "not connected to its NATS leaf server" in checks["edge:cloud link"]["detail"]


def test_a_bad_deployment_description_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("edges: [http://127.0.0.1:1]\nexpect_worker: {llm: 1}\n")  # misspelt key
    proc = subprocess.run(
        [sys.executable, "-m", "ops.validate", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "expect_worker" in proc.stderr and "Extra inputs are not permitted" in proc.stderr
