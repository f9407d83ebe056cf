"""A small fleet run, all real processes: a NATS hub, three edges each with its own leaf
nats-server, the provisioning service and the cloud LLM worker; 150 simulated devices boot (OTA,
WebSocket with the token they got, hello), hold their sessions, a share of them talk, and one edge
is killed. The edges' models are timing engines (the report names them); everything else is the
code that runs in the field.

Pinned: every device is assigned and connected, provisioning's balance is within the tolerance
and agrees with the edges' own session counts, turns are answered (some escalated to the cloud
worker), and every device of the killed edge is reassigned to a live one at its next OTA.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fleet.cli import passed, render
from bench.fleet.run import RunSpec, run_fleet
from bench.fleet.topology import FleetSpec, FleetTopology
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.slow

DEVICES, EDGES = 150, 3
TOLERANCE = 0.1


async def test_small_fleet_assigns_balances_and_survives_a_killed_edge(tmp_path: Path) -> None:
    topo = FleetTopology(FleetSpec(edges=EDGES), tmp_path / "fleet", ARTIFACTS / "fleet")
    spec = RunSpec(
        devices=DEVICES,
        talkers=0.15,
        rate_per_min=4.0,
        boot_s=8.0,
        duration_s=40.0,
        kill_at_s=22.0,
        balance_tolerance=TOLERANCE,
    )
    try:
        topo.start()
        report = await run_fleet(topo, spec)
    finally:
        topo.stop()
    text = render(report)
    (ARTIFACTS / "fleet").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "fleet" / "report.txt").write_text(text + "\n")
    print("\n" + text)

    boot = report["boot"]
    assert boot["never_connected"] == 0 and boot["all_connected_s"] is not None, text
    assert boot["ota_ms"]["n"] == DEVICES and boot["hello_ms"]["n"] == DEVICES
    balance = report["balance"]
    assert sum(balance["per_edge"].values()) == DEVICES
    assert balance["within_tolerance"] and balance["spread"] <= TOLERANCE, balance
    assert report["edge_sessions_match_devices"], report["per_edge"]

    turns = report["turns"]
    assert turns["answered"] > 0 and turns["protocol_errors"] == 0, turns
    assert sum(e["answered"] or 0 for e in report["per_edge"].values()) > 0
    # deploy/routing.example.yaml escalates what the local model measurably gets wrong to the cloud worker.
    assert report["escalations"]["edges_sent"] > 0
    # The worker answered them (an escalation sent between the killed edge's last scrape and its death
    # is counted by the worker only: a small difference is allowed).
    assert abs(report["escalations"]["worker_served"] - report["escalations"]["edges_sent"]) <= 2, report["escalations"]

    kill = report["kill"]
    assert kill is not None and kill["devices_on_it"] > 0
    assert kill["reassigned"] == kill["devices_on_it"] and kill["not_recovered"] == 0, kill
    assert kill["edge"] not in kill["went_to"]
    # Every device is back on a live edge, and the live edges share them within the tolerance.
    assert sum(kill["balance_after"]["per_edge"].values()) == DEVICES
    assert kill["balance_after"]["within_tolerance"], kill["balance_after"]
    assert passed(report)
