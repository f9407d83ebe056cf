"""nats-py connections with timeouts for an edge, and a link state others can read.

nats-py's defaults notice a dead server after about four minutes (ping every 120 s, two missed)
and give up reconnecting after 60 tries; an edge must notice in seconds and never give up, so
cloud routes fail over quickly and come back by themselves.

TLS to the hub's client port (``nats-config --client-tls``): :func:`nats_tls` makes the context from the
hub's CA file (``nats.ca_file``, ``--nats-ca``), and a connection given one dials TLS only: nats-py would
otherwise go on in clear with a server whose INFO does not ask for TLS (a downgrade, the password sent
plain), so such a server is refused before the CONNECT (:class:`TlsOnlyClient`). The host name checked is
the URL's (nats-py's ``tls_hostname`` overrides it where the name dialled differs from the certificate's).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client

log = logging.getLogger("shared.nats")

__all__ = ["LinkState", "TlsOnlyClient", "connect", "connect_once", "connect_until_up", "dial", "nats_tls"]


def nats_tls(url: str, ca_file: str = "") -> ssl.SSLContext | None:
    """The SSL context for the hub at ``url``: only ``ca_file``'s CAs when it is set, the system's for a
    ``tls://`` URL without one, None (plain) otherwise. A CA file that cannot be used raises
    ``shared.tls.TlsError`` naming it."""
    from shared.tls import TlsError, client_context

    if not ca_file and not url.startswith("tls://"):
        return None
    try:
        ctx = client_context(ca_file or None)
    except ssl.SSLError as exc:  # PEM markers, but not certificates OpenSSL can load
        raise TlsError(f"TLS CA certificate file {ca_file}: cannot load it ({exc.reason or exc})") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class TlsOnlyClient(Client):
    """A nats-py client that refuses a server not offering TLS, before it sends CONNECT (the password)."""

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        if initial_connection and not info.get("tls_required"):
            raise nats.errors.Error(
                "nats: the server does not offer TLS but a CA is configured (--nats-ca / nats.ca_file): refused "
                "(the hub needs `nats-config --client-tls`, or this is not the hub)"
            )
        await super()._process_info(info, initial_connection)


async def dial(tls: ssl.SSLContext | None = None, **options: Any) -> Client:
    """``nats.connect(**options)``; with ``tls`` over TLS only (:class:`TlsOnlyClient`)."""
    if tls is None:
        return await nats.connect(**options)
    nc = TlsOnlyClient()
    await nc.connect(tls=tls, **options)
    return nc


@dataclass
class LinkState:
    """Whether this client is connected to its server, with counts for metrics and heartbeats."""

    connected: bool = False
    disconnects: int = 0
    reconnects: int = 0
    listeners: list[Callable[[bool], None]] = field(default_factory=list)

    def _set(self, up: bool) -> None:
        self.connected = up
        for listener in list(self.listeners):
            try:
                listener(up)
            except Exception:  # noqa: BLE001 - a listener must not break the NATS client
                log.exception("link-state listener failed")


async def connect(
    url: str,
    name: str,
    state: LinkState | None = None,
    ping_interval_s: float = 5.0,
    connect_timeout_s: float = 2.0,
    allow_reconnect: bool = True,
    user: str | None = None,
    password: str | None = None,
    inbox_prefix: str | None = None,
    max_reconnect_attempts: int = -1,
    tls: ssl.SSLContext | None = None,
) -> Client:
    """Connect (raising if the first attempt fails); afterwards reconnect forever every second.

    ``tls``: from :func:`nats_tls`; the connection is then TLS or nothing.

    ``inbox_prefix``: where this client's reply inboxes live (an edge's ``_INBOX.<edge>``, the only
    inboxes the hub delivers to its leaf link); nats-py's ``_INBOX`` when None.

    ``max_reconnect_attempts``: -1 (forever) suits a service. Note that nats-py dials a server that
    refuses or times out again and again *inside the first connect* until this many attempts failed,
    even with ``allow_reconnect=False``; a one-shot command passes a small number (see ``connect_once``).
    """
    link = state if state is not None else LinkState()
    up = False  # before the first connection the caller reports the failure; a warning per attempt is noise

    async def disconnected() -> None:
        link.disconnects += 1
        log.warning("nats %s: disconnected from %s", name, url)
        link._set(False)

    async def reconnected() -> None:
        link.reconnects += 1
        log.info("nats %s: reconnected to %s", name, url)
        link._set(True)

    tls_problems: set[str] = set()

    async def error(exc: Exception) -> None:
        # A TLS refusal (the hub's certificate, a hub without TLS) does not go away by retrying: a service
        # (which nats-py keeps dialling inside the first connect) says it once; a one-shot caller reports it.
        tls_problem = isinstance(exc, ssl.SSLError) or "does not offer TLS" in str(exc)
        new = allow_reconnect and tls_problem and str(exc) not in tls_problems
        if tls_problem:
            tls_problems.add(str(exc))
        log.log(logging.WARNING if up or new else logging.DEBUG, "nats %s: %s", name, exc)

    nc = await dial(
        tls,
        servers=[url],
        name=name,
        connect_timeout=connect_timeout_s,
        ping_interval=ping_interval_s,
        max_outstanding_pings=2,
        allow_reconnect=allow_reconnect,
        reconnect_time_wait=1.0,
        max_reconnect_attempts=max_reconnect_attempts,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
        user=user,
        password=password,
        **({"inbox_prefix": inbox_prefix} if inbox_prefix else {}),
    )
    up = True
    link._set(True)
    return nc


async def connect_once(
    url: str,
    name: str,
    timeout_s: float,
    user: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> Client:
    """One connection for a command that does one thing and exits: it fails within ``timeout_s``
    (TimeoutError, OSError (``ssl.SSLCertVerificationError`` included) or a nats error) instead of
    dialling an unreachable hub forever."""
    import asyncio

    return await asyncio.wait_for(
        connect(
            url,
            name,
            user=user,
            password=password,
            connect_timeout_s=timeout_s,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            tls=tls,
        ),
        timeout_s,
    )


async def connect_until_up(url: str, name: str, state: LinkState, credential: str = "", ca_file: str = "") -> Client:
    """Dial until the server answers, backing off to 10 s; for a service that keeps serving from
    what it has meanwhile (the console, provisioning, an edge). ``credential``: a file from
    ``xiaozhi-cloud nats-config`` (empty: no auth); ``ca_file``: the hub's CA (:func:`nats_tls`; its
    caller checks it at start, a bad one raises here)."""
    import asyncio
    from pathlib import Path

    from shared.nats.configs import load_credential

    user = password = None
    if credential:
        cred = await asyncio.to_thread(load_credential, Path(credential))
        user, password = cred.user, cred.password
    tls = nats_tls(url, ca_file)
    delay = 0.5
    while True:
        try:
            return await connect(url, name, state, user=user, password=password, tls=tls)
        except Exception as exc:  # noqa: BLE001 - the caller serves without NATS meanwhile
            log.warning("nats %s: %s unreachable (%s): retrying in %.0f s", name, url, exc, delay)
            await asyncio.sleep(delay)
            delay = min(10.0, delay * 2)
