"""Who a connection is and whether it may talk to this edge, from its upgrade request.

Firmware sends ``Device-Id``, ``Client-Id``, ``Protocol-Version`` and ``Authorization`` as headers;
browser clients cannot set headers, so the query string is the fallback for each. A LAN node
accepts any device (an empty bearer token is fine); with ``auth.enabled`` a device needs one of the
configured tokens, and with ``auth.device_tokens`` the token the provisioning service signed for its
Device-Id (``shared/tokens.py``).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request

from edge_node.config import AuthConfig
from shared import tokens

__all__ = ["DeviceAuth", "DeviceInfo", "device_info"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeviceInfo:
    """Who is on the other end, from the upgrade request's headers (or query string)."""

    device_id: str
    client_id: str
    protocol_version: int
    remote: str


def _query(request: Request) -> dict[str, list[str]]:
    return {k.lower(): v for k, v in parse_qs(urlsplit(request.path).query).items()}


def device_info(request: Request, remote: str) -> DeviceInfo:
    """Headers first (firmware), then the query string (browser clients cannot set headers)."""
    query = {k: v[0] for k, v in _query(request).items() if v}
    headers = request.headers

    def pick(name: str) -> str:
        return (headers.get(name) or query.get(name.lower()) or "").strip()

    try:
        version = int(pick("Protocol-Version") or 1)
    except ValueError:
        version = 1
    return DeviceInfo(
        device_id=pick("Device-Id") or f"anon-{remote}",
        client_id=pick("Client-Id"),
        protocol_version=version if version in (1, 2, 3) else 1,
        remote=remote,
    )


class DeviceAuth:
    """The bearer-token check of every handshake (``auth`` section)."""

    def __init__(self, cfg: AuthConfig) -> None:
        self.cfg = cfg
        # The fleet's device-token key, read once: every handshake is checked against it.
        self._token_key = tokens.load_key(Path(cfg.token_key_file)) if cfg.device_tokens else None

    def authorised(self, request: Request) -> bool:
        auth = self.cfg
        if not auth.enabled and not auth.device_tokens:
            return True  # LAN default: an empty or missing bearer token is fine
        query = _query(request)
        raw = request.headers.get("Authorization") or (query.get("authorization") or [""])[0]
        token = raw.split(" ", 1)[1] if raw.lower().startswith("bearer ") else raw
        if auth.enabled and any(hmac.compare_digest(token.encode(), t.encode()) for t in auth.tokens if t):
            return True
        if self._token_key is None:
            return False
        device_id = (request.headers.get("Device-Id") or (query.get("device-id") or [""])[0]).strip().lower()
        try:
            tokens.verify(self._token_key, token, device_id)
        except tokens.TokenError as exc:
            log.warning("refused %s: %s", device_id or "?", exc, extra={"device_id": device_id or "-"})
            return False
        return True
