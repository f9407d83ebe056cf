"""``xiaozhi-cloud``: the cloud tier's command line.

    xiaozhi-cloud nats-config --edges edge-1,edge-2 --out deploy/nats [--host 0.0.0.0] [--port 4222]
                              [--leaf-port 7422] [--cluster-port 6222 --routes nats-route://c2:6222,...]
    xiaozhi-cloud worker --role llm|asr [--nats URL] [--config cloud.yaml] [--openai-url URL] [--model NAME]
    xiaozhi-cloud routing push routing.yaml [--nats URL]      # validate, then publish to every edge
    xiaozhi-cloud routing show [--nats URL]
    xiaozhi-cloud buckets [--nats URL]                         # create the KV buckets (idempotent)

``nats-config`` writes the hub's config (passwords as bcrypt hashes) and one credential file per
edge and for the cloud's own clients; run it again with more edges and the existing credentials are
kept, so only new edges need a visit. Exit status: 0, 1 when the action failed, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from cloud.config import ENV_PREFIX, CloudConfig, client_overrides
from shared.config import ConfigError, load_settings
from shared.nats import revoked
from shared.nats import subjects as s
from shared.nats.configs import Credential, cloud_config, load_credential, new_credential, save_credential
from shared.routing_config import RoutingConfigError, load_routing_file, parse_routing

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xiaozhi-cloud", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True)

    nc = sub.add_parser("nats-config", help="write the hub's nats-server config and per-edge credentials")
    nc.add_argument("--edges", required=True, help="comma-separated edge ids (their leaf-node users)")
    nc.add_argument("--out", required=True, help="directory for cloud.conf and credentials/")
    nc.add_argument("--server-name", default="xiaozhi-cloud-1")
    nc.add_argument("--host", default="0.0.0.0")
    nc.add_argument("--port", type=int, default=4222)
    nc.add_argument("--leaf-port", type=int, default=7422)
    nc.add_argument("--http-port", type=int, default=8222, help="monitoring port (0: none)")
    nc.add_argument("--store-dir", default="/var/lib/xiaozhi/nats")
    nc.add_argument("--cluster-port", type=int, help="join a cluster of hubs on this route port")
    nc.add_argument("--routes", default="", help="comma-separated nats-route:// URLs of the other hubs")

    wk = sub.add_parser("worker", help="serve LLM or ASR requests from the edges")
    wk.add_argument("--role", choices=["llm", "asr"], required=True)
    wk.add_argument("--config", help="YAML file (defaults < file < XIAOZHI_CLOUD__* env < flags)")
    wk.add_argument("--nats", help="hub URL, e.g. nats://127.0.0.1:4222")
    wk.add_argument("--credential", help="credential file from nats-config (credentials/cloud.json)")
    wk.add_argument("--openai-url", help="OpenAI-compatible base URL (vLLM), e.g. http://127.0.0.1:8000/v1")
    wk.add_argument("--model", help="model name served there")
    wk.add_argument("--id", help="worker id (default: role-host-pid)")
    wk.add_argument("--http-port", type=int, help="port of /metrics, /health, /ready (default 9400; 0: any)")
    wk.add_argument("--log-level", help="log level (default INFO, or log.level from the config)")

    rt = sub.add_parser("routing", help="the fleet's routing config in the hub's KV bucket")
    rt.add_argument("action", choices=["push", "show", "check"])
    rt.add_argument("file", nargs="?", help="routing.yaml (push, check)")
    rt.add_argument("--nats", default="nats://127.0.0.1:4222")
    rt.add_argument("--credential")

    co = sub.add_parser("console", help="serve the admin console (fleet, devices, routing, live view, audit)")
    co.add_argument("--config", help="YAML file (defaults < file < XIAOZHI_CLOUD__* env < flags)")
    co.add_argument("--db", help="SQLAlchemy URL (default sqlite:///xiaozhi-console.db)")
    co.add_argument("--host", help="listen address (default 127.0.0.1)")
    co.add_argument("--port", type=int, help="listen port (default 8090; 0: any)")
    co.add_argument("--nats", help="hub URL: heartbeats in, routing configs out")
    co.add_argument("--credential", help="credential file from nats-config (credentials/cloud.json)")
    co.add_argument("--insecure-cookies", action="store_true",
                    help="session cookies without the Secure flag: plain-HTTP try-outs on loopback only")
    co.add_argument("--log-level", help="log level (default INFO)")

    ad = sub.add_parser("console-admin",
                        help="create a console admin (password from XIAOZHI_CONSOLE_PASSWORD or a prompt)")
    ad.add_argument("--username", required=True)
    ad.add_argument("--db", default=os.environ.get("XIAOZHI_CLOUD__CONSOLE__DB", "sqlite:///xiaozhi-console.db"),
                    help="the console's SQLAlchemy URL (default: XIAOZHI_CLOUD__CONSOLE__DB, as the console reads it)")

    bk = sub.add_parser("buckets", help="create the routing, L2 cache and revoked-device KV buckets (idempotent)")
    bk.add_argument("--nats", default="nats://127.0.0.1:4222")
    bk.add_argument("--credential")
    bk.add_argument("--cache-ttl-s", type=float, default=7 * 24 * 3600)
    return p


def _nats_config(args: argparse.Namespace) -> int:
    out = Path(args.out)
    creds_dir = out / "credentials"
    edges = [e.strip() for e in args.edges.split(",") if e.strip()]
    bad = [e for e in edges if s.safe_token(e) != e]
    if not edges or bad:
        print(f"xiaozhi-cloud: edge ids must be non-empty [A-Za-z0-9_-] names: {bad or args.edges!r}", file=sys.stderr)
        return 2

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
    text = cloud_config(
        server_name=args.server_name,
        edges=edge_creds,
        clients=[cloud],
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
    return 0


async def _nc(url: str, credential: str | None):  # type: ignore[no-untyped-def]
    from shared.nats.connect import connect

    user = password = None
    if credential:
        cred = load_credential(Path(credential))
        user, password = cred.user, cred.password
    return await connect(url, "xiaozhi-cloud cli", user=user, password=password, allow_reconnect=False)


async def _buckets(url: str, credential: str | None, cache_ttl_s: float) -> None:
    from nats.js.api import KeyValueConfig, StorageType

    nc = await _nc(url, credential)
    try:
        js = nc.jetstream(domain=s.JS_DOMAIN)
        await js.create_key_value(KeyValueConfig(bucket=s.ROUTING_BUCKET, history=10, storage=StorageType.FILE))
        for bucket in s.CACHE_BUCKETS.values():
            await js.create_key_value(KeyValueConfig(bucket=bucket, ttl=cache_ttl_s, history=1,
                                                     max_value_size=512 * 1024, storage=StorageType.FILE))  # fmt: skip
        await revoked.open_bucket(js, create=True)  # the console writes it, every edge watches it
        print(f"buckets ready: {s.ROUTING_BUCKET}, {', '.join(s.CACHE_BUCKETS.values())}, {s.REVOKED_BUCKET}")
    finally:
        await nc.close()


async def _routing(args: argparse.Namespace) -> int:
    import nats.js.errors
    from nats.js.api import KeyValueConfig, StorageType

    nc = await _nc(args.nats, args.credential)
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
        text = await asyncio.to_thread(Path(args.file).read_text, encoding="utf-8")
        parse_routing(text, args.file)  # refused here, before any edge sees it
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
    overrides = {"console": console, **client_overrides(args.nats, args.credential, args.log_level)}
    try:
        cfg = load_settings(CloudConfig, args.config, overrides, prefix=ENV_PREFIX)
    except ConfigError as exc:
        print(f"xiaozhi-cloud: {exc}", file=sys.stderr)
        return 2
    from cloud.console.serve import serve
    from shared.logs import setup_logging

    setup_logging(cfg.log)
    return serve(cfg)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "nats-config":
        return _nats_config(args)
    if args.command == "buckets":
        asyncio.run(_buckets(args.nats, args.credential, args.cache_ttl_s))
        return 0
    if args.command == "routing":
        if args.action in ("push", "check") and not args.file:
            print("xiaozhi-cloud: routing push/check needs a file", file=sys.stderr)
            return 2
        try:
            if args.action == "check":
                load_routing_file(args.file)
                print(f"{args.file}: valid")
                return 0
            return asyncio.run(_routing(args))
        except RoutingConfigError as exc:
            print(f"xiaozhi-cloud: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"xiaozhi-cloud: {exc}", file=sys.stderr)
            return 1
    if args.command == "console-admin":
        from cloud.console.serve import create_admin

        return create_admin(args.db, args.username, None)
    if args.command == "console":
        return _console(args)
    # worker
    overrides = {"worker": {"role": args.role}, **client_overrides(args.nats, args.credential, args.log_level)}
    if args.openai_url:
        overrides.setdefault("llm", {})["base_url"] = args.openai_url
    if args.model:
        overrides.setdefault("llm", {})["model"] = args.model
    if args.id:
        overrides["worker"]["id"] = args.id
    if args.http_port is not None:
        overrides["worker"]["http_port"] = str(args.http_port)
    try:
        cfg = load_settings(CloudConfig, args.config, overrides, prefix=ENV_PREFIX)
    except ConfigError as exc:
        print(f"xiaozhi-cloud: {exc}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    raise SystemExit(main())
