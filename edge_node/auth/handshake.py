"""Who a connection is and whether it may talk to this edge, from its upgrade request.

Firmware sends ``Device-Id``, ``Client-Id``, ``Protocol-Version`` and ``Authorization`` as headers;
browser clients cannot set headers, so the query string is the fallback for each. A LAN node
accepts any device (an empty bearer token is fine); with ``auth.enabled`` a device needs one of the
configured tokens, and with ``auth.device_tokens`` the token the provisioning service signed for its
Device-Id and this edge's site, checked with the fleet's public key set (``shared/tokens.py``).
"""

from __future__ import annotations

import asyncio
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

    def __init__(self, cfg: AuthConfig, site: str = "") -> None:
        self.cfg = cfg
        self.site = site  # a token issued for another site is refused
        # The fleet's public key set, read at start (a bad file stops the edge there) and re-read when
        # it changes: `xiaozhi-provision rotate-key` adds keys, Ansible pushes the file.
        self._keys_path = Path(cfg.token_keys_file) if cfg.device_tokens else None
        self._keys = tokens.KeySet.load(self._keys_path) if self._keys_path is not None else None
        self._keys_mtime = self._mtime()

    def _mtime(self) -> float:
        try:
            return self._keys_path.stat().st_mtime if self._keys_path is not None else 0.0
        except OSError:
            return 0.0

    async def follow_key_set(self, every_s: float = 5.0) -> None:
        """Re-read the key set file when it changes; a file that does not parse leaves the old set in force."""
        if self._keys_path is None:
            return
        while True:
            await asyncio.sleep(every_s)
            mtime = await asyncio.to_thread(self._mtime)
            if mtime == self._keys_mtime:
                continue
            self._keys_mtime = mtime
            try:
                self._keys = await asyncio.to_thread(tokens.KeySet.load, self._keys_path)
            except tokens.TokenError as exc:
                log.error("device-token key set not reloaded, the old one stays in force: %s", exc)
                continue
            log.info("device-token key set reloaded: keys %s", ", ".join(sorted(self._keys.keys)))

    def authorised(self, request: Request) -> bool:
        auth = self.cfg
        if not auth.enabled and not auth.device_tokens:
            return True  # LAN default: an empty or missing bearer token is fine
        query = _query(request)
        raw = request.headers.get("Authorization") or (query.get("authorization") or [""])[0]
        token = raw.split(" ", 1)[1] if raw.lower().startswith("bearer ") else raw
        if auth.enabled and any(hmac.compare_digest(token.encode(), t.encode()) for t in auth.tokens if t):
            return True
        if self._keys is None:
            return False
        device_id = (request.headers.get("Device-Id") or (query.get("device-id") or [""])[0]).strip().lower()
        try:
            self._keys.verify(token, device_id, self.site)
        except tokens.TokenError as exc:
            log.warning("refused %s: %s", device_id or "?", exc, extra={"device_id": device_id or "-"})
            return False
        return True
