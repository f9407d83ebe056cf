"""``xiaozhi-cloud``: the cloud tier's command line.

    xiaozhi-cloud nats-config --edges edge-1,edge-2 --out deploy/nats [--host 0.0.0.0] [--port 4222]
                              [--leaf-port 7422] [--leaf-host hub.example.com] [--ca-cert F --ca-key F]
                              [--cluster-port 6222 --routes nats-route://c2:6222,...] [--plain-leaf]
                              [--client-tls [--client-host hub.cloud.svc]]
    xiaozhi-cloud worker --role llm|asr [--nats URL] [--config cloud.yaml] [--openai-url URL] [--model NAME]
    xiaozhi-cloud routing push routing.yaml [--nats URL]      # validate, then publish to every edge
    xiaozhi-cloud routing show [--nats URL]
    xiaozhi-cloud routing check routing.yaml                  # validate only, offline
    xiaozhi-cloud buckets [--nats URL]                         # create the KV buckets (idempotent)
    xiaozhi-cloud console [--config cloud.yaml] [--db URL] [--nats URL]

``nats-config`` writes the hub's config (passwords as bcrypt hashes) and one credential file per
edge and for the cloud's own clients, and under ``tls/`` the leaf link's certificates: a CA (or the
one given with ``--ca-cert``/``--ca-key``), the hub's leaf-port certificate for the ``--leaf-host``
names and one client certificate per edge (mutual TLS; ``--plain-leaf`` for none). ``--client-tls``
also puts the client port (workers, console, provisioning) on TLS, with a certificate of the same CA
for the ``--client-host`` names; those processes then take ``--nats-ca <out>/tls/hub/ca.pem``. Run it
again with more edges and the existing credentials and certificates are kept, so only new edges need a visit.
Settings of ``worker`` and ``console``: defaults < ``--config`` YAML < ``XIAOZHI_CLOUD__SECTION__KEY``
environment < flags. ``buckets`` and ``routing`` give up on a hub that does not answer within
``--timeout``. Exit status: 0, 1 when the action failed (the hub unreachable), 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

from cloud.config import ENV_PREFIX, CloudConfig
from shared import cli
from shared.nats import revoked
from shared.nats import subjects as s
from shared.nats.configs import (
    PLAIN_LEAF_WARNING,
    Credential,
    TlsFiles,
    cloud_config,
    load_credential,
    new_credential,
    save_credential,
)
from shared.nats.pki import DEFAULT_LEAF_HOSTS, LeafPki, PkiError
from shared.nats.settings import NATS_CA_HELP, client_overrides
from shared.routing_config import RoutingConfigError, load_routing_file, parse_routing
from shared.settings import load_settings

__all__ = ["main"]

PROG = "xiaozhi-cloud"
CONFIG_HELP = "YAML settings file (defaults < file < XIAOZHI_CLOUD__* environment < flags)"
HUB = "nats://127.0.0.1:4222"
TIMEOUT_S = 5.0


def _hub_flags(p: argparse.ArgumentParser) -> None:
    """How a one-shot command reaches the hub."""
    p.add_argument("--nats", default=HUB, help="hub URL")
    p.add_argument("--credential", help="credential file from nats-config (credentials/cloud.json); none: no auth")
    p.add_argument("--nats-ca", metavar="FILE", help=NATS_CA_HELP)
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds to wait for the hub before giving up")


def _parser() -> argparse.ArgumentParser:
    p = cli.parser(PROG, __doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    nc = cli.add_command(
        sub,
        "nats-config",
        "write the hub's nats-server config and per-edge credentials",
        examples=["xiaozhi-cloud nats-config --edges edge-1,edge-2 --out /srv/hub"],
    )
    nc.add_argument("--edges", required=True, help="comma-separated edge ids (their leaf-node users)")
    nc.add_argument("--out", required=True, help="directory for cloud.conf and credentials/")
    nc.add_argument("--server-name", default="xiaozhi-cloud-1", help="the hub's server name")
    nc.add_argument("--host", default="0.0.0.0", help="client listen address")
    nc.add_argument("--port", type=int, default=4222, help="client port (workers, console)")
    nc.add_argument("--leaf-port", type=int, default=7422, help="port the edges' leaf nodes connect to")
    nc.add_argument("--http-port", type=int, default=8222, help="monitoring port (0: none)")
    nc.add_argument("--store-dir", default="/var/lib/xiaozhi/nats", help="JetStream storage directory")
    nc.add_argument("--cluster-port", type=int, help="join a cluster of hubs on this route port")
    nc.add_argument("--routes", default="", help="comma-separated nats-route:// URLs of the other hubs")
    nc.add_argument(
        "--leaf-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name or IP address the edges dial the leaf port at (repeatable or comma-separated): the "
        "hub's leaf certificate is valid for these, localhost, 127.0.0.1 and --host unless 0.0.0.0",
    )
    nc.add_argument("--ca-cert", help="your own CA certificate (PEM) for the leaf link, instead of a new one")
    nc.add_argument("--ca-key", help="its private key (unencrypted PEM); both are copied into <out>/tls/")
    nc.add_argument(
        "--leaf-tls-dir",
        help="where the hub reads <out>/tls/hub/ at run time (default: that directory; /etc/nats-tls on Kubernetes)",
    )
    nc.add_argument(
        "--plain-leaf",
        action="store_true",
        help="no TLS on the leaf port: passwords and traffic cross the network in clear (a lab only)",
    )
    nc.add_argument(
        "--client-tls",
        action="store_true",
        help="TLS on the client port too (workers, console, provisioning; they then need --nats-ca "
        "<out>/tls/hub/ca.pem): a certificate of the same CA in <out>/tls/hub/client.pem; off: plain, for a "
        "client port reachable only inside the cloud's private network",
    )
    nc.add_argument(
        "--client-host",
        action="append",
        default=[],
        metavar="NAME",
        help="with --client-tls: a DNS name or IP address the cloud's processes dial the client port at "
        "(repeatable or comma-separated; e.g. the Kubernetes service name): the certificate is valid for these, "
        "localhost, 127.0.0.1 and --host unless 0.0.0.0",
    )

    wk = cli.add_command(
        sub,
        "worker",
        "serve LLM or ASR requests from the edges",
        examples=[
            "xiaozhi-cloud worker --role llm --nats nats://hub:4222 --credential cloud.json "
            "--openai-url http://vllm:8000/v1 --model qwen-7b"
        ],
    )
    wk.add_argument("--role", choices=["llm", "asr"], required=True, help="what this worker serves")
    wk.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    wk.add_argument("--nats", help="hub URL (default: nats.url, nats://127.0.0.1:4222)")
    wk.add_argument("--credential", help="credential file from nats-config (credentials/cloud.json)")
    wk.add_argument("--nats-ca", metavar="FILE", help=NATS_CA_HELP)
    wk.add_argument("--openai-url", help="OpenAI-compatible base URL (vLLM), e.g. http://127.0.0.1:8000/v1")
    wk.add_argument("--model", help="model name served there (default: llm.model, qwen-7b)")
    wk.add_argument("--id", help="worker id (default: role-host-pid)")
    wk.add_argument("--http-port", type=int, help="port of /metrics, /health, /ready (default 9400; 0: any)")

    rt = cli.add_command(
        sub,
        "routing",
        "the fleet's routing config in the hub's KV bucket",
        examples=[
            "xiaozhi-cloud routing push routing.yaml --nats nats://hub:4222 --credential cloud.json",
            "xiaozhi-cloud routing show",
        ],
    )
    rsub = rt.add_subparsers(dest="action", required=True, metavar="ACTION")
    push = cli.add_command(
        rsub,
        "push",
        "validate a routing config, then publish it: every edge applies it at once",
        examples=["xiaozhi-cloud routing push routing.yaml --nats nats://hub:4222 --credential credentials/cloud.json"],
    )
    push.add_argument("file", help="the routing YAML file")
    _hub_flags(push)
    show = cli.add_command(
        rsub,
        "show",
        "print the routing config the edges follow, with its revision",
        examples=["xiaozhi-cloud routing show --nats nats://hub:4222 --timeout 3"],
    )
    _hub_flags(show)
    check = cli.add_command(
        rsub, "check", "validate a routing config file (offline)", examples=["xiaozhi-cloud routing check routing.yaml"]
    )
    check.add_argument("file", help="the routing YAML file")

    co = cli.add_command(
        sub,
        "console",
        "serve the admin console (fleet, devices, routing, live view, audit)",
        examples=["xiaozhi-cloud console --nats nats://127.0.0.1:4222 --credential cloud.json --insecure-cookies"],
    )
    co.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    co.add_argument("--db", help="SQLAlchemy URL (default: console.db, sqlite:///xiaozhi-console.db)")
    co.add_argument("--host", help="listen address (default: console.host, 127.0.0.1)")
    co.add_argument("--port", type=int, help="listen port; 0: any (default: console.port, 8090)")
    co.add_argument("--nats", help="hub URL: heartbeats in, routing configs out")
    co.add_argument("--credential", help="credential file from nats-config (credentials/cloud.json)")
    co.add_argument("--nats-ca", metavar="FILE", help=NATS_CA_HELP)
    co.add_argument(
        "--insecure-cookies",
        action="store_true",
        help="session cookies without the Secure flag: plain-HTTP try-outs on loopback only",
    )

    example = "XIAOZHI_CONSOLE_PASSWORD='...' xiaozhi-cloud console-admin --username admin"
    ad = cli.add_command(
        sub,
        "console-admin",
        "create a console admin (password from XIAOZHI_CONSOLE_PASSWORD or a prompt)",
        examples=[example],
    )
    ad.add_argument("--username", required=True, help="the admin's login")
    ad.add_argument(
        "--db",
        default=os.environ.get("XIAOZHI_CLOUD__CONSOLE__DB", "sqlite:///xiaozhi-console.db"),
        help="the console's SQLAlchemy URL (default: XIAOZHI_CLOUD__CONSOLE__DB, as the console reads it)",
    )

    bk = cli.add_command(
        sub,
        "buckets",
        "create the routing, L2 cache and revoked-device KV buckets (idempotent)",
        examples=["xiaozhi-cloud buckets --nats nats://hub:4222 --credential cloud.json"],
    )
    _hub_flags(bk)
    bk.add_argument("--cache-ttl-s", type=float, default=7 * 24 * 3600, help="how long L2 cache entries live")
    return p


def _nats_config(args: argparse.Namespace) -> int:
    out = Path(args.out)
    creds_dir = out / "credentials"
    edges = [e.strip() for e in args.edges.split(",") if e.strip()]
    bad = [e for e in edges if s.safe_token(e) != e]
    if not edges or bad:
        raise cli.CliError(f"edge ids must be non-empty [A-Za-z0-9_-] names: {bad or args.edges!r}", cli.EXIT_USAGE)

    def credential(user: str, role: str) -> Credential:
        path = creds_dir / f"{user}.json"
        if path.is_file():
            return load_credential(path)  # kept: re-running must not lock out deployed edges
        cred = new_credential(user, role)
        save_credential(cred, path)
        return cred

    cloud = credential("cloud", "cloud")
    edge_creds = [credential(e, "edge") for e in edges]
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    # With --client-tls a plain leaf port still has a CA and the hub's client-port certificate.
    certless = [] if args.client_tls else ["--ca-cert", "--ca-key", "--leaf-tls-dir"]
    if args.plain_leaf and (
        args.leaf_host or (not args.client_tls and (args.ca_cert or args.ca_key or args.leaf_tls_dir))
    ):
        raise cli.CliError(
            f"--plain-leaf has no leaf certificates: drop {'/'.join([*certless, '--leaf-host'])}", cli.EXIT_USAGE
        )
    if args.client_host and not args.client_tls:
        raise cli.CliError("--client-host names the client port's certificate: add --client-tls", cli.EXIT_USAGE)
    tls = None if args.plain_leaf else _leaf_tls(args, out, edges)
    client_tls = _client_tls(args, out) if args.client_tls else None
    text = cloud_config(
        server_name=args.server_name,
        edges=edge_creds,
        clients=[cloud],
        tls=tls,
        client_tls=client_tls,
        host=args.host,
        port=args.port,
        leaf_port=args.leaf_port,
        http_port=args.http_port or None,
        store_dir=args.store_dir,
        cluster_port=args.cluster_port,
        routes=routes,
    )
    out.mkdir(parents=True, exist_ok=True)
    conf = out / "cloud.conf"
    conf.write_text(text, encoding="utf-8")
    conf.chmod(0o600)
    print(f"wrote {conf} ({len(edge_creds)} edge users) and credentials in {creds_dir}/")
    print(f"give each edge its credentials/<edge>.json; workers and the console use {creds_dir / 'cloud.json'}")
    if client_tls is not None:
        ca = LeafPki(out / "tls").hub_dir / "ca.pem"
        print(f"the client port requires TLS: workers, the console and provisioning need a copy of {ca} (--nats-ca)")
    if tls is None:
        print(f"WARNING: {PLAIN_LEAF_WARNING}")
    return 0


def _leaf_hosts(args: argparse.Namespace, given_hosts: list[str] | None = None) -> list[str]:
    """The names the hub's leaf (or client-port) certificate is valid for: --leaf-host (``given_hosts``), the
    defaults, --host if specific."""
    hosts: list[str] = []
    values = args.leaf_host if given_hosts is None else given_hosts
    given = [h.strip() for value in values for h in value.split(",") if h.strip()]
    extra = [args.host] if args.host not in ("0.0.0.0", "::", "") else []
    for host in [*given, *DEFAULT_LEAF_HOSTS, *extra]:
        if host not in hosts:
            hosts.append(host)
    return hosts


def _ensure_ca(args: argparse.Namespace, pki: LeafPki) -> None:
    """The CA (new, or --ca-cert/--ca-key copied in; an existing one is kept). Raises PkiError."""
    ca_cert = Path(args.ca_cert) if args.ca_cert else None
    ca_key = Path(args.ca_key) if args.ca_key else None
    if pki.ensure_ca(ca_cert, ca_key):
        print(
            f"{'copied' if ca_cert else 'created'} the leaf CA {pki.ca_cert} (its key {pki.ca_key} signs "
            "every edge's certificate: keep it offline, with the credentials)"
        )


def _client_tls(args: argparse.Namespace, out: Path) -> TlsFiles:
    """The hub's client-port certificate (same CA as the leaf link) for the --client-host names, under
    ``out/tls/hub/``; kept while it is good, as the leaf one."""
    pki = LeafPki(out / "tls")
    try:
        _ensure_ca(args, pki)
        if pki.ensure_hub_client(_leaf_hosts(args, args.client_host)):
            where = pki.hub_dir / "client.pem"
            print(f"issued the hub's client-port certificate {where} for {', '.join(pki.hub_hosts('client'))}")
    except PkiError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    return pki.hub_client_files(args.leaf_tls_dir)


def _leaf_tls(args: argparse.Namespace, out: Path, edges: list[str]) -> TlsFiles:
    """The CA, the hub's leaf certificate and the edges' client certificates under ``out/tls``; what exists is
    kept (a certificate is re-issued only when missing, expiring, from another CA or short of a name)."""
    pki = LeafPki(out / "tls")
    try:
        _ensure_ca(args, pki)
        hosts = _leaf_hosts(args)
        if pki.ensure_hub(hosts):
            print(f"issued the hub's leaf certificate {pki.hub_dir / 'leaf.pem'} for {', '.join(pki.hub_hosts())}")
        issued = [e for e in edges if pki.ensure_edge(e)]
    except PkiError as exc:
        raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    if issued:
        print(f"issued leaf client certificates in {pki.root / 'edges'}/ for {', '.join(issued)}")
    return pki.hub_files(args.leaf_tls_dir)


async def _nc(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The hub, or one line saying why not within ``--timeout`` (nats-py alone would dial it forever)."""
    import nats.errors

    from shared.nats.connect import connect_once, nats_tls

    tls = nats_tls(args.nats, args.nats_ca or "")  # a CA file that cannot be used: one line, exit 2
    user = password = None
    if args.credential:
        try:
            cred = load_credential(Path(args.credential))
        except ValueError as exc:
            raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
        user, password = cred.user, cred.password
    try:
        return await connect_once(args.nats, "xiaozhi-cloud cli", args.timeout, user=user, password=password, tls=tls)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        why = str(exc) or type(exc).__name__
        if isinstance(exc, nats.errors.NoServersError):
            why = "unreachable (connection refused or no route)"
        elif isinstance(exc, TimeoutError):
            why = f"no answer within {args.timeout:g} s"
        raise cli.CliError(f"hub {args.nats}: {why}") from exc


