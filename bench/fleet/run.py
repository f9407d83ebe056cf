"""One fleet run: boot every device, hold, talk, kill an edge, watch its devices come back.

Phases, in seconds from the start: devices boot spread over ``boot_s`` (a site's power coming back
is a burst, not a trickle); the balance is read once every device is connected; ``kill_at_s``
after the start one edge dies (process and leaf, SIGKILL); the run ends ``duration_s`` after the
start. Edge-side figures (turns, escalations) come from each edge's own /metrics, read at the
start of the window and again at its end (for the killed edge: just before it dies).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import psutil

from bench.fleet.devices import DeviceLog, FleetState, device_id, run_fleet_device
from bench.fleet.topology import FleetTopology
from bench.loadgen.bank import build_bank
from bench.loadgen.device import LoadState
from bench.loadgen.mix import Mix, MixSampler, default_mix
from shared.metrics import sample_sum

log = logging.getLogger("bench.fleet")

__all__ = ["RunSpec", "run_fleet"]


@dataclass
class RunSpec:
    devices: int = 1000
    talkers: float = 0.1  # share of devices that take turns; the others hold idle sessions
    rate_per_min: float = 4.0  # turns per talking device
    boot_s: float = 30.0
    duration_s: float = 150.0
    kill_at_s: float | None = 90.0  # None: no edge is killed
    kill_edge: str = ""  # "": the edge holding the most devices
    balance_tolerance: float = 0.1  # (max - min) / mean of devices per edge
    seed: int = 7


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))], 1)


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": _pct(values, 0.5),
        "p95": _pct(values, 0.95),
        "max": round(max(values), 1) if values else None,
    }


@dataclass
class _EdgeCounters:
    answered: float = 0.0  # turns that reached first audio (the latency histogram's count)
    turns: float = 0.0  # turns finished (their reply played out), any outcome
    ok_turns: float = 0.0
    escalations: float = 0.0
    cpu_s: float = 0.0


async def _counters(http: httpx.AsyncClient, url: str, pid: int) -> _EdgeCounters | None:
    try:
        text = (await http.get(f"{url}/metrics", timeout=10)).text
    except httpx.HTTPError:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
        cpu = times.user + times.system
    except psutil.Error:
        cpu = 0.0
    return _EdgeCounters(
        answered=sample_sum(text, "xiaozhi_turn_latency_seconds_count"),
        turns=sample_sum(text, "xiaozhi_turns_total"),
        ok_turns=sample_sum(text, "xiaozhi_turns_total", outcome="ok"),
        escalations=sample_sum(text, "xiaozhi_escalations_total", kind="llm"),
        cpu_s=cpu,
    )


def _balance(counts: dict[str, int], tolerance: float) -> dict[str, Any]:
    values = list(counts.values())
    if not values:
        return {"per_edge": {}, "within_tolerance": False}
    mean = statistics.fmean(values)
    spread = (max(values) - min(values)) / mean if mean else 0.0
    return {
        "per_edge": dict(sorted(counts.items())),
        "mean": round(mean, 1),
        "min": min(values),
        "max": max(values),
        "spread": round(spread, 3),
        "tolerance": tolerance,
        "within_tolerance": spread <= tolerance,
    }


async def run_fleet(topo: FleetTopology, spec: RunSpec, mix: Mix | None = None) -> dict[str, Any]:
    """Drive ``spec.devices`` devices against a started topology; returns the report."""
    mix = mix or default_mix()
    rng = random.Random(spec.seed)
    n_talkers = round(spec.devices * spec.talkers)
    talkers = set(rng.sample(range(spec.devices), n_talkers))
    bank = await asyncio.to_thread(build_bank, mix, False) if n_talkers else {}
    loop = asyncio.get_running_loop()
    cpu0, own0 = psutil.cpu_times(), psutil.Process().cpu_times()
    t0 = loop.time()
    load = LoadState(t0=t0, deadline=t0 + spec.duration_s)
    state = FleetState(load, topo.provision_url, topo.edge_by_port())
    state.devices = [DeviceLog(i, device_id(i), i in talkers) for i in range(spec.devices)]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    timeline: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=15, limits=limits) as http:
        edges = {n: e for n, e in topo.edges.items() if e.process is not None}
        before = {n: await _counters(http, e.process.http, e.process.pid) for n, e in edges.items()}  # type: ignore[union-attr]
        tasks = [
            asyncio.create_task(
                run_fleet_device(
                    dev,
                    state,
                    http,
                    spec.boot_s * i / max(1, spec.devices),
                    bank if dev.talker else None,
                    MixSampler(mix, random.Random(spec.seed * 7919 + i)) if dev.talker else None,
                    spec.rate_per_min,
                )
            )
            for i, dev in enumerate(state.devices)
        ]
        sampler = asyncio.create_task(_sample(state, timeline))
        steady = await _wait_all_connected(state, spec, topo)
        kill: dict[str, Any] | None = None
        after: dict[str, _EdgeCounters | None] = {}
        if spec.kill_at_s is not None:
            await asyncio.sleep(max(0.0, t0 + spec.kill_at_s - loop.time()))
            victim = spec.kill_edge or max(state.connected, key=lambda n: (state.connected[n], n))
            e = topo.edges[victim]
            assert e.process is not None
            after[victim] = await _counters(http, e.process.http, e.process.pid)
            kill = await _kill_and_watch(topo, state, victim, spec)
        await asyncio.sleep(max(0.0, load.deadline - loop.time()))
        for n, e in edges.items():
            if n not in after and e.process is not None and e.process.proc.poll() is None:
                after[n] = await _counters(http, e.process.http, e.process.pid)
        worker_text = ""
        try:
            worker_text = (await http.get(f"{topo.worker_http}/metrics", timeout=10)).text
        except httpx.HTTPError:
            pass
        await asyncio.gather(*tasks, return_exceptions=True)
        sampler.cancel()
    elapsed = loop.time() - t0
    cpu1, own1 = psutil.cpu_times(), psutil.Process().cpu_times()
    busy = (sum(cpu1) - cpu1.idle - cpu1.iowait) - (sum(cpu0) - cpu0.idle - cpu0.iowait)
    cpu = {
        "machine_busy_pct": round(100 * busy / max(1e-9, sum(cpu1) - sum(cpu0)), 1),
        "devices_process_cpu_s": round(own1.user + own1.system - own0.user - own0.system, 1),
    }
    report = _report(topo, spec, state, steady, kill, before, after, worker_text, timeline, elapsed, n_talkers)
    report["cpu"] = cpu
    return report


async def _sample(state: FleetState, timeline: list[dict[str, Any]]) -> None:
    while True:
        timeline.append({"t": round(state.now(), 1), **{k: v for k, v in sorted(state.connected.items()) if v}})
        await asyncio.sleep(1.0)


async def _wait_all_connected(state: FleetState, spec: RunSpec, topo: FleetTopology) -> dict[str, Any]:
    """Until every device holds a session (or the kill is due): the balance provisioning achieved."""
    loop = asyncio.get_running_loop()
    limit = state.load.t0 + (spec.kill_at_s if spec.kill_at_s is not None else spec.duration_s)
    # Polling: the count belongs to a thousand device tasks, none of which knows it is the last.
    while loop.time() < limit and sum(state.connected.values()) < spec.devices:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    all_connected_s = state.now() if sum(state.connected.values()) >= spec.devices else None
    # The edges' own count of sessions, to check the devices' view against.
    sessions: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for name, e in topo.edges.items():
            if e.process is not None and e.process.proc.poll() is None:
                try:
                    sessions[name] = int((await http.get(f"{e.process.http}/stats")).json()["sessions"])
                except (httpx.HTTPError, ValueError, KeyError):
                    sessions[name] = -1
    connected = {n: state.connected[n] for n in topo.edges}
    return {
        "all_connected_s": round(all_connected_s, 1) if all_connected_s is not None else None,
        "connected": sum(connected.values()),
        "edge_sessions": sessions,
        "balance": _balance(connected, spec.balance_tolerance),
    }


async def _kill_and_watch(topo: FleetTopology, state: FleetState, victim: str, spec: RunSpec) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    on_victim = [d for d in state.devices if d.edge == victim]
    killed_t = state.now()
    await asyncio.to_thread(topo.kill_edge, victim)
    # Watch until every device that was on it is connected elsewhere, or the run ends.
    while loop.time() < state.load.deadline:
        if all(any(t >= killed_t for t, _, _ in d.recovered) for d in on_victim):
            break
        await asyncio.sleep(0.2)
    recovered = [
        next(r for r in d.recovered if r[0] >= killed_t)
        for d in on_victim
        if any(r[0] >= killed_t for r in d.recovered)
    ]
    ms = [r[1] for r in recovered]
    alive = {n: state.connected[n] for n in topo.edges if n != victim}
    return {
        "edge": victim,
        "at_s": round(killed_t, 1),
        "devices_on_it": len(on_victim),
        "reassigned": sum(1 for r in recovered if r[2] != victim),
        "not_recovered": len(on_victim) - len(recovered),
        "recovery_ms": _summary(ms),
        "all_recovered_after_s": round(max(ms) / 1000.0, 1) if ms and len(ms) == len(on_victim) else None,
        "went_to": dict(sorted(Counter(r[2] for r in recovered).items())),
        "balance_after": _balance(alive, spec.balance_tolerance),
    }


def _report(
    topo: FleetTopology,
    spec: RunSpec,
    state: FleetState,
    steady: dict[str, Any],
    kill: dict[str, Any] | None,
    before: dict[str, _EdgeCounters | None],
    after: dict[str, _EdgeCounters | None],
    worker_text: str,
    timeline: list[dict[str, Any]],
    elapsed: float,
    n_talkers: int,
) -> dict[str, Any]:
    from edge_node.engines.timing import load_profile

    window = spec.duration_s
    per_edge: dict[str, Any] = {}
    for name in topo.edges:
        b, a = before.get(name), after.get(name)
        answered = (a.answered - b.answered) if a and b else None
        edge_window = window if kill is None or kill["edge"] != name else kill["at_s"]
        per_edge[name] = {
            "connected_at_balance": steady["balance"]["per_edge"].get(name, 0),
            "talkers": sum(1 for d in state.devices if d.talker and d.edges[:1] == [name]),
            "edge_sessions_at_balance": steady["edge_sessions"].get(name),
            "connected_at_end": state.connected[name],
            "answered": answered,
            "turns_per_s": round(answered / edge_window, 3) if answered is not None and edge_window else None,
            "finished": (a.turns - b.turns) if a and b else None,
            "finished_ok": (a.ok_turns - b.ok_turns) if a and b else None,
            "escalations": (a.escalations - b.escalations) if a and b else None,
            "cpu_s": round(a.cpu_s - b.cpu_s, 1) if a and b else None,
            "killed": kill is not None and kill["edge"] == name,
        }
    records = state.load.records
    ota = [ms for d in state.devices for ms in d.ota_ms[:1]]
    hello = [ms for d in state.devices for ms in d.hello_ms[:1]]
    profile = load_profile(topo.spec.profile)
    escalated = sum(e["escalations"] or 0 for e in per_edge.values())
    return {
        "what": "fleet run: real hub, leaves, edges, provisioning and cloud worker; timing engines for the models",
        "engines": {
            "edge": f"TIMING ENGINES (edge_node/engines/timing.py) from {profile.source}",
            "cloud_llm": f"timing stand-in for vLLM (bench/fleet/timing_openai.py): first token "
            f"{topo.spec.cloud_first_token_s} s, {topo.spec.cloud_per_token_s} s/token (assumed)",
        },
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
        "topology": {
            "heartbeat_s": topo.spec.heartbeat_s,
            "stale_after_s": topo.spec.stale_after_s,
            "max_sessions": topo.spec.max_sessions,
            "routing": str(topo.spec.routing_file),
        },
        "spec": asdict(spec),
        "edges": len(topo.edges),
        "devices": spec.devices,
        "talkers": n_talkers,
        "elapsed_s": round(elapsed, 1),
        "boot": {
            "ota_ms": _summary(ota),
            "hello_ms": _summary(hello),
            "ota_failures": sum(d.ota_failures for d in state.devices),
            "connect_failures": sum(d.connect_failures for d in state.devices),
            "never_connected": sum(1 for d in state.devices if d.connected_at is None),
            "all_connected_s": steady["all_connected_s"],
        },
        "balance": steady["balance"],
        "edge_sessions_match_devices": all(
            steady["edge_sessions"].get(n) == c for n, c in steady["balance"]["per_edge"].items()
        ),
        "per_edge": per_edge,
        "turns": {
            "device_side": len(records),
            "answered": sum(1 for r in records if not r.error and not r.busy),
            "busy": sum(1 for r in records if r.busy),
            "errors": Counter(r.error.split(":")[0] for r in records if r.error),
            "first_audio_ms": _summary([r.first_audio_ms for r in records if r.first_audio_ms is not None]),
            "protocol_errors": state.load.protocol_errors,
            "turns_per_s": round(sum(e["answered"] or 0 for e in per_edge.values()) / window, 2),
        },
        "escalations": {
            "edges_sent": escalated,
            "worker_served": sample_sum(worker_text, "xiaozhi_worker_requests_total", result="ok")
            if worker_text
            else None,
        },
        "kill": kill,
        "timeline": timeline,
        "devices_log": [d.to_json() for d in state.devices if d.lost or d.ota_failures or d.connect_failures],
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
