"""``xiaozhi-validate``: does a deployment really work, part by part?

A field tech after an install, or an operator after a change, points it at the deployment and
gets a readable report: each edge answers OTA the way the firmware needs, accepts a WebSocket
hello, answers a probe turn within the latency budget, has its models loaded, exports metrics
that move, and reaches the hub over its leaf link; the hub answers; cloud workers of each role
are registered and ready; Prometheus scrapes every target. Every check is a real request, the
way a device or the cloud would make it. Exit status: 0 all passed, 1 something failed, 2 the
deployment description itself is wrong.

    xiaozhi-validate --edge http://10.0.0.5:8003 --nats nats://hub:4222 --credential cloud.json \\
        --worker http://llm-0:9400 --expect-workers llm=1,asr=1 --prometheus http://prom:9090
    xiaozhi-validate --config site.yaml --json --out report.txt

``--config FILE`` is a YAML file with the same fields as the flags (``edges``, ``nats``,
``timeout_s``...); flags override it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import cli

__all__ = ["Check", "Deployment", "main", "validate"]

PROBE_DEVICE = "02:00:00:00:7a:01"  # a locally administered MAC: never a real device's
EDGE_METRICS = ("xiaozhi_build_info", "xiaozhi_sessions_active", "xiaozhi_turns_total", "xiaozhi_turn_latency_seconds")
WORKER_METRICS = ("xiaozhi_build_info", "xiaozhi_worker_capacity", "xiaozhi_worker_requests_total")
STAGES = ("vad", "asr", "llm", "tts")


class Deployment(BaseModel):
    """What to check. From ``--config FILE`` (YAML), with the command-line flags on top."""

    model_config = ConfigDict(extra="forbid")

    edges: list[str] = Field(default_factory=list, description="edge HTTP base URLs (OTA, /ready, /metrics)")
    ota: str = Field("", description="the fleet's OTA URL (provisioning); empty: only each edge's own")
    nats: str = Field("", description="hub URL; empty: the cloud tier is not checked")
    credential: str = Field("", description="credential file from `xiaozhi-cloud nats-config` (cloud.json)")
    nats_ca: str = Field(
        "", description="PEM CA of the hub's client-port certificate (`nats-config --client-tls`); empty: plain"
    )
    workers: list[str] = Field(default_factory=list, description="cloud worker HTTP base URLs (:9400)")
    expect_workers: dict[str, int] = Field(default_factory=lambda: {"llm": 1})
    prometheus: str = ""
    token_keys: str = Field(
        "", description="the device-token key ring directory: the probe device gets a token of its own"
    )
    ca_file: str = Field(
        "", description="PEM CA bundle that signed the fleet's https/wss certificates; empty: the system's CAs"
    )
    probe_text: str = "What time is it?"
    max_first_audio_s: float = Field(3.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    heartbeat_wait_s: float = Field(6.0, gt=0, description="how long to listen for edge heartbeats at the hub")


@dataclass
class Check:
    target: str  # "edge edge-1 (http://...)", "nats nats://...", "worker http://...", "prometheus ..."
    name: str
    status: str  # pass | fail | skip
    detail: str
    ms: float | None = None


@dataclass
class Report:
    started: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        failed = [c for c in self.checks if c.status == "fail"]
        return {
            "started": self.started,
            "ok": self.ok,
            "failed": len(failed),
            "checks": [asdict(c) for c in self.checks],
        }

    def to_text(self) -> str:
        lines = [f"xiaozhi-validate {self.started}"]
        target = None
        for c in self.checks:
            if c.target != target:
                target = c.target
                lines.append(target)
            ms = f"{c.ms:7.0f} ms" if c.ms is not None else " " * 10
            lines.append(f"  {c.status.upper():4}  {c.name:<16} {ms}  {c.detail}")
        failed = sum(c.status == "fail" for c in self.checks)
        verdict = "PASS" if failed == 0 else f"FAIL ({failed} of {len(self.checks)} checks failed)"
        lines.append(f"RESULT: {verdict}")
        return "\n".join(lines) + "\n"


class _Recorder:
    """Runs one check: a raised exception is a failure with its message, never a crash."""

    def __init__(self, report: Report, target: str) -> None:
        self.report, self.target = report, target

    def add(self, name: str, status: str, detail: str, ms: float | None = None) -> None:
        self.report.checks.append(Check(self.target, name, status, detail, ms))

    async def run(self, name: str, fn: Callable[[], Awaitable[tuple[str, str] | str]]) -> bool:
        started = time.perf_counter()
        try:
            out = await fn()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a line of the report
            self.add(name, "fail", _describe(exc), (time.perf_counter() - started) * 1000)
            return False
        status, detail = out if isinstance(out, tuple) else ("pass", out)
        self.add(name, status, detail, (time.perf_counter() - started) * 1000)
        return status != "fail"


class CheckFailed(Exception):
    """A check ran and the deployment gave the wrong answer; the message says what and why."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CheckFailed):
        return str(exc)
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}"
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError | TimeoutError):
        return f"no answer in time ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def _samples(text: str) -> dict[str, float]:
    """Sample name -> sum over its label sets (enough for "is it there, did it move")."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def _missing(text: str, wanted: tuple[str, ...]) -> list[str]:
    """The metrics of ``wanted`` that the exposition does not declare. A labelled metric has no
    sample until its first event, so the declared families count, not the samples."""
    declared = set()
    for family in text_string_to_metric_families(text):
        declared.add(family.name)
        declared.update(sample.name for sample in family.samples)
    return [m for m in wanted if m not in declared and m.removesuffix("_total") not in declared]


# -- edges ------------------------------------------------------------------------------------
async def _check_edge(dep: Deployment, base: str, http: httpx.AsyncClient, report: Report) -> str | None:
    """Checks one edge; returns its node id (for the heartbeat check) when it answered /health."""
    base = base.rstrip("/")
    rec = _Recorder(report, f"edge {base}")
    node: dict[str, Any] = {}

    async def health() -> str:
        r = await http.get(f"{base}/health")
        if r.status_code != 200:
            raise CheckFailed(f"/health answered {r.status_code}: {r.text[:200]}")
        node.update(r.json())
        rec.target = f"edge {node.get('node_id', '?')} ({base})"
        return f"{node.get('sessions', '?')} sessions, up {node.get('uptime_s', '?')} s"

    if not await rec.run("health", health):
        return None
    ready: dict[str, Any] = {}

    async def readiness() -> str:
        r = await http.get(f"{base}/ready")
        if r.status_code != 200:
            raise CheckFailed(f"not ready ({r.status_code}): {r.text[:200]}")
        ready.update(r.json())
        return "listening for devices"

    async def models() -> str:
        loaded = ready.get("models") or {}
        missing = [s for s in STAGES if not loaded.get(s)]
        if missing:
            raise CheckFailed(f"no model loaded for {', '.join(missing)}")
        return " ".join(f"{s}={loaded[s]}" for s in STAGES)

    await rec.run("ready", readiness)
    await rec.run("models", models)
    metrics_before: dict[str, float] = {}

    async def scrape() -> str:
        r = await http.get(f"{base}/metrics")
        if r.status_code != 200:
            raise CheckFailed(f"/metrics answered {r.status_code}")
        metrics_before.update(_samples(r.text))
        missing = _missing(r.text, EDGE_METRICS)
        if missing:
            raise CheckFailed(f"/metrics lacks {', '.join(missing)}")
        return f"{len(metrics_before)} series"

    await rec.run("metrics", scrape)
    ws: dict[str, str] = {}

    async def ota() -> str:
        ws.update(await _ota(http, f"{base}/xiaozhi/ota/"))
        return f"websocket {ws['url']}"

    await rec.run("ota", ota)
    if dep.ota:

        async def fleet_ota() -> str:
            answer = await _ota(http, dep.ota)
            return f"fleet OTA sends the probe device to {answer['url']}"

        await rec.run("fleet ota", fleet_ota)
    if not ws:
        rec.add("hello", "skip", "no WebSocket URL (OTA failed)")
        rec.add("probe turn", "skip", "no WebSocket URL (OTA failed)")
    else:
        await _check_session(dep, ws, rec)

    async def metrics_move() -> str:
        if not metrics_before:
            raise CheckFailed("no first scrape to compare with")
        after = _samples((await http.get(f"{base}/metrics")).text)
        moved = after.get("xiaozhi_turns_total", 0.0) - metrics_before.get("xiaozhi_turns_total", 0.0)
        if moved < 1:
            raise CheckFailed("xiaozhi_turns_total did not count the probe turn")
        return f"xiaozhi_turns_total +{moved:.0f} after the probe"

    if any(c.name == "probe turn" and c.status == "pass" and c.target == rec.target for c in report.checks):
        await rec.run("metrics live", metrics_move)

    async def cloud_link() -> tuple[str, str]:
        link = ready.get("cloud_link")
        if link is None:
            return "skip", "no cloud link configured on this edge"
        if not link:
            raise CheckFailed("the edge is not connected to its NATS leaf server: cloud routes fall back to local")
        return "pass", "connected to its NATS leaf server"

    if ready:
        await rec.run("cloud link", cloud_link)
    return str(node.get("node_id") or "") or None


async def _ota(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """POST the way the firmware does (docs/protocol.md §1.2) and check the answer keeps it on WebSocket."""
    headers = {
        "Device-Id": PROBE_DEVICE,
        "Client-Id": str(uuid.uuid4()),
        "User-Agent": "xiaozhi-validate/1",
        "Accept-Language": "en-US",
        "Content-Type": "application/json",
    }
    body = {
        "version": 2,
        "mac_address": PROBE_DEVICE,
        "uuid": headers["Client-Id"],
        "application": {"name": "xiaozhi", "version": "1.6.0"},
        "board": {"type": "xiaozhi-validate"},
    }
    r = await http.post(url, headers=headers, json=body)
    if r.status_code != 200:
        raise CheckFailed(f"{url} answered {r.status_code}: {r.text[:200]}")
    answer = r.json()
    if "mqtt" in answer:
        raise CheckFailed("the OTA answer has an mqtt section: the firmware would switch to MQTT")
    socket = answer.get("websocket") or {}
    if not isinstance(socket.get("url"), str) or not socket["url"].startswith(("ws://", "wss://")):
        raise CheckFailed(f"the OTA answer has no websocket.url: {json.dumps(answer)[:200]}")
    if not isinstance((answer.get("server_time") or {}).get("timestamp"), int):
        raise CheckFailed("the OTA answer has no server_time.timestamp")
    return {"url": socket["url"], "token": str(socket.get("token") or "")}


async def _check_session(dep: Deployment, ws: dict[str, str], rec: _Recorder) -> None:
    from shared import tokens
    from shared.client.device import DeviceClient

    token = ws["token"]
    if dep.token_keys:  # edges that check device tokens: the admin's key ring signs one for the probe device
        ring = await asyncio.to_thread(tokens.KeyRing.load, Path(dep.token_keys))
        token = ring.issue(PROBE_DEVICE, 600)
    client = DeviceClient(
        ws["url"], device_id=PROBE_DEVICE, token=token, hello_timeout_s=dep.timeout_s, ssl_context=_tls(dep)
    )

    async def hello() -> str:
        await asyncio.wait_for(client.connect(), dep.timeout_s)
        return f"session {client.session_id}"

    if not await rec.run("hello", hello):
        rec.add("probe turn", "skip", "no session")
        return

    async def probe() -> str:
        await client.listen_start("auto")
        client.turn_reset()
        await client.listen_detect(dep.probe_text)
        turn = await client.wait_turn_end(max(dep.timeout_s, dep.max_first_audio_s + 5))
        if not turn.audio_packets or turn.first_audio_ms is None:
            raise CheckFailed(f"{dep.probe_text!r} got no reply audio")
        took = turn.first_audio_ms / 1000
        said = " ".join(turn.sentences)[:60]
        if took > dep.max_first_audio_s:
            budget = dep.max_first_audio_s
            raise CheckFailed(f"first audio after {took:.2f} s, over the {budget:.1f} s budget ({said!r})")
        return f"first audio {took * 1000:.0f} ms, {turn.audio_packets} packets: {said!r}"

    try:
        await rec.run("probe turn", probe)
    finally:
        await client.close()


# -- the hub and the cloud workers ------------------------------------------------------------
async def _check_nats(dep: Deployment, edge_ids: list[str], report: Report) -> None:
    from shared.nats import subjects as s
    from shared.nats.configs import load_credential
    from shared.nats.connect import dial, nats_tls

    rec = _Recorder(report, f"nats {dep.nats}")
    user = password = None
    if dep.credential:
        cred = await asyncio.to_thread(load_credential, Path(dep.credential))
        user, password = cred.user, cred.password
    nc: Any = None

    async def connect() -> str:
        nonlocal nc

        async def quiet(exc: Exception) -> None:  # the failure is reported as a check, not a traceback
            errors.append(exc)

        errors: list[Exception] = []
        # nats-py keeps retrying a refused first connect; the deadline makes that a failed check.
        connecting = dial(
            nats_tls(dep.nats, dep.nats_ca),
            servers=[dep.nats],
            name="xiaozhi-validate",
            connect_timeout=dep.timeout_s / 2,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
            user=user,
            password=password,
        )
        try:
            nc = await asyncio.wait_for(connecting, dep.timeout_s)
        except (TimeoutError, OSError) as exc:
            cause = errors[-1] if errors else exc
            raise CheckFailed(f"cannot connect to {dep.nats}: {_describe(cause)}") from exc
        return f"server {nc.connected_server_version} ({nc._server_info.get('server_name', '?')})"

    if not await rec.run("connect", connect):
        for role, want in dep.expect_workers.items():
            rec.add(f"workers {role}", "skip" if want == 0 else "fail", "hub unreachable: cannot list workers")
        return
    try:
        for role, want in sorted(dep.expect_workers.items()):
            await rec.run(f"workers {role}", lambda role=role, want=want: _workers(nc, role, want))
        if edge_ids:
            await rec.run("leaf links", lambda: _heartbeats(nc, s.HEARTBEAT_PREFIX, edge_ids, dep.heartbeat_wait_s))

        async def routing() -> tuple[str, str]:
            js = nc.jetstream(domain=s.JS_DOMAIN, timeout=dep.timeout_s / 2)
            try:
                kv = await js.key_value(s.ROUTING_BUCKET)
                entry = await kv.get(s.ROUTING_KEY)
            except Exception as exc:  # noqa: BLE001 - no bucket or key: edges use their file
                return "skip", f"no routing config in KV ({type(exc).__name__}): edges use their routing.yaml"
            return "pass", f"routing config revision {entry.revision} published"

        await rec.run("routing kv", routing)
    finally:
        await nc.close()


async def _workers(nc: Any, role: str, want: int) -> str:
    """``$SRV.INFO.xiaozhi-<role>``: every registered worker answers, with its endpoints' metadata."""
    inbox = nc.new_inbox()
    answers: list[dict[str, Any]] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(f"$SRV.INFO.xiaozhi-{role}", b"", reply=inbox)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=max(0.05, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - nats' TimeoutError: no more answers
                break
            if not msg.data:  # the server's "no responders" status (503): nobody serves the subject
                continue
            answers.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    names = []
    for info in answers:
        meta = info.get("metadata") or {}
        endpoints = info.get("endpoints") or []
        model = next((e["metadata"].get("model") for e in endpoints if e.get("metadata")), "?")
        names.append(f"{meta.get('worker', info.get('id', '?'))}: {model}")
    if len(answers) < want:
        raise CheckFailed(
            f"{len(answers)} xiaozhi-{role} worker(s) answered $SRV.INFO, expected at least {want}"
            + (f" ({', '.join(names)})" if names else "")
        )
    if not answers:
        return "none running (none expected)"
    return f"{len(answers)} running: {', '.join(sorted(names))}"


async def _heartbeats(nc: Any, prefix: str, edge_ids: list[str], wait_s: float) -> str:
    """Each edge's heartbeat crossing its leaf link to the hub: the link works both ways' first half."""
    heard: dict[str, dict[str, Any]] = {}
    done = asyncio.Event()

    async def on_beat(msg: Any) -> None:
        edge = msg.subject[len(prefix) + 1 :]
        try:
            heard[edge] = json.loads(msg.data)
        except ValueError:
            heard[edge] = {}
        if all(e in heard for e in edge_ids):
            done.set()

    sub = await nc.subscribe(f"{prefix}.>", cb=on_beat)
    try:
        await asyncio.wait_for(done.wait(), wait_s)
    except TimeoutError:
        pass
    finally:
        await sub.unsubscribe()
    missing = [e for e in edge_ids if e not in heard]
    if missing:
        raise CheckFailed(f"no heartbeat from {', '.join(missing)} at the hub in {wait_s:.0f} s: leaf link down?")
    return ", ".join(f"{e} ({heard[e].get('sessions', '?')} sessions)" for e in edge_ids)


async def _check_worker(base: str, http: httpx.AsyncClient, report: Report) -> None:
    base = base.rstrip("/")
    rec = _Recorder(report, f"worker {base}")

    async def ready() -> str:
        r = await http.get(f"{base}/ready")
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code != 200:
            raise CheckFailed(f"not ready ({r.status_code}): {json.dumps(body) if body else r.text[:200]}")
        return f"{body.get('worker')} ({body.get('role')}) connected and serving"

    async def scrape() -> str:
        r = await http.get(f"{base}/metrics")
        if r.status_code != 200:
            raise CheckFailed(f"/metrics answered {r.status_code}")
        samples = _samples(r.text)
        missing = _missing(r.text, WORKER_METRICS)
        if missing:
            raise CheckFailed(f"/metrics lacks {', '.join(missing)}")
        return f"{len(samples)} series, {samples.get('xiaozhi_worker_inflight', 0):.0f} in flight"

    await rec.run("ready", ready)
    await rec.run("metrics", scrape)


async def _check_prometheus(base: str, http: httpx.AsyncClient, report: Report) -> None:
    rec = _Recorder(report, f"prometheus {base}")

    async def targets() -> str:
        r = await http.get(f"{base.rstrip('/')}/api/v1/targets", params={"state": "active"})
        if r.status_code != 200:
            raise CheckFailed(f"/api/v1/targets answered {r.status_code}")
        active = [t for t in r.json()["data"]["activeTargets"] if str(t["labels"].get("job", "")).startswith("xiaozhi")]
        if not active:
            raise CheckFailed("no xiaozhi-* scrape job has a target")
        down = [
            f"{t['labels'].get('job')} {t['scrapeUrl']}: {t.get('lastError') or t['health']}"
            for t in active
            if t["health"] != "up"
        ]
        if down:
            raise CheckFailed(f"{len(down)} of {len(active)} targets not scraped: " + "; ".join(down))
        return f"{len(active)} targets up: " + ", ".join(sorted({t["labels"]["job"] for t in active}))

    await rec.run("scrapes", targets)


def _tls(dep: Deployment) -> ssl.SSLContext | None:
    """How https/wss peers are verified: against ``ca_file`` (a private fleet CA), else the system's CAs."""
    from shared.tls import client_context

    return client_context(dep.ca_file) if dep.ca_file else None


async def validate(dep: Deployment) -> Report:
    report = Report(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    async with httpx.AsyncClient(timeout=dep.timeout_s, verify=_tls(dep) or True) as http:
        edge_ids = []
        for base in dep.edges:
            node = await _check_edge(dep, base, http, report)
            if node:
                edge_ids.append(node)
        if dep.nats:
            await _check_nats(dep, edge_ids, report)
        for base in dep.workers:
            await _check_worker(base, http, report)
        if dep.prometheus:
            await _check_prometheus(dep.prometheus, http, report)
    if not report.checks:
        nothing = "nothing to check: give --edge, --nats or --worker"
        report.checks.append(Check("deployment", "targets", "fail", nothing))
    return report


def _parser() -> argparse.ArgumentParser:
    p = cli.parser("xiaozhi-validate", __doc__)
    p.add_argument("--config", metavar="FILE", help="YAML file with the fields below (flags override it)")
    cli.hidden_alias(p, "--deployment", "config")
    p.add_argument("--edge", action="append", default=[], help="edge HTTP base URL, e.g. http://10.0.0.5:8003 (repeat)")
    p.add_argument("--ota", help="the fleet's OTA URL (provisioning service)")
    p.add_argument("--nats", help="hub URL, e.g. nats://hub:4222")
    p.add_argument("--credential", help="NATS credential file (cloud.json from xiaozhi-cloud nats-config)")
    p.add_argument("--nats-ca", help="PEM CA of the hub's client port (tls/hub/ca.pem from nats-config --client-tls)")
    p.add_argument("--worker", action="append", default=[], help="cloud worker HTTP base URL, e.g. http://w:9400")
    p.add_argument("--expect-workers", help="minimum workers per role, e.g. llm=2,asr=1 (default llm=1)")
    p.add_argument("--prometheus", help="Prometheus base URL: every xiaozhi-* target must be up")
    p.add_argument("--token-keys", help="the device-token key ring directory, for edges that check device tokens")
    p.add_argument("--ca-file", help="PEM CA that signed the edges' / provisioning's TLS certificates (https, wss)")
    p.add_argument("--probe-text", help="what the probe device says (default: 'What time is it?')")
    p.add_argument("--max-first-audio-s", type=float, help="seconds from end of speech to first audio (default 3)")
    p.add_argument("--timeout", type=float, dest="timeout_s", help="seconds per request (default 10)")
    cli.hidden_alias(p, "--timeout-s", "timeout_s", type=float)
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--out", help="also write the readable report to this file")
    cli.hidden_alias(p, "--output-text", "out")
    return p


def _deployment(args: argparse.Namespace) -> Deployment:
    data: dict[str, Any] = {}
    if args.config:
        loaded = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping of settings")
        data.update(loaded)
    if args.edge:
        data["edges"] = args.edge
    if args.worker:
        data["workers"] = args.worker
    for key in (
        "ota",
        "nats",
        "credential",
        "nats_ca",
        "prometheus",
        "token_keys",
        "ca_file",
        "probe_text",
        "max_first_audio_s",
        "timeout_s",
    ):
        value = getattr(args, key)
        if value is not None:
            data[key] = value
    if args.expect_workers:
        pairs = [p.split("=", 1) for p in args.expect_workers.split(",") if p.strip()]
        if any(len(p) != 2 or not p[1].strip().isdigit() for p in pairs):
            raise ValueError(f"--expect-workers wants role=count pairs, not {args.expect_workers!r}")
        data["expect_workers"] = {k.strip(): int(v) for k, v in pairs}
    dep = Deployment.model_validate(data)
    _tls(dep)  # a missing or non-PEM CA file is the description's fault: exit 2 with its name
    if dep.nats:
        from shared.nats.connect import nats_tls

        nats_tls(dep.nats, dep.nats_ca)  # so is the hub's
    return dep


def _main(args: argparse.Namespace) -> int:
    try:
        dep = _deployment(args)
    except (OSError, ValueError, ValidationError, yaml.YAMLError) as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    report = asyncio.run(validate(dep))
    text = report.to_text()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(text, end="")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    return cli.run("xiaozhi-validate", lambda: _main(cli.parse(_parser(), argv)))


if __name__ == "__main__":
    raise SystemExit(main())