async def _buckets(args: argparse.Namespace) -> int:
    from nats.js.api import KeyValueConfig, StorageType

    cache_ttl_s = args.cache_ttl_s
    nc = await _nc(args)
    try:
        js = nc.jetstream(domain=s.JS_DOMAIN)
        await js.create_key_value(KeyValueConfig(bucket=s.ROUTING_BUCKET, history=10, storage=StorageType.FILE))
        for bucket in s.CACHE_BUCKETS.values():
            await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket, ttl=cache_ttl_s, history=1, max_value_size=512 * 1024, storage=StorageType.FILE
                )
            )
        await revoked.open_bucket(js, create=True)  # the console writes it, every edge watches it
        print(f"buckets ready: {s.ROUTING_BUCKET}, {', '.join(s.CACHE_BUCKETS.values())}, {s.REVOKED_BUCKET}")
        return 0
    finally:
        await nc.close()


async def _routing(args: argparse.Namespace) -> int:
    import nats.js.errors
    from nats.js.api import KeyValueConfig, StorageType

    if args.action == "push":  # refused here, before the hub or any edge sees it
        text = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8")
        parse_routing(text, args.file)
    nc = await _nc(args)
    try:
        js = nc.jetstream(domain=s.JS_DOMAIN)
        if args.action == "show":
            try:
                kv = await js.key_value(s.ROUTING_BUCKET)
                entry = await kv.get(s.ROUTING_KEY)
            except (nats.js.errors.BucketNotFoundError, nats.js.errors.KeyNotFoundError):
                print("no routing config in the hub: edges use their local routing.yaml or the defaults")
                return 0
            print(f"# revision {entry.revision}")
            print((entry.value or b"").decode("utf-8"), end="")
            return 0
        kv = await js.create_key_value(KeyValueConfig(bucket=s.ROUTING_BUCKET, history=10, storage=StorageType.FILE))
        revision = await kv.put(s.ROUTING_KEY, text.encode("utf-8"))
        print(f"routing config {args.file} published as revision {revision}: every edge applies it now")
        return 0
    finally:
        await nc.close()


