"""``xiaozhi-edge``: run an edge node (also ``python -m edge_node``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
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
    return parser


async def _serve(cfg: Any) -> None:
    from edge_node.engines.runtime import Engines
    from edge_node.server import EdgeServer

    loop = asyncio.get_running_loop()
    engines = await loop.run_in_executor(None, Engines.load, cfg)
    server = EdgeServer(cfg, engines)
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
    from edge_node.logs import setup_logging

    setup_logging(cfg.log)
    asyncio.run(_serve(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
