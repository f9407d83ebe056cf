"""What an enrolled edge gets of the device-token keys, and a rotation pushed through the bundles:
``xiaozhi-provision enroll-edge`` and ``rotate-key`` run as an admin runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jwt

from edge_node.config import EdgeConfig
from shared import tokens
from shared.settings import load_settings
from tests.conftest import ROOT


def _provision(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "provisioning.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def _enroll(edge: str, tmp_path: Path) -> Path:
    out = tmp_path / "bundles" / edge
    _provision(
        "enroll-edge",
        *("--edge-id", edge, "--site", "site-a", "--hub-dir", "hub", "--hub-leaf-url", "nats-leaf://hub.example:7422"),
        *("--token-keys", "keys", "--out", str(out)),
        cwd=tmp_path,
    )
    return out


def test_a_bundle_carries_public_keys_only_and_rotation_refreshes_every_bundle(tmp_path: Path) -> None:
    bundles = [_enroll(edge, tmp_path) for edge in ("site-a-1", "site-a-2")]
    ring = tokens.KeyRing.load(tmp_path / "keys")
    (kid,) = ring.keyset.keys
    signing_pem = (tmp_path / "keys" / f"{kid}.pem").read_bytes()
    for bundle in bundles:
        installed = bundle / "device-token-keys.json"
        assert installed.read_bytes() == ring.keyset_path.read_bytes()
        # Nothing in the bundle can sign a device token: the one private key there is the leaf's TLS key.
        assert all(signing_pem.strip() not in f.read_bytes() for f in bundle.iterdir())
        assert [f.name for f in bundle.iterdir() if b"PRIVATE KEY" in f.read_bytes()] == ["nats-leaf.key"]
        cfg = load_settings(EdgeConfig, bundle / "edge.yaml", {}, environ={})
        assert cfg.auth.device_tokens and cfg.auth.token_keys_file == "/etc/xiaozhi/device-token-keys.json"
        # What the edge would do with its copy: verify a token the ring signed, for its site.
        keys = tokens.KeySet.load(installed)
        assert keys.verify(ring.issue("aa:bb:cc:00:00:01", 60, site="site-a"), "aa:bb:cc:00:00:01", cfg.site)

    run = _provision("rotate-key", "--token-keys", "keys", "--bundles", "bundles", cwd=tmp_path)
    assert "key set written to 2 bundle(s)" in run.stdout and f"key {kid}: edges accept its tokens until" in run.stdout
    rotated = json.loads((tmp_path / "keys" / "keyset.json").read_text())["keys"]
    assert len(rotated) == 2
    for bundle in bundles:
        assert (bundle / "device-token-keys.json").read_bytes() == (tmp_path / "keys" / "keyset.json").read_bytes()
    ring = tokens.KeyRing.load(tmp_path / "keys")
    assert jwt.get_unverified_header(ring.issue("aa:bb:cc:00:00:01", 60))["kid"] == kid  # the publish window
    run = _provision("rotate-key", "--token-keys", "keys", "--prune-only", cwd=tmp_path)
    assert "no key to prune" in run.stdout  # the old key is accepted for another 30 days and a day


def test_rotate_key_refuses_a_directory_without_a_ring(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "provisioning.cli", "rotate-key", "--token-keys", str(tmp_path / "none")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and "cannot read the device-token key set" in run.stderr
    assert "Traceback" not in run.stderr
