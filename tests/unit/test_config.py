"""Configuration: defaults < YAML < environment < flags, and clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_node.config import load_config
from shared.settings import ConfigError


def test_defaults_run_on_bundled_models() -> None:
    cfg = load_config(environ={})
    assert cfg.server.port == 8000 and cfg.server.http_port == 8003
    assert cfg.audio.downlink_sample_rate == 24000 and cfg.audio.downlink_frame_ms == 60
    assert cfg.asr.model_path == "" and cfg.llm.model_path == "" and cfg.tts.voice_path == ""
    assert cfg.auth.enabled is False


def test_precedence(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("server:\n  port: 9000\n  idle_timeout_s: 30\nnode_id: site-a\n")
    cfg = load_config(
        path,
        overrides={"server": {"port": 9100}},
        environ={"XIAOZHI__SERVER__IDLE_TIMEOUT_S": "45", "XIAOZHI__ROUTING__FILE": "routing.yaml"},
    )
    assert cfg.server.port == 9100  # flag beats file
    assert cfg.server.idle_timeout_s == 45  # env beats file
    assert cfg.node_id == "site-a"  # file beats default
    assert cfg.routing.file == "routing.yaml"


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("server:\n  port: -1\n", "server.port"),
        ("server:\n  prot: 9000\n", "server.prot"),
        ("audio:\n  downlink_sample_rate: 22050\n", "audio.downlink_sample_rate"),
        ("audio:\n  prebuffer_packets: 20\n  device_buffer_packets: 10\n", "prebuffer_packets"),
        ("- just\n- a list\n", "mapping"),
        ("server: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_is_refused_with_the_key(tmp_path: Path, yaml_text: str, needle: str) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(path, environ={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_configuration_doc_lists_every_key_with_its_default() -> None:
    """docs/configuration.md's defaults block is exactly what `xiaozhi-edge config` prints."""
    import yaml

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Every key with its default") :]
    block = section[section.index("```yaml") + len("```yaml") : section.index("```", section.index("```yaml") + 7)]
    assert yaml.safe_load(block) == load_config(environ={}).model_dump()
