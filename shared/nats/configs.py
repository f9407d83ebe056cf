"""nats-server configs for the two sides of the fleet, and the credentials that join them.

The cloud runs the hub: client port (cloud workers, the console), JetStream (the routing and cache
KV buckets), a leaf-node port that edges dial out to (edges need no inbound port), and one leaf
user per edge, so one edge's credential can be revoked without touching the others. Passwords are
stored in the hub's config as bcrypt hashes; each edge keeps its own plain password in its leaf
config, which only it can read. An edge runs its own nats-server bound to loopback, as a leaf of the
hub: edge processes talk to it, and it forwards what the cloud serves.

The leaf link runs over mutual TLS by default (``tls``, :class:`~shared.nats.pki.TlsFiles`): the hub's
leaf port presents a certificate of the fleet's leaf CA and requires one from every edge
(``verify: true``) before the edge's password is even sent; the edge trusts only that CA for the hub.
A plain link needs an explicit ``tls=None``, and the generated config then says so in a comment.

The client port (cloud workers, the console, provisioning) is plain unless ``client_tls`` is given
(``nats-config --client-tls``): then a top-level ``tls`` block makes the hub require TLS from every
client, with a certificate of the same CA; no client certificates (``verify`` is off), the cloud's
processes keep authenticating with their passwords, now inside TLS.

Each edge user carries subject permissions (:func:`edge_permissions`): its leaf link may send only
cloud requests, its own heartbeat and the few KV operations it needs, and receive only its own reply
inboxes, so one edge cannot read or spoof another's traffic. nats-server refuses ``permissions`` in
``leafnodes { authorization { users } }``, so edge users sit in the main ``authorization`` block,
restricted to leaf connections; a leaf link authenticated there gets that user's permissions.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.nats import subjects as s
from shared.nats.pki import TlsFiles
from shared.nats.subjects import JS_DOMAIN

__all__ = [
    "CLIENT_TLS_TIMEOUT_S",
    "LEAF_TLS_TIMEOUT_S",
    "PLAIN_LEAF_WARNING",
    "Credential",
    "TlsFiles",
    "cloud_config",
    "edge_config",
    "edge_permissions",
    "hash_password",
    "load_credential",
    "new_credential",
    "save_credential",
]


# Seconds the hub allows an edge for the TLS handshake (the default, 2, is short for a slow uplink).
LEAF_TLS_TIMEOUT_S = 3
# Seconds the hub allows a cloud client for the TLS handshake (inside the cloud's network: the default is enough).
CLIENT_TLS_TIMEOUT_S = 2
PLAIN_LEAF_WARNING = (
    "PLAIN leaf link (--plain-leaf / tls=None): no TLS. The edges' passwords and all leaf traffic "
    "(escalated speech included) cross the network in clear."
)


@dataclass(frozen=True)
class Credential:
    """A user of the hub: an edge (leaf connection) or a cloud client (workers, console)."""

    user: str
    password: str
    role: str = "edge"  # edge | cloud

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def new_credential(user: str, role: str = "edge") -> Credential:
    # URL-safe, so it can sit in a nats-leaf:// URL without escaping.
    return Credential(user, secrets.token_urlsafe(24), role)


def save_credential(cred: Credential, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cred.to_json(), encoding="utf-8")
    path.chmod(0o600)


def load_credential(path: Path) -> Credential:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Credential(str(data["user"]), str(data["password"]), str(data.get("role", "edge")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read credential {path}: {exc}") from exc


def hash_password(password: str) -> str:
    """bcrypt, in the ``$2a$`` form nats-server recognises as a hash."""
    import bcrypt

    digest = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=11)).decode("ascii")
    return "$2a$" + digest[4:]  # $2b$ and $2a$ are the same algorithm for passwords under 72 bytes


def _q(value: str) -> str:
    """A nats-server config string (JSON quoting is accepted; no $VARIABLE expansion inside quotes)."""
    return json.dumps(value)


def _kv_read(bucket: str) -> list[str]:
    """The JetStream API subjects that open a KV bucket and read one key (direct get or message get)."""
    api, stream = f"$JS.{JS_DOMAIN}.API", f"KV_{bucket}"
    return [
        f"{api}.STREAM.INFO.{stream}",
        f"{api}.DIRECT.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}.>",
        f"{api}.STREAM.MSG.GET.{stream}",
    ]


def edge_permissions(edge: str) -> dict[str, list[str]]:
    """What edge ``edge``'s leaf link may send into the hub (publish) and receive from it (subscribe).

    Publish: LLM and ASR requests and barge-in cancels (turn ids are random and only the edge and
    the worker see them), its own heartbeat, and through the hub's JetStream domain: read and watch
    the routing and revoked-device buckets (cloud-written), read and write the shared cache buckets
    and watch the answer bucket (the semantic index's entries).
    Nothing else of the JetStream API: an edge that could create a stream could capture other edges'
    subjects in it and read them back, and one that could delete one could wipe the fleet's routing;
    the cloud creates every bucket (``xiaozhi-cloud buckets``, the console). Subscribe: only
    ``_INBOX.<edge>.>``, where its replies, streamed chunks and KV watch deliveries arrive (the edge
    connects with that inbox prefix). Checked on the subject the leaf sends (before the hub maps
    ``$JS.<domain>.API`` to ``$JS.API``).
    """
    if not edge or s.safe_token(edge) != edge:
        raise ValueError(f"an edge user must be one subject token ([A-Za-z0-9_-]), not {edge!r}")
    api = f"$JS.{JS_DOMAIN}.API"
    publish = [s.CLOUD_LLM, s.CLOUD_ASR, f"{s.CANCEL_PREFIX}.*", s.heartbeat_subject(edge)]
    # Watched: an ordered consumer, flow control. The answer bucket's ``sem.>`` keys are the fleet's
    # semantic index (edge_node/cloud_link/semantic_share.py).
    for bucket in (s.ROUTING_BUCKET, s.REVOKED_BUCKET, s.CACHE_BUCKETS["answer"]):
        stream = f"KV_{bucket}"
        publish += [
            *_kv_read(bucket),
            f"{api}.CONSUMER.CREATE.{stream}",
            f"{api}.CONSUMER.CREATE.{stream}.>",
            f"{api}.CONSUMER.INFO.{stream}.*",
            f"$JS.FC.{stream}.>",
        ]
    for bucket in s.CACHE_BUCKETS.values():  # a put goes through the domain's API prefix (kv_cache)
        publish += [*_kv_read(bucket), f"{api}.$KV.{bucket}.>"]
    return {"publish": publish, "subscribe": [f"{s.inbox_prefix(edge)}.>"]}


def _users(creds: list[Credential], hashed: bool, indent: int, edges: bool = False) -> str:
    """Config rows for ``creds``; with ``edges`` each is an edge's leaf user, with its permissions."""
    rows = []
    pad = " " * indent
    for c in creds:
        password = hash_password(c.password) if hashed else c.password
        if not edges:
            rows.append(pad + f"{{ user: {_q(c.user)}, password: {_q(password)} }}")
            continue
        perms = edge_permissions(c.user)
        rows += [
            pad + f"{{ user: {_q(c.user)}, password: {_q(password)}",
            pad + '  allowed_connection_types: ["LEAFNODE"]',  # the credential opens a leaf link, nothing else
            pad + "  permissions: {",
            pad + f"    publish: {{ allow: [{', '.join(_q(p) for p in perms['publish'])}] }}",
            pad + f"    subscribe: {{ allow: [{', '.join(_q(p) for p in perms['subscribe'])}] }}",
            pad + "  }",
            pad + "}",
        ]
    return "\n".join(rows)


def _server_head(
    what: str, server_name: str, host: str, port: int, http_port: int | None, plain: bool = False
) -> list[str]:
    """The lines every generated server config starts with: who wrote it, its name and ports."""
    lines = [f"# Generated by {what}"]
    if plain:
        lines.append(f"# {PLAIN_LEAF_WARNING}")
    lines += [f"server_name: {_q(server_name)}", f"listen: {_q(f'{host}:{port}')}"]
    if http_port is not None:
        lines.append(f"http: {_q(f'{host}:{http_port}')}")
    return lines


def _tls_block(tls: TlsFiles, indent: int, verify: bool, timeout: float | None = None) -> list[str]:
    pad = " " * indent
    lines = [
        pad + "tls {",
        pad + f"  cert_file: {_q(tls.cert_file)}",
        pad + f"  key_file: {_q(tls.key_file)}",
        pad + f"  ca_file: {_q(tls.ca_file)}",
    ]
    if verify:
        lines.append(pad + "  verify: true")
    if timeout is not None:
        lines.append(pad + f"  timeout: {timeout:g}")
    return [*lines, pad + "}"]


def cloud_config(
    *,
    server_name: str,
    edges: list[Credential],
    clients: list[Credential],
    tls: TlsFiles | None,
    client_tls: TlsFiles | None = None,
    host: str = "0.0.0.0",
    port: int = 4222,
    leaf_port: int = 7422,
    http_port: int | None = 8222,
    store_dir: str = "/var/lib/xiaozhi/nats",
    cluster_name: str | None = None,
    cluster_port: int | None = None,
    routes: list[str] | None = None,
    hashed: bool = True,
) -> str:
    """The hub: JetStream, clients with passwords, leaf connections from the edges.

    ``tls``: the hub's leaf-port certificate and key and the CA the edges' client certificates must
    chain to (mutual TLS); ``None`` for a plain leaf port, which must be asked for. ``client_tls``: the
    hub's client-port certificate and key (and the CA), making TLS required on the client port, without
    client certificates; ``None`` (the default) keeps that port plain, for a private network. With
    ``cluster_port`` and ``routes`` it is one member of a cluster (three for production); the same
    credentials go to every member.
    """
    if not clients:
        raise ValueError("the hub needs at least one cloud client credential (workers, console)")
    lines = _server_head(
        "`xiaozhi-cloud nats-config`: the cloud NATS hub.", server_name, host, port, http_port, plain=tls is None
    )
    if client_tls is not None:
        # The client port (workers, console, provisioning) speaks TLS only; clients still log in with passwords.
        lines += _tls_block(client_tls, 0, verify=False, timeout=CLIENT_TLS_TIMEOUT_S)
    lines += [
        "max_payload: 1MB",
        "jetstream {",
        # A named domain: edges (leaves without JetStream of their own) reach the hub's KV through
        # $JS.<domain>.API over the leaf link; plain $JS.API is not forwarded across it.
        f"  domain: {_q(JS_DOMAIN)}",
        f"  store_dir: {_q(store_dir)}",
        "  max_memory_store: 256MB",
        "  max_file_store: 8GB",
        "}",
        # Edge users are here, not under leafnodes: only here can a user carry permissions.
        "authorization {",
        "  users: [",
        _users(clients, hashed, 4),
        *([_users(edges, hashed, 4, edges=True)] if edges else []),
        "  ]",
        "}",
        "leafnodes {",
        f"  listen: {_q(f'{host}:{leaf_port}')}",
        # Behind a load balancer the hubs' own addresses are unreachable for edges: do not gossip them.
        "  no_advertise: true",
    ]
    if tls is not None:
        # Mutual TLS: an edge's leaf must present a certificate of the fleet's leaf CA before its password.
        lines += _tls_block(tls, 2, verify=True, timeout=LEAF_TLS_TIMEOUT_S)
    lines += [
        # No users of its own: a leaf link authenticates against the users above.
        "  authorization {",
        "    timeout: 2",
        "  }",
        "}",
    ]
    if cluster_port is not None:
        lines += [
            "cluster {",
            f"  name: {_q(cluster_name or 'xiaozhi')}",
            f"  listen: {_q(f'{host}:{cluster_port}')}",
            f"  routes: [{', '.join(_q(r) for r in routes or [])}]",
            "}",
        ]
    return "\n".join(lines) + "\n"


def edge_config(
    *,
    server_name: str,
    cloud_leaf_urls: list[str],
    credential: Credential | None,
    tls: TlsFiles | None,
    port: int = 4222,
    host: str = "127.0.0.1",
    http_port: int | None = None,
    reconnect_s: int = 1,
) -> str:
    """An edge's own nats-server: loopback clients, one outbound leaf link to the hub.

    ``tls``: this edge's client certificate and key, and the CA the hub's certificate must chain to
    (nats-server then dials TLS whatever the URL's scheme, and checks the URL's host name against
    the hub's certificate); ``None`` for a plain link, which must be asked for. ``reconnect_s`` is how
    often a lost link is re-dialled; short, because while it is down every cloud route falls back to
    the edge's own models.
    """
    if not cloud_leaf_urls:
        raise ValueError("an edge leaf needs the hub's leaf URL (nats-leaf://host:7422)")
    urls = []
    for url in cloud_leaf_urls:
        if not url.startswith(("nats-leaf://", "ws://", "wss://", "tls://")):
            raise ValueError(f"leaf URL must start with nats-leaf:// (or ws://, wss://, tls://): {url!r}")
        if credential is not None:
            scheme, rest = url.split("://", 1)
            url = f"{scheme}://{credential.user}:{credential.password}@{rest}"
        urls.append(url)
    lines = _server_head(
        "`xiaozhi-edge nats-config`: this edge's NATS server, a leaf of the cloud hub.",
        server_name,
        host,
        port,
        http_port,
        plain=tls is None,
    )
    remote = f"urls: [{', '.join(_q(u) for u in urls)}]"
    lines += [
        "leafnodes {",
        f'  reconnect: "{int(reconnect_s)}s"',
        "  remotes: [",
        *(
            [f"    {{ {remote} }}"]
            if tls is None
            else ["    {", f"      {remote}", *_tls_block(tls, 6, verify=False), "    }"]
        ),
        "  ]",
        "}",
    ]
    return "\n".join(lines) + "\n"