def _console(args: argparse.Namespace) -> int:
    console: dict[str, str] = {}
    for key in ("db", "host", "port"):
        if getattr(args, key) is not None:
            console[key] = str(getattr(args, key))
    if args.insecure_cookies:
        console["cookie_secure"] = "false"
    overrides = {"console": console, **client_overrides(args.nats, args.credential, args.log_level, args.nats_ca)}
    cfg = load_settings(CloudConfig, args.config, overrides, prefix=ENV_PREFIX)
    if cfg.nats.url:
        cfg.nats.tls()  # a CA file that cannot be used: one line at start, not a retry loop in the background
    from cloud.console.serve import serve
    from shared.logs import setup_logging

    setup_logging(cfg.log)
    return serve(cfg)


async def _hub_command(args: argparse.Namespace) -> int:
    """``buckets`` and ``routing push/show``; a nats error after connecting is one line too."""
    import nats.errors

    try:
        return await (_buckets(args) if args.command == "buckets" else _routing(args))
    except nats.errors.Error as exc:
        raise cli.CliError(f"hub {args.nats}: {exc or type(exc).__name__}") from exc


def _worker(args: argparse.Namespace) -> int:
    overrides = {
        "worker": {"role": args.role},
        **client_overrides(args.nats, args.credential, args.log_level, args.nats_ca),
    }
    if args.openai_url:
        overrides.setdefault("llm", {})["base_url"] = args.openai_url
    if args.model:
        overrides.setdefault("llm", {})["model"] = args.model
    if args.id:
        overrides["worker"]["id"] = args.id
    if args.http_port is not None:
        overrides["worker"]["http_port"] = str(args.http_port)
    cfg = load_settings(CloudConfig, args.config, overrides, prefix=ENV_PREFIX)
    cfg.nats.tls()  # a CA file that cannot be used: one line at start (exit 2), before models load
    from cloud.workers.runner import run_worker
    from shared.logs import setup_logging

    setup_logging(cfg.log)

    try:
        asyncio.run(run_worker(cfg))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - a clear last line for the operator
        logging.getLogger("cloud.worker").error("worker failed: %r", exc)
        return 1
    return 0


def _main(args: argparse.Namespace) -> int:
    if args.command == "nats-config":
        return _nats_config(args)
    if args.command in ("buckets", "routing"):
        try:
            if args.command == "routing" and args.action == "check":
                load_routing_file(args.file)
                print(f"{args.file}: valid")
                return 0
            return asyncio.run(_hub_command(args))
        except RoutingConfigError as exc:
            raise cli.CliError(str(exc), cli.EXIT_USAGE) from exc
    if args.command == "console-admin":
        from cloud.console.serve import create_admin

        return create_admin(args.db, args.username, None)
    if args.command == "console":
        return _console(args)
    return _worker(args)


def main(argv: list[str] | None = None) -> int:
    return cli.run(PROG, lambda: _main(cli.parse(_parser(), argv)))


if __name__ == "__main__":
    raise SystemExit(main())
