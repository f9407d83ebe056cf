"""Start the console (``xiaozhi-cloud console``) and create admins (``xiaozhi-cloud console-admin``)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys

from cloud.config import CloudConfig

from .auth import hash_password
from .store import Store, StoreError

log = logging.getLogger("cloud.console")

__all__ = ["create_admin", "serve"]


def serve(cfg: CloudConfig) -> int:
    import uvicorn

    from shared.tls import TlsError, server_context

    from .app import create_app
    from .fleet import Fleet

    c = cfg.console
    try:  # uvicorn would load the files only once serving starts, with a traceback instead of the file's name
        tls = server_context(c.tls_cert_file, c.tls_key_file) is not None
        if cfg.nats.url:
            cfg.nats.tls()  # the hub's CA file (nats.ca_file): named now, not in a background retry loop
    except TlsError as exc:
        print(f"xiaozhi-cloud: {exc}", file=sys.stderr)
        return 2
    store = Store(c.db)
    if store.user_count() == 0:
        log.warning("no admin user yet: create one with `xiaozhi-cloud console-admin --username NAME --db %s`", c.db)
    fleet = Fleet(
        store, cfg.nats.url, cfg.nats.credential, c.stale_after_s, c.live_interval_s, nats_ca=cfg.nats.ca_file
    )
    app = create_app(c, store, fleet)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        proxy_headers=True,
        server_header=False,
        ssl_certfile=c.tls_cert_file or None,
        ssl_keyfile=c.tls_key_file or None,
    )
    server = uvicorn.Server(config)
    # The socket is bound here so that port 0 (tests) is known before serving starts.
    sock = socket.create_server((c.host, c.port), family=socket.AF_INET6 if ":" in c.host else socket.AF_INET)
    port = sock.getsockname()[1]

    async def run() -> None:
        # The key stays "http" (what harnesses parse); the URL's scheme says whether it is TLS.
        print(f"READY console http={'https' if tls else 'http'}://{c.host}:{port}", flush=True)
        await server.serve(sockets=[sock])

    try:
        asyncio.run(run())
    finally:
        store.close()
    return 0


def create_admin(db: str, username: str, password: str | None) -> int:
    """The first admin (and any later one) from the command line; the password from
    XIAOZHI_CONSOLE_PASSWORD or a prompt, never an argument (it would sit in the shell history)."""
    if password is None:
        password = os.environ.get("XIAOZHI_CONSOLE_PASSWORD")
    if password is None:
        import getpass

        password = getpass.getpass(f"password for {username}: ")
        if getpass.getpass("again: ") != password:
            print("xiaozhi-cloud: the passwords differ", file=sys.stderr)
            return 2
    try:
        hashed = hash_password(password)
        store = Store(db)
        try:
            store.add_user(username, hashed)
            store.audit("cli", "user.create", username)
        finally:
            store.close()
    except (ValueError, StoreError) as exc:
        print(f"xiaozhi-cloud: {exc}", file=sys.stderr)
        return 2
    print(f"admin {username!r} created in {db}")
    return 0
