"""ansible/: the edge roles, checked the way a field tech and CI use them.

* ``ansible-lint`` with the production profile, offline, over the whole tree (roles, site.yml,
  the example inventory, the molecule scenario): no violation and no warning.
* The template of ``edge.yaml`` rendered by Ansible itself (``ansible localhost -m template`` with the
  roles' defaults) and loaded by the edge's real config loader (``shared.settings.load_settings``),
  for bundled and production models; a misspelt key in ``xiaozhi_edge_config_extra`` is refused
  by that loader and by ``xiaozhi-edge config``, the command the role validates the file with.
* ``molecule test`` of the default scenario (slow, about a minute): both roles through the real
  ``site.yml`` on this machine under a throwaway prefix, with the bundle from the real
  ``xiaozhi-provision enroll-edge``: a check-mode run on the empty prefix, converge, a second run
  that changes nothing, then files, modes, units (``systemd-analyze verify``), edge.yaml and the
  leaf config verified (ansible/molecule/default/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_node.config import EdgeConfig
from shared.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"
BIN = Path(sys.executable).parent  # the venv's bin: ansible, ansible-lint, molecule, xiaozhi-edge
ROLES = ANSIBLE / "roles"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # molecule calls ansible-config and ansible-playbook by name
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        {
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "NO_COLOR": "1",
            "PY_COLORS": "0",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        }
    )
    env.update(extra)
    return env


def _run(cmd: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=ANSIBLE,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.splitlines()[-lines:])


def test_ansible_lint_production_profile() -> None:
    if not (BIN / "ansible-lint").exists():
        pytest.skip("ansible-lint is not installed (pip install -e '.[test]')")
    proc = _run([str(BIN / "ansible-lint"), "--nocolor"], timeout=240)
    assert proc.returncode == 0, f"ansible-lint failed:\n{_tail(proc.stdout)}"
    # the profile really applied, and nothing was merely downgraded to a warning
    assert "Profile 'production' was required, and it passed" in proc.stdout, _tail(proc.stdout)
    assert " 0 failure(s), 0 warning(s)" in proc.stdout, _tail(proc.stdout)


def _render_edge_yaml(out_dir: Path, variables: dict[str, Any]) -> Path:
    """edge.yaml as the edge_node role renders it: its template with both roles' defaults under ``variables``."""
    if not (BIN / "ansible").exists():
        pytest.skip("ansible-core is not installed (pip install -e '.[test]')")
    dest = out_dir / "edge.yaml"
    extra = out_dir / "vars.json"
    extra.write_text(json.dumps({"ansible_python_interpreter": sys.executable, **variables}), encoding="utf-8")
    cmd = [
        str(BIN / "ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-m",
        "ansible.builtin.template",
        "-a",
        f"src={ROLES / 'edge_node/templates/edge.yaml.j2'} dest={dest} mode=0640",
        "-e",
        f"@{ROLES / 'xiaozhi_common/defaults/main.yml'}",
        "-e",
        f"@{ROLES / 'edge_node/defaults/main.yml'}",
        "-e",
        f"@{extra}",
    ]
    proc = _run(cmd, timeout=120)
    assert proc.returncode == 0, f"rendering edge.yaml failed:\n{_tail(proc.stdout)}"
    return dest


@pytest.fixture
def render_dir() -> Any:
    path = Path(tempfile.mkdtemp(prefix="xz-ansible-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_edge_yaml_bundled_models_loads(render_dir: Path) -> None:
    path = _render_edge_yaml(
        render_dir,
        {
            "xiaozhi_edge_id": "site-a-1",
            "xiaozhi_site": "site-a",
            "xiaozhi_public_ws_url": "ws://10.1.0.5:8000/xiaozhi/v1/",
        },
    )
    cfg = load_settings(EdgeConfig, path, {}, environ={})
    assert (cfg.node_id, cfg.site) == ("site-a-1", "site-a")
    assert (cfg.server.port, cfg.server.http_port, cfg.server.host) == (8000, 8003, "0.0.0.0")
    assert cfg.server.public_ws_url == "ws://10.1.0.5:8000/xiaozhi/v1/"
    assert cfg.auth.device_tokens and cfg.auth.token_keys_file == "/etc/xiaozhi/device-token-keys.json"
    assert cfg.nats.url == "nats://127.0.0.1:4222" and cfg.nats.embedded_config == ""  # the leaf has its own unit
    assert cfg.cache.dir == "/var/lib/xiaozhi/cache"
    assert cfg.log.json_format
    # bundled models: nothing by path, the packages' models are used
    assert (cfg.asr.model_path, cfg.llm.model_path, cfg.tts.voice_path, cfg.vad.model_path) == ("", "", "", "")
    # typed values, not strings that happen to validate
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert raw["server"]["port"] == 8000 and raw["auth"]["device_tokens"] is True


def test_edge_yaml_production_models_and_extra_load(render_dir: Path) -> None:
    variables = {
        "xiaozhi_edge_id": "site-b-1",
        "xiaozhi_site": "site-b",
        "xiaozhi_config_dir": "/srv/xz/etc",
        "xiaozhi_data_dir": "/srv/xz/data",
        "xiaozhi_ws_port": 9000,
        "xiaozhi_http_port": 9003,
        "xiaozhi_models": "production",
        "xiaozhi_asr_backend": "sherpa",
        "xiaozhi_asr_language": "auto",
        "xiaozhi_asr_model_path": "/opt/models/sense-voice/model.int8.onnx",
        "xiaozhi_asr_sherpa_tokens": "/opt/models/sense-voice/tokens.txt",
        "xiaozhi_llm_model_path": "/opt/models/qwen2.5-1.5b-instruct-q4_k_m.gguf",
        "xiaozhi_tts_voice_path": "/opt/voices/zh_CN-huayan-medium.onnx",
        "xiaozhi_tts_voice_config_path": "/opt/voices/zh_CN-huayan-medium.onnx.json",
        "xiaozhi_edge_config_extra": {"llm": {"threads": 4, "workers": 2}, "queues": {"max_queue": 32}},
    }
    cfg = load_settings(EdgeConfig, _render_edge_yaml(render_dir, variables), {}, environ={})
    assert (cfg.server.port, cfg.server.http_port) == (9000, 9003)
    assert cfg.auth.token_keys_file == "/srv/xz/etc/device-token-keys.json"  # paths follow the prefix
    assert cfg.cache.dir == "/srv/xz/data/cache"
    assert (cfg.asr.backend, cfg.asr.sherpa_model_type, cfg.asr.language) == ("sherpa", "sense_voice", "auto")
    assert cfg.asr.model_path == variables["xiaozhi_asr_model_path"]
    assert cfg.asr.sherpa_tokens == variables["xiaozhi_asr_sherpa_tokens"]
    assert cfg.llm.model_path == variables["xiaozhi_llm_model_path"]
    assert (cfg.tts.voice_path, cfg.tts.voice_config_path) == (
        variables["xiaozhi_tts_voice_path"],
        variables["xiaozhi_tts_voice_config_path"],
    )
    assert (cfg.llm.threads, cfg.llm.workers, cfg.queues.max_queue) == (4, 2, 32)  # the extra merged in


def test_edge_yaml_edge_only_without_tokens_loads(render_dir: Path) -> None:
    path = _render_edge_yaml(
        render_dir, {"xiaozhi_nats_url": "", "xiaozhi_device_tokens": False, "xiaozhi_log_json": False}
    )
    cfg = load_settings(EdgeConfig, path, {}, environ={})
    assert cfg.node_id == "localhost"  # xiaozhi_edge_id defaults to the inventory name
    assert cfg.nats.url == "" and not cfg.auth.device_tokens and cfg.auth.token_keys_file == ""
    assert not cfg.log.json_format


def test_edge_yaml_misspelt_extra_is_refused(render_dir: Path) -> None:
    """What the role's ``validate: xiaozhi-edge config --config %s`` stops before it reaches an edge."""
    path = _render_edge_yaml(render_dir, {"xiaozhi_edge_config_extra": {"llm": {"thread": 2}}})
    with pytest.raises(ConfigError, match=r"llm\.thread"):
        load_settings(EdgeConfig, path, {}, environ={})
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIAOZHI__")}
    proc = subprocess.run(
        [str(BIN / "xiaozhi-edge"), "config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2 and "llm.thread" in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_molecule_default_scenario() -> None:
    if not (BIN / "molecule").exists():
        pytest.skip("molecule is not installed (pip install -e '.[test]')")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    ephemeral = Path(tempfile.mkdtemp(prefix="xz-molecule-"))
    try:
        proc = _run(
            [str(BIN / "molecule"), "test", "--scenario-name", "default"],
            timeout=840,
            MOLECULE_EPHEMERAL_DIRECTORY=str(ephemeral),
        )
    finally:
        shutil.rmtree(ephemeral, ignore_errors=True)
    assert proc.returncode == 0, f"molecule test failed:\n{_tail(proc.stdout, 150)}"
    for step in ("check", "converge", "idempotence", "verify"):
        assert f"[default > {step}] Executed: Successful" in proc.stdout, f"no {step} step:\n{_tail(proc.stdout)}"
