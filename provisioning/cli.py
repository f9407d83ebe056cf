"""``xiaozhi-provision``: serve devices' OTA and activation, and enroll edge nodes.

    xiaozhi-provision serve --config provision.yaml
    xiaozhi-provision enroll-edge --edge-id site-a-1 --site site-a --hub-dir /srv/xiaozhi/hub \\
        --hub-leaf-url nats-leaf://hub.example:7422 --token-key /srv/xiaozhi/device-token.key --out bundles/site-a-1

Settings of ``serve``: defaults < ``--config`` YAML < ``XIAOZHI_PROVISION__SECTION__KEY`` environment
< flags. Exit status: 0; 1 when serving or writing the bundle failed; 2 for a bad configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import signal
import ssl
import time
from pathlib import Path

import yaml

from edge_node.config import EdgeConfig
from shared import cli, tokens
from shared.nats import subjects as s
from shared.nats.configs import edge_config, load_credential, new_credential, save_credential
from shared.nats.settings import client_overrides
from shared.settings import ConfigError, load_settings
from shared.tls import server_context

from .config import ENV_PREFIX, ProvisionConfig

__all__ = ["main"]

log = logging.getLogger("provisioning")

PROG = "xiaozhi-provision"
EDGE_CONFIG_DIR = "/etc/xiaozhi"


def _parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sv = cli.add_command(
        sub,
        "serve",
        "the fleet's OTA and activation endpoints",
        examples=[
            "xiaozhi-provision serve --config provision.yaml",
            "xiaozhi-provision serve --nats nats://hub:4222 --credential cloud.json "
            "--public-url http://provision.example:8004",
        ],
    )
    config_help = "YAML settings file (defaults < file < XIAOZHI_PROVISION__* environment < flags)"
    sv.add_argument("--config", metavar="FILE", help=config_help)
    sv.add_argument("--host", help="listen address (default: host, 0.0.0.0)")
    sv.add_argument("--port", type=int, help="listen port; 0: any free port (default: port, 8004)")
    sv.add_argument("--db", help="the console's SQLAlchemy URL (devices and activation codes live there)")
    sv.add_argument("--nats", help="hub URL: the edges' heartbeats")
    sv.add_argument("--credential", help="credential file from `xiaozhi-cloud nats-config` (cloud.json)")
    sv.add_argument("--token-key", help="the fleet's device-token key file")
    sv.add_argument("--public-url", help="this service as devices reach it (firmware URLs)")

    en = cli.add_command(
        sub,
        "enroll-edge",
        "an edge's identity, NATS leaf credentials and config bundle",
        examples=[
            "xiaozhi-provision enroll-edge --edge-id site-a-1 --site site-a --hub-dir "
            "/srv/xiaozhi/hub --hub-leaf-url nats-leaf://hub.example:7422 --token-key "
            "/srv/xiaozhi/device-token.key --out bundles/site-a-1"
        ],
    )
    en.add_argument("--edge-id", required=True, help="[A-Za-z0-9_-]: the edge's node id and NATS user")
    en.add_argument("--site", default="", help="where it stands; devices of this site are sent to it")
    en.add_argument("--hub-dir", required=True, help="the directory `xiaozhi-cloud nats-config --out` wrote")
    en.add_argument("--hub-leaf-url", required=True, help="nats-leaf://hub.example:7422")
    en.add_argument("--token-key", required=True, help="the fleet's device-token key (created if missing)")
    en.add_argument("--public-host", help="the address devices use for this edge (else worked out at run time)")
    en.add_argument("--out", required=True, help="bundle directory to write")
    return p


def _enroll(args: argparse.Namespace) -> int:
    edge = args.edge_id.strip()
    if not edge or s.safe_token(edge) != edge:
        raise cli.CliError(f"edge ids are [A-Za-z0-9_-] names, not {args.edge_id!r}", cli.EXIT_USAGE)
    key_path = Path(args.token_key)
    if not key_path.is_file():
        tokens.generate_key(key_path)
        print(f"created the fleet's device-token key {key_path}: give the provisioning service the same file")
    tokens.load_key(key_path)  # refuses a malformed key before anything is written
    creds = Path(args.hub_dir) / "credentials"
    cred_path = creds / f"{edge}.json"
    if cred_path.is_file():
        cred = load_credential(cred_path)  # re-enrolling must not lock out a deployed edge
    else:
        cred = new_credential(edge, "edge")
        save_credential(cred, cred_path)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    leaf = out / "nats-leaf.conf"
    leaf.write_text(
        edge_config(server_name=edge, cloud_leaf_urls=[args.hub_leaf_url], credential=cred), encoding="utf-8"
    )
    leaf.chmod(0o600)
    shutil.copyfile(key_path, out / "device-token.key")
    (out / "device-token.key").chmod(0o600)
    config: dict[str, object] = {
        "node_id": edge,
        "site": args.site,
        "nats": {"url": "nats://127.0.0.1:4222"},
        "auth": {"device_tokens": True, "token_key_file": f"{EDGE_CONFIG_DIR}/device-token.key"},
        "cache": {"dir": "/var/lib/xiaozhi/cache"},
        "log": {"json_format": True},
    }
    if args.public_host:
        config["server"] = {"public_ws_url": f"ws://{args.public_host}:8000/xiaozhi/v1/"}
    edge_yaml = out / "edge.yaml"
    edge_yaml.write_text(
        "# written by xiaozhi-provision enroll-edge\n" + yaml.safe_dump(config, sort_keys=False), encoding="utf-8"
    )
    load_settings(EdgeConfig, edge_yaml, {}, environ={})  # the edge would refuse it otherwise: exit 2
    (out / "enrollment.json").write_text(
        json.dumps(
            {"edge_id": edge, "site": args.site, "hub_leaf_url": args.hub_leaf_url, "created_at": int(time.time())},
            indent=2,
        )
        + "\n"
    )
    users = sorted(p.stem for p in creds.glob("*.json") if p.stem != "cloud")
    print(f"bundle for {edge} in {out}/ (nats-leaf.conf and device-token.key are secrets)")
    print(f"the hub must know the user: xiaozhi-cloud nats-config --edges {','.join(users)} --out {args.hub_dir} ...")
    return 0


async def _serve(cfg: ProvisionConfig, ssl_context: ssl.SSLContext | None = None) -> None:
    from .service import ProvisionService

    service = ProvisionService(cfg, ssl_context)
    await service.start()
    print(f"READY provision http={service.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await service.stop()


def _main(args: argparse.Namespace) -> int:
    if args.command == "enroll-edge":
        try:
            return _enroll(args)
        except ConfigError:
            raise
        except (OSError, ValueError) as exc:
            raise cli.CliError(str(exc)) from exc
    overrides: dict[str, dict[str, str] | str] = {**client_overrides(args.nats, args.credential, args.log_level)}
    for flag, key in (
        ("host", "host"),
        ("port", "port"),
        ("db", "db"),
        ("token_key", "token_key_file"),
        ("public_url", "public_url"),
    ):
        if getattr(args, flag) is not None:
            overrides[key] = str(getattr(args, flag))
    cfg = load_settings(ProvisionConfig, args.config, overrides, prefix=ENV_PREFIX)
    ssl_context = server_context(cfg.tls_cert_file, cfg.tls_key_file)  # names a bad file before serving
    from shared.logs import setup_logging

    setup_logging(cfg.log)
    try:
        asyncio.run(_serve(cfg, ssl_context))
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as exc:  # a port in use, a database it cannot open
        raise cli.CliError(f"serving failed: {exc}") from exc
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(PROG, lambda: _main(cli.parse(_parser(), argv)))


if __name__ == "__main__":
    raise SystemExit(main())
