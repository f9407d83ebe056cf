"""Device tokens: what the provisioning service hands a device and every edge verifies.

``v1.<expiry>.<signature>`` where the signature is HMAC-SHA256 over ``v1|<device id>|<expiry>``
with the fleet's token key (a secret file the provisioning service and every edge share). The
device id is not in the token: the edge takes it from the ``Device-Id`` header, so a token copied
to another device is useless. Expiry is Unix seconds. The firmware stores the token from its OTA
answer (docs/protocol.md §1.4) and sends it as ``Authorization: Bearer <token>``; devices run OTA at
every boot, so a token lives for ``ttl`` and is renewed by the next boot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from pathlib import Path

__all__ = ["TokenError", "generate_key", "issue", "load_key", "verify"]

VERSION = "v1"
MIN_KEY_BYTES = 32


class TokenError(ValueError):
    """Why a token was refused (malformed, wrong signature, expired, other device)."""


def generate_key(path: Path) -> bytes:
    """Write a new random key (hex) to ``path``, readable by its owner only; refuses to overwrite."""
    key = secrets.token_bytes(MIN_KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="ascii") as fh:
        fh.write(key.hex() + "\n")
    path.chmod(0o600)
    return key


def load_key(path: Path) -> bytes:
    text = path.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise TokenError(f"{path}: the token key must be hex") from exc
    if len(key) < MIN_KEY_BYTES:
        raise TokenError(f"{path}: the token key needs at least {MIN_KEY_BYTES} bytes")
    return key


def _sign(key: bytes, device_id: str, expiry: int) -> str:
    mac = hmac.new(key, f"{VERSION}|{device_id.lower()}|{expiry}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def issue(key: bytes, device_id: str, ttl_s: float, now: float | None = None) -> str:
    expiry = int((time.time() if now is None else now) + ttl_s)
    return f"{VERSION}.{expiry}.{_sign(key, device_id, expiry)}"


def verify(key: bytes, token: str, device_id: str, now: float | None = None) -> int:
    """The token's expiry if it is valid for ``device_id`` now; raises TokenError otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION or not parts[1].isdigit():
        raise TokenError("malformed token")
    expiry = int(parts[1])
    if not device_id or not hmac.compare_digest(parts[2], _sign(key, device_id, expiry)):
        raise TokenError("token signature does not match this device")
    if expiry < (time.time() if now is None else now):
        raise TokenError("token expired")
    return expiry
