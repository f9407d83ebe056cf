"""Provisioning's pure parts: edge assignment, firmware offers (device tokens: test_tokens.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioning.assign import EdgeDirectory, NoEdgeAvailable
from provisioning.firmware import FirmwareError, FirmwareStore, parse_version


# -- assignment ---------------------------------------------------------------------------------
def _beat(site: str, sessions: int, max_sessions: int = 150) -> dict[str, object]:
    return {"site": site, "sessions": sessions, "max_sessions": max_sessions, "ws_url": f"ws://{site}/xiaozhi/v1/"}


def test_new_devices_spread_over_the_least_loaded_edges_of_their_site() -> None:
    d = EdgeDirectory(stale_after_s=20, sites={"a": ["10.1.0.0/16"], "b": ["10.2.0.0/16"]})
    d.heartbeat("a1", _beat("a", 10), now=100)
    d.heartbeat("a2", _beat("a", 40), now=100)
    d.heartbeat("b1", _beat("b", 0), now=100)
    d.set_assigned({"a1": 10, "a2": 40})
    # A burst of 60 boots at site a before any heartbeat: each assignment counts at once.
    edges = [d.assign("", "10.1.3.4", now=101).edge for _ in range(60)]
    assert set(edges) == {"a1", "a2"}  # never the idle edge of another site
    assert d.assign("", "10.2.0.7", now=101).site == "b"  # the device's token is issued for its edge's site
    assert abs((10 + edges.count("a1")) - (40 + edges.count("a2"))) <= 1  # level after the burst
    assert d.assigned["a1"] + d.assigned["a2"] == 110
    assert d.assign("", "192.168.0.9", now=101).edge == "b1"  # no site: the least loaded anywhere


def test_a_device_sticks_to_its_healthy_edge_and_leaves_a_dead_one() -> None:
    d = EdgeDirectory(stale_after_s=20)
    d.heartbeat("e1", _beat("a", 100), now=100)
    d.heartbeat("e2", _beat("a", 0), now=100)
    sticky = d.assign("e1", "10.0.0.1", now=110)
    assert (sticky.edge, sticky.reason) == ("e1", "sticky")  # even though e2 is emptier
    d.heartbeat("e2", _beat("a", 0), now=125)
    d.set_assigned({"e1": 5})
    moved = d.assign("e1", "10.0.0.1", now=125)  # e1 silent for 25 s
    assert (moved.edge, moved.reason) == ("e2", "edge_down")
    assert (d.assigned["e1"], d.assigned["e2"]) == (4, 1)
    with pytest.raises(NoEdgeAvailable):
        d.assign("e2", "10.0.0.1", now=200)
    d.heartbeat("e3", {"site": "a", "sessions": 0}, now=200)  # no ws_url: not usable
    with pytest.raises(NoEdgeAvailable):
        d.assign("", "10.0.0.1", now=200)


def test_demand_against_measured_capacity_counts_as_load() -> None:
    d = EdgeDirectory(stale_after_s=20)
    d.heartbeat("busy", {**_beat("a", 10), "capacity_turns_per_s": 1.0, "demand_turns_per_s": 0.9}, now=0)
    d.heartbeat("calm", {**_beat("a", 50), "capacity_turns_per_s": 1.0, "demand_turns_per_s": 0.1}, now=0)
    assert d.assign("", "10.0.0.1", now=1).edge == "calm"  # 50/150 sessions but 10 % of its capacity


# -- firmware -----------------------------------------------------------------------------------
def _store(tmp_path: Path, manifest: str, files: tuple[str, ...]) -> FirmwareStore:
    for name in files:
        (tmp_path / name).write_bytes(b"\x00" * 16)
    (tmp_path / "firmware.yaml").write_text(manifest)
    return FirmwareStore(str(tmp_path))


def test_the_newest_image_for_the_board_is_offered_by_numeric_version(tmp_path: Path) -> None:
    assert parse_version("2.10.0") > parse_version("2.9.9") and parse_version("1.6.0-rc1") == (1, 6, 0)
    store = _store(
        tmp_path,
        """
- {board: bread, version: 2.4.3, file: b243.bin}
- {board: bread, version: 2.10.0, file: b2100.bin}
- {board: "*", version: 3.0.0, file: any.bin}
""",
        ("b243.bin", "b2100.bin", "any.bin"),
    )
    offer = store.offer("bread", "2.4.2")
    assert offer is not None and offer.file == "b2100.bin"
    assert store.offer("bread", "2.10.0") is None  # up to date
    assert store.offer("other-board", "2.0").file == "any.bin"
    assert store.path("b243.bin") == tmp_path / "b243.bin" and store.path("../etc/passwd") is None


def test_a_forced_image_rolls_back_and_bad_manifests_are_refused(tmp_path: Path) -> None:
    store = _store(tmp_path, "- {board: bread, version: 2.4.0, file: old.bin, force: true}\n", ("old.bin",))
    offer = store.offer("bread", "2.5.0")
    assert offer is not None and offer.force and offer.version == "2.4.0"
    assert store.offer("bread", "2.4.0") is None  # already on it
    with pytest.raises(FirmwareError, match="not a file"):
        _store(tmp_path, "- {board: bread, version: 1.0, file: ../x.bin}\n", ())
    with pytest.raises(FirmwareError, match="needs board, version and file"):
        _store(tmp_path, "- {board: bread, file: old.bin}\n", ())
