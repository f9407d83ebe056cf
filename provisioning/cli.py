"""``xiaozhi-provision``: serve devices' OTA and activation, and enroll edge nodes.

    xiaozhi-provision serve --config provision.yaml
    xiaozhi-provision enroll-edge --edge-id site-a-1 --site site-a --hub-dir /srv/xiaozhi/hub \\
        --hub-leaf-url nats-leaf://hub.example:7422 --token-keys /srv/xiaozhi/token-keys --out bundles/site-a-1
    xiaozhi-provision rotate-key --token-keys /srv/xiaozhi/token-keys

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
from urllib.parse import urlsplit

import yaml

from edge_node.config import EdgeConfig
from shared import cli, tokens
from shared.nats import subjects as s
from shared.nats.configs import (
    PLAIN_LEAF_WARNING,
    TlsFiles,
    edge_config,
    load_credential,
    new_credential,
    save_credential,
)
from shared.nats.pki import LeafPki, PkiError, copy_key
from shared.nats.settings import NATS_CA_HELP, client_overrides
from shared.settings import ConfigError, load_settings
from shared.tls import server_context

from .config import ENV_PREFIX, ProvisionConfig

__all__ = ["main"]

log = logging.getLogger("provisioning")

PROG = "xiaozhi-provision"
EDGE_CONFIG_DIR = "/etc/xiaozhi"
# The leaf link's TLS files, in a bundle and on the edge (next to nats-leaf.conf).
LEAF_CERT, LEAF_KEY, LEAF_CA = "nats-leaf.pem", "nats-leaf.key", "nats-leaf-ca.pem"
TOKEN_KEYS_FILE = "device-token-keys.json"  # the public key set, in a bundle and on the edge
DAY_S = 24 * 3600.0


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
    sv.add_argument("--nats-ca", metavar="FILE", help=NATS_CA_HELP)
    sv.add_argument("--token-keys", help="the device-token key ring directory (default: token_keys_dir)")
    sv.add_argument("--public-url", help="this service as devices reach it (firmware URLs)")

    en = cli.add_command(
        sub,
        "enroll-edge",
        "an edge's identity, NATS leaf credentials and config bundle",
        examples=[
            "xiaozhi-provision enroll-edge --edge-id site-a-1 --site site-a --hub-dir "
            "/srv/xiaozhi/hub --hub-leaf-url nats-leaf://hub.example:7422 --token-keys "
            "/srv/xiaozhi/token-keys --out bundles/site-a-1"
        ],
    )
    en.add_argument("--edge-id", required=True, help="[A-Za-z0-9_-]: the edge's node id and NATS user")
    en.add_argument("--site", default="", help="where it stands; devices of this site are sent to it")
    en.add_argument("--hub-dir", required=True, help="the directory `xiaozhi-cloud nats-config --out` wrote")
    en.add_argument("--hub-leaf-url", required=True, help="nats-leaf://hub.example:7422")
    en.add_argument(
        "--token-keys",
        required=True,
        help="the device-token key ring directory (created if missing); only its public key set goes into the bundle",
    )
    en.add_argument(
        "--edge-config-dir",
        default=EDGE_CONFIG_DIR,
        help="the edge's config directory (the Ansible role's xiaozhi_config_dir): where nats-leaf.conf expects "
        "the bundle's leaf certificate, key and CA",
    )
    en.add_argument(
        "--plain-leaf",
        action="store_true",
        help="no TLS to the hub (a hub made with nats-config --plain-leaf): the password crosses the network in clear",
    )
    en.add_argument("--public-host", help="the address devices use for this edge (else worked out at run time)")
    en.add_argument("--out", required=True, help="bundle directory to write")
    rk = cli.add_command(
        sub,
        "rotate-key",
        "add a device-token signing key; the old one stays valid until its last token expires",
        examples=[
            "xiaozhi-provision rotate-key --token-keys /srv/xiaozhi/token-keys",
            "xiaozhi-provision rotate-key --token-keys /srv/xiaozhi/token-keys --compromised  # key stolen",
            "xiaozhi-provision rotate-key --token-keys /srv/xiaozhi/token-keys --prune-only",
        ],
    )
    rk.add_argument("--token-keys", required=True, help="the device-token key ring directory")
    rk.add_argument(
        "--publish-window-h",
        type=float,
        default=24.0,
        help="hours before the new key signs: time to push the new key set to every edge (Ansible); "
        "0 signs at once, and devices booting before their edge has the new set are refused",
    )
    rk.add_argument(
        "--token-ttl-d",
        type=float,
        default=30.0,
        help="the provisioning service's token lifetime in days (token_ttl_s): how long the old key stays valid",
    )
    rk.add_argument(
        "--compromised",
        action="store_true",
        help="the old keys leaked: the new key signs at once and edges refuse the old keys' tokens as soon as "
        "they have the new key set (devices reconnect after their next boot)",
    )
    rk.add_argument(
        "--bundles",
        help="a directory of enrollment bundles (enroll-edge --out): each gets the new key set, for Ansible to push",
    )
    rk.add_argument("--prune-only", action="store_true", help="only delete keys no edge accepts any more")
    return p


def _rotate_key(args: argparse.Namespace) -> int:
    if args.publish_window_h < 0 or args.token_ttl_d <= 0:
        raise cli.CliError("--publish-window-h must be >= 0 and --token-ttl-d > 0", cli.EXIT_USAGE)
    ring = tokens.KeyRing.load(Path(args.token_keys))
    if not args.prune_only:
        window = 0.0 if args.compromised else args.publish_window_h * 3600.0
        new = ring.rotate(args.token_ttl_d * DAY_S, window, compromised=args.compromised)
        starts = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(new.signing_from))
        print(f"new key {new.kid}: the provisioning service signs with it from {starts}")
        for key in ring.keyset.keys.values():
            if key.kid != new.kid and key.accept_until is not None:
                until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(key.accept_until))
                print(f"key {key.kid}: edges accept its tokens until {until}")
        if not args.bundles:
            print(f"push {ring.keyset_path} to every edge as {EDGE_CONFIG_DIR}/{TOKEN_KEYS_FILE} (site.yml)")
    gone = ring.prune()
    print(f"pruned {', '.join(gone)}" if gone else "no key to prune")
    if args.bundles:
        bundles = sorted(p.parent for p in Path(args.bundles).glob("*/enrollment.json"))
        for bundle in bundles:
            shutil.copyfile(ring.keyset_path, bundle / TOKEN_KEYS_FILE)
            (bundle / TOKEN_KEYS_FILE).chmod(0o644)
        print(f"key set written to {len(bundles)} bundle(s) in {args.bundles}/: run site.yml to push it")
    return 0


def _leaf_tls_bundle(args: argparse.Namespace, edge: str, out: Path) -> TlsFiles | None:
    """The edge's leaf client certificate, key and the leaf CA into the bundle (the certificate issued by the
    hub dir's CA if nats-config has not yet); the paths the leaf config names are where the role installs them."""
    if args.plain_leaf:
        print(f"WARNING: {PLAIN_LEAF_WARNING}")
        return None
    if not Path(args.edge_config_dir).is_absolute():
        raise cli.CliError(f"--edge-config-dir must be absolute: {args.edge_config_dir!r}", cli.EXIT_USAGE)
    pki = LeafPki(Path(args.hub_dir) / "tls")
    try:
        if pki.ensure_ca():
            print(f"created the leaf CA {pki.ca_cert}: re-run xiaozhi-cloud nats-config on {args.hub_dir} for the hub")
        if pki.ensure_edge(edge):
            print(f"issued {edge}'s leaf client certificate {pki.edge_cert(edge)}")
        hosts = pki.hub_hosts()
    except PkiError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    host = urlsplit(args.hub_leaf_url).hostname or ""
    if hosts and not any(h == host or (h.startswith("*.") and host.partition(".")[2] == h[2:]) for h in hosts):
        print(
            f"WARNING: the hub's leaf certificate is not valid for {host!r} ({', '.join(hosts)}): the edge will refuse "
            f"the hub; re-run xiaozhi-cloud nats-config with --leaf-host {host}"
        )
    copy_key(pki.edge_key(edge), out / LEAF_KEY)
    for src, name in ((pki.edge_cert(edge), LEAF_CERT), (pki.ca_cert, LEAF_CA)):
        shutil.copyfile(src, out / name)
        (out / name).chmod(0o644)
    print(f"{LEAF_KEY} (the edge's leaf TLS key) is a secret as well; {LEAF_CERT} and {LEAF_CA} are not")
    where = args.edge_config_dir.rstrip("/")
    return TlsFiles(f"{where}/{LEAF_CERT}", f"{where}/{LEAF_KEY}", f"{where}/{LEAF_CA}")


