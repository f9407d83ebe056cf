"""The edge's systemd unit as the edge_node role renders it, started for real.

Two tests. Under a running systemd (PID 1 is systemd, as on an edge) the rendered unit is installed as a
runtime unit, started with ``systemctl``, must answer ``/ready``, reload on ``systemctl reload`` and stop
cleanly with ``systemctl stop``. Where PID 1 is not systemd (containers, CI runners without an init) that
test skips, saying so, and the second test still runs what systemd would: the unit's ``ExecStart`` with
its ``Environment`` and ``WorkingDirectory``, then ``ExecReload``'s SIGHUP, then systemd's stop signal
(SIGTERM) within ``TimeoutStopSec``, which must end the node with status 0 (``Restart=on-failure`` would
otherwise restart it). Booting a systemd of our own in a namespace is not an option on a shared machine:
its boot runs systemd-tmpfiles, which empties /tmp.
"""

from __future__ import annotations

import getpass
import grp
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.nats.server import free_port
from tests.provisioning.test_ansible import BIN, ROLES, _run, _tail

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "bench" / "fleet" / "timing.2026-11-25.yaml"  # timing engines: the node starts in seconds

pytestmark = pytest.mark.slow


def _render(template: str, dest: Path, variables: dict[str, Any]) -> Path:
    """One of the edge_node role's templates, rendered by Ansible with both roles' defaults under ``variables``."""
    import json

    if not (BIN / "ansible").exists():
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    extra = dest.with_suffix(".vars.json")
    extra.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **variables}), encoding="utf-8")
    cmd = [
        str(BIN / "ansible"),
        "localhost",
        *("-i", "localhost,", "-c", "local", "-m", "ansible.builtin.template"),
        *("-a", f"src={ROLES / 'edge_node/templates' / template} dest={dest} mode=0644"),
        *("-e", f"@{ROLES / 'xiaozhi_common/defaults/main.yml'}"),
        *("-e", f"@{ROLES / 'edge_node/defaults/main.yml'}"),
        *("-e", f"@{extra}"),
    ]
    proc = _run(cmd, timeout=120)
    assert proc.returncode == 0, f"rendering {template} failed:\n{_tail(proc.stdout)}"
    return dest


def _service(unit: Path) -> dict[str, str]:
    """The [Service] section's settings (one line each in this unit)."""
    section, out = "", {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


def _rendered_edge(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The unit and edge.yaml for a node under ``tmp_path``, run by the current user from this venv."""
    variables: dict[str, Any] = {
        "xiaozhi_edge_id": "unit-1",
        "xiaozhi_site": "site-unit",
        "xiaozhi_venv": sys.prefix,
        "xiaozhi_config_dir": str(tmp_path / "etc"),
        "xiaozhi_data_dir": str(tmp_path / "data"),
        "xiaozhi_user": getpass.getuser(),
        "xiaozhi_group": grp.getgrgid(os.getgid()).gr_name,
        "xiaozhi_listen_host": "127.0.0.1",
        "xiaozhi_ws_port": free_port(),
        "xiaozhi_http_port": free_port(),
        "xiaozhi_nats_url": "",
        "xiaozhi_device_tokens": False,
        "xiaozhi_log_json": False,
        "xiaozhi_edge_config_extra": {"timing": {"profile": str(PROFILE)}},
    }
    (tmp_path / "etc").mkdir()
    (tmp_path / "data" / "cache").mkdir(parents=True)
    _render("edge.yaml.j2", tmp_path / "etc" / "edge.yaml", variables)
    unit = _render("xiaozhi-edge.service.j2", tmp_path / "xiaozhi-edge.service", variables)
    return unit, variables


def _wait_ready(http_port: int, alive: Any, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert alive(), "the node exited before it was ready"
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"/ready on {http_port} never answered 200")


def test_the_units_commands_start_reload_and_stop_the_node(tmp_path: Path) -> None:
    """What systemd does with the unit, done by hand: ExecStart with its environment, ExecReload, stop."""
    unit, variables = _rendered_edge(tmp_path)
    service = _service(unit)
    # systemd's default stop signal (no KillSignal=) is what the test sends below.
    assert service["Type"] == "exec" and service["Restart"] == "on-failure" and "KillSignal" not in service
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == f"{sys.prefix}/bin/xiaozhi-edge" and Path(argv[0]).exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIAOZHI__")}
    env.update(dict(item.split("=", 1) for item in shlex.split(service["Environment"])))
    log = (tmp_path / "edge.log").open("w")
    proc = subprocess.Popen(argv, cwd=service["WorkingDirectory"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(variables["xiaozhi_http_port"], lambda: proc.poll() is None)
        assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
        proc.send_signal(signal.SIGHUP)  # systemctl reload: re-reads the routing file, keeps serving
        time.sleep(1)
        assert proc.poll() is None
        _wait_ready(variables["xiaozhi_http_port"], lambda: proc.poll() is None, timeout_s=10)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # systemctl stop
        code = proc.wait(timeout=float(service["TimeoutStopSec"]))
        assert code == 0, "a clean stop must exit 0, or Restart=on-failure restarts it"
        assert time.monotonic() - started < float(service["TimeoutStopSec"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    text = (tmp_path / "edge.log").read_text()
    assert "READY" in text and "Traceback" not in text, _tail(text)


def _systemd_is_pid1() -> str:
    """Why a real systemd start cannot run here, or "" when it can."""
    if not Path("/run/systemd/system").is_dir():
        return "PID 1 is not systemd here (a container or CI runner without an init): no unit can be started"
    if os.geteuid() != 0:
        return "starting a system unit needs root"
    return ""


def test_the_unit_starts_under_systemd(tmp_path: Path) -> None:
    why = _systemd_is_pid1()
    if why:
        pytest.skip(why)
    unit, variables = _rendered_edge(tmp_path)
    name = f"xiaozhi-edge-test-{uuid.uuid4().hex[:8]}.service"
    installed = Path("/run/systemd/system") / name  # a runtime unit: gone at the next boot

    def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60)

    installed.write_text(unit.read_text(encoding="utf-8"), encoding="utf-8")
    try:
        assert systemctl("daemon-reload").returncode == 0
        started = systemctl("start", name)
        assert started.returncode == 0, started.stderr
        _wait_ready(variables["xiaozhi_http_port"], lambda: systemctl("is-active", name).stdout.strip() == "active")
        assert systemctl("reload", name).returncode == 0
        assert systemctl("is-active", name).stdout.strip() == "active"
        assert systemctl("stop", name).returncode == 0
        result = systemctl("show", name, "--property=Result", "--property=ExecMainStatus").stdout
        assert "Result=success" in result and "ExecMainStatus=0" in result, result
    finally:
        systemctl("stop", name)
        installed.unlink(missing_ok=True)
        systemctl("daemon-reload")
