"""``xiaozhi-edge``: run an edge node (also ``python -m edge_node``).

    xiaozhi-edge serve [--config edge.yaml] [--host H] [--port P] [--http-port P] [--node-id ID]
    xiaozhi-edge config [--config edge.yaml]            # the effective configuration
    xiaozhi-edge nats-config --cloud nats-leaf://hub:7422 --credential edge-1.json --out edge-nats.conf
    xiaozhi-edge routing-check routing.yaml             # validate a routing config
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from typing import Any

from shared.config import ConfigError, load_config

log = logging.getLogger("edge_node")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xiaozhi-edge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve devices on the configured (default: bundled) models")
    serve.add_argument("--config", help="YAML file (defaults < file < XIAOZHI__* env < flags)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int, help="WebSocket port (0 picks a free one)")
    serve.add_argument("--http-port", type=int, help="HTTP port for OTA, /health, /metrics")
    serve.add_argument("--node-id")
    sub.add_parser("config", help="print the effective configuration as YAML").add_argument("--config")
    nc = sub.add_parser("nats-config", help="write this edge's leaf nats-server config")
    nc.add_argument("--cloud", required=True, help="the hub's leaf URL(s), comma-separated: nats-leaf://hub:7422")
    nc.add_argument("--credential", help="this edge's credential file from `xiaozhi-cloud nats-config`")
    nc.add_argument("--out", required=True, help="where to write the config (e.g. /etc/xiaozhi/nats.conf)")
    nc.add_argument("--server-name", help="default: the credential's user")
    nc.add_argument("--port", type=int, default=4222, help="loopback port edge processes connect to")
    nc.add_argument("--http-port", type=int, help="loopback monitoring port (none by default)")
    rc = sub.add_parser("routing-check", help="validate a routing config file")
    rc.add_argument("file")
    return parser


def _nats_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from shared.nats.configs import edge_config, load_credential

    try:
        cred = load_credential(Path(args.credential)) if args.credential else None
        text = edge_config(
            server_name=args.server_name or (cred.user if cred else "xiaozhi-edge"),
            cloud_leaf_urls=[u.strip() for u in args.cloud.split(",") if u.strip()],
            credential=cred,
            port=args.port,
            http_port=args.http_port,
        )
    except ValueError as exc:
        print(f"xiaozhi-edge: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    out.chmod(0o600)  # holds this edge's password
    print(f"wrote {out}; serve with nats.url: nats://127.0.0.1:{args.port} and nats.embedded_config: {out}")
    return 0


async def _serve(cfg: Any, ssl_context: ssl.SSLContext | None = None) -> None:
    from edge_node.engines.runtime import Engines
    from edge_node.server import EdgeServer
    from shared.allocator import set_mmap_threshold

    # Before any model allocates: the threshold only governs blocks allocated after it is set.
    if set_mmap_threshold(cfg.server.malloc_mmap_threshold_kb * 1024):
        log.info("malloc mmap threshold fixed at %d KiB", cfg.server.malloc_mmap_threshold_kb)
    loop = asyncio.get_running_loop()
    engines = await loop.run_in_executor(None, Engines.load, cfg)
    server = EdgeServer(cfg, engines, ssl_context)
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "nats-config":
        return _nats_config(args)
    if args.command == "routing-check":
        from shared.routing_config import RoutingConfigError, load_routing_file

        try:
            load_routing_file(args.file)
        except RoutingConfigError as exc:
            print(f"xiaozhi-edge: {exc}", file=sys.stderr)
            return 2
        print(f"{args.file}: valid")
        return 0
    overrides: dict[str, Any] = {}
    if args.command == "serve":
        server = {k: v for k, v in (("host", args.host), ("port", args.port), ("http_port", args.http_port))
                  if v is not None}  # fmt: skip
        if server:
            overrides["server"] = server
        if args.node_id:
            overrides["node_id"] = args.node_id
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"xiaozhi-edge: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        import yaml

        print(yaml.safe_dump(cfg.model_dump(), sort_keys=False, allow_unicode=True), end="")
        return 0
    from shared.tls import TlsError, server_context

    try:  # before the models load: a bad certificate path should not cost a minute of loading
        ssl_context = server_context(cfg.server.tls_cert_file, cfg.server.tls_key_file)
    except TlsError as exc:
        print(f"xiaozhi-edge: {exc}", file=sys.stderr)
        return 2
    from shared.logs import setup_logging

    setup_logging(cfg.log)
    asyncio.run(_serve(cfg, ssl_context))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