def _enroll(args: argparse.Namespace) -> int:
    edge = args.edge_id.strip()
    if not edge or s.safe_token(edge) != edge:
        raise cli.CliError(f"edge ids are [A-Za-z0-9_-] names, not {args.edge_id!r}", cli.EXIT_USAGE)
    ring, created = tokens.KeyRing.open_or_create(Path(args.token_keys))  # a bad ring stops here
    if created:
        print(f"created the device-token key ring {ring.dir}/: give the provisioning service that directory")
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
    tls = _leaf_tls_bundle(args, edge, out)
    leaf.write_text(
        edge_config(server_name=edge, cloud_leaf_urls=[args.hub_leaf_url], credential=cred, tls=tls), encoding="utf-8"
    )
    leaf.chmod(0o600)
    # Public keys only: the edge verifies tokens, it cannot sign one.
    shutil.copyfile(ring.keyset_path, out / TOKEN_KEYS_FILE)
    (out / TOKEN_KEYS_FILE).chmod(0o644)
    config: dict[str, object] = {
        "node_id": edge,
        "site": args.site,
        "nats": {"url": "nats://127.0.0.1:4222"},
        "auth": {"device_tokens": True, "token_keys_file": f"{EDGE_CONFIG_DIR}/{TOKEN_KEYS_FILE}"},
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
    print(f"bundle for {edge} in {out}/ (nats-leaf.conf is a secret)")
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
    if args.command in ("enroll-edge", "rotate-key"):
        try:
            return _enroll(args) if args.command == "enroll-edge" else _rotate_key(args)
        except ConfigError:
            raise
        except (OSError, ValueError) as exc:
            raise cli.CliError(str(exc)) from exc
    overrides: dict[str, dict[str, str] | str] = {
        **client_overrides(args.nats, args.credential, args.log_level, args.nats_ca)
    }
    for flag, key in (
        ("host", "host"),
        ("port", "port"),
        ("db", "db"),
        ("token_keys", "token_keys_dir"),
        ("public_url", "public_url"),
    ):
        if getattr(args, flag) is not None:
            overrides[key] = str(getattr(args, flag))
    cfg = load_settings(ProvisionConfig, args.config, overrides, prefix=ENV_PREFIX)
    ssl_context = server_context(cfg.tls_cert_file, cfg.tls_key_file)  # names a bad file before serving
    if cfg.nats.url:
        cfg.nats.tls()  # so is the hub's CA file (nats.ca_file): exit 2 naming it, not a retry loop
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
