"""Device tokens: the provisioning service signs them, every edge verifies them and cannot mint one.

A token is a JWT signed with Ed25519 (``alg: EdDSA``, PyJWT over ``cryptography``): header ``kid``
names the key; claims ``sub`` (the device id, lower case), ``iat``, ``exp`` (Unix seconds) and,
when the device was assigned to an edge of a known site, ``site``. The edge compares ``sub`` with the
``Device-Id`` header, so a token copied to another device is useless, and refuses a token issued for
another site, so a token lifted from one customer's site does not open another's edges. Devices run
OTA at every boot (docs/protocol.md §1.4), so a token lives for the provisioning service's
``token_ttl_s`` and is renewed by the next boot. A token is about 270 characters.

Two files:

- **The key ring** (provisioning host only, a directory): one private key per key id,
  ``<kid>.pem`` (PKCS#8, 0600), and ``keyset.json``.
- **The key set** (``keyset.json``): the public keys and when each is used. It is all an edge holds
  (the bundle's ``device-token-keys.json``): it verifies tokens but has nothing to sign with, so a
  stolen edge cannot impersonate the fleet's devices anywhere else.

Rotation without refusing anyone: ``rotate`` adds a key that starts signing only after a publish
window (the time to push the new key set to every edge), and gives the old key an end:
``accept_until`` = the new key's start + the token lifetime, when the last token signed by the old
key expires. Until then edges accept both; afterwards ``prune`` deletes the old key.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.files import write_atomic

__all__ = ["KEYSET_FILE", "Claims", "KeyRing", "KeySet", "PublicKey", "TokenError"]

KEYSET_FILE = "keyset.json"
ALGORITHM = "EdDSA"  # the only algorithm verify() accepts: no "none", no HMAC with a public key as secret


class TokenError(ValueError):
    """Why a token (or a key file) was refused: malformed, unknown or retired key, bad signature,
    expired, another device's, another site's."""


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    device_id: str
    expiry: int
    kid: str
    site: str = ""


@dataclass(frozen=True)
class PublicKey:
    """One key of the set: its public half and its time window."""

    kid: str
    public: str  # the raw 32-byte Ed25519 public key, hex
    signing_from: float  # when the provisioning service starts signing with it (Unix seconds)
    accept_until: float | None = None  # after this, tokens under this key are refused; None: open-ended

    def key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.public))


def _now(now: float | None) -> float:
    return time.time() if now is None else now


@dataclass
class KeySet:
    """The public keys edges verify with (``keyset.json``)."""

    keys: dict[str, PublicKey] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str, source: str = "key set") -> KeySet:
        try:
            data = json.loads(text)
            keys = [PublicKey(**k) for k in data["keys"]]
            for k in keys:
                k.key()  # a malformed public key is refused here, not at the first handshake
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError(f"{source}: not a device-token key set ({exc})") from exc
        if not keys:
            raise TokenError(f"{source}: the key set has no keys")
        return cls({k.kid: k for k in keys})

    @classmethod
    def load(cls, path: Path) -> KeySet:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokenError(f"cannot read the device-token key set {path}: {exc}") from exc
        return cls.from_json(text, str(path))

    def to_json(self) -> str:
        keys = sorted(self.keys.values(), key=lambda k: (k.signing_from, k.kid))
        return json.dumps({"keys": [asdict(k) for k in keys]}, indent=2) + "\n"

    def signer(self, now: float | None = None) -> PublicKey:
        """The key the provisioning service signs with now: the newest one whose signing has started."""
        t = _now(now)
        started = [k for k in self.keys.values() if k.signing_from <= t]
        if not started:
            raise TokenError("no device-token key has started signing yet")
        return max(started, key=lambda k: (k.signing_from, k.kid))

    def verify(self, token: str, device_id: str, site: str = "", now: float | None = None) -> Claims:
        """The token's claims if it is valid for ``device_id`` (and this edge's ``site``) now."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise TokenError(f"token algorithm {header.get('alg')!r} is not accepted")
        kid = str(header.get("kid") or "")
        key = self.keys.get(kid)
        if key is None:
            raise TokenError(f"token signed by an unknown key {kid!r}")
        t = _now(now)
        if key.accept_until is not None and t > key.accept_until:
            raise TokenError(f"token key {kid} was retired")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key(),
                algorithms=[ALGORITHM],
                options={"require": ["sub", "exp", "iat"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError as exc:
            raise TokenError("token signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from exc
        if not device_id or str(claims["sub"]) != device_id.strip().lower():
            raise TokenError("token was issued to another device")
        expiry = int(claims["exp"])
        if expiry < t:
            raise TokenError("token expired")
        token_site = str(claims.get("site") or "")
        if token_site and site and token_site != site:
            raise TokenError(f"token was issued for site {token_site!r}, this edge is in {site!r}")
        return Claims(str(claims["sub"]), expiry, kid, token_site)


def _new_kid(now: float) -> str:
    return "k" + time.strftime("%Y%m%d", time.gmtime(now)) + "-" + secrets.token_hex(3)


class KeyRing:
    """The provisioning host's signing keys (a directory): the only place a token can be made."""

    def __init__(self, directory: Path, keyset: KeySet) -> None:
        self.dir = directory
        self.keyset = keyset
        self._private: dict[str, Ed25519PrivateKey] = {}

    @property
    def keyset_path(self) -> Path:
        return self.dir / KEYSET_FILE

    @classmethod
    def load(cls, directory: Path) -> KeyRing:
        ring = cls(directory, KeySet.load(directory / KEYSET_FILE))
        ring._private_key(ring.keyset.signer(float("inf")).kid)  # the newest key's file must be there
        return ring

    @classmethod
    def create(cls, directory: Path, now: float | None = None) -> KeyRing:
        """A new ring with one key, signing at once; refuses a directory that already holds a ring."""
        if (directory / KEYSET_FILE).exists():
            raise TokenError(f"{directory} already holds a device-token key ring")
        ring = cls(directory, KeySet())
        ring._add_key(_now(now))
        return ring

    @classmethod
    def open_or_create(cls, directory: Path) -> tuple[KeyRing, bool]:
        """The ring in ``directory``, made if there is none; True when it was made."""
        if (directory / KEYSET_FILE).exists():
            return cls.load(directory), False
        return cls.create(directory), True

    def _add_key(self, signing_from: float) -> PublicKey:
        private = Ed25519PrivateKey.generate()
        kid = _new_kid(signing_from)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_atomic(self.dir / f"{kid}.pem", pem, 0o600)
        raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        key = PublicKey(kid, raw.hex(), signing_from)
        self.keyset.keys[kid] = key
        self._private[kid] = private
        self._save()
        return key

    def _save(self) -> None:
        # Public: the file an edge gets (0644); the private halves are the 0600 .pem files.
        write_atomic(self.keyset_path, self.keyset.to_json().encode("utf-8"), 0o644)

    def _private_key(self, kid: str) -> Ed25519PrivateKey:
        if kid not in self._private:
            path = self.dir / f"{kid}.pem"
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (OSError, ValueError) as exc:
                raise TokenError(f"cannot read device-token signing key {path}: {exc}") from exc
            if not isinstance(key, Ed25519PrivateKey):
                raise TokenError(f"{path} is not an Ed25519 key")
            self._private[kid] = key
        return self._private[kid]

    def rotate(
        self, token_ttl_s: float, publish_window_s: float, now: float | None = None, compromised: bool = False
    ) -> PublicKey:
        """A new key signing from ``now + publish_window_s``; every older key that has no end yet
        is accepted until the last token it can still sign expires, or, when it is ``compromised``,
        not at all from now (its devices are refused until their next boot fetches a new token)."""
        t = _now(now)
        start = t + max(0.0, publish_window_s)
        new = self._add_key(start)
        for kid, key in list(self.keyset.keys.items()):
            if kid != new.kid and (key.accept_until is None or compromised):
                end = t if compromised else start + token_ttl_s
                self.keyset.keys[kid] = PublicKey(key.kid, key.public, key.signing_from, end)
        self._save()
        return new

    def prune(self, now: float | None = None) -> list[str]:
        """Forget keys no edge accepts any more (their ``accept_until`` has passed)."""
        t = _now(now)
        gone = [k.kid for k in self.keyset.keys.values() if k.accept_until is not None and k.accept_until < t]
        for kid in gone:
            del self.keyset.keys[kid]
            self._private.pop(kid, None)
        if gone:
            self._save()
            for kid in gone:
                (self.dir / f"{kid}.pem").unlink(missing_ok=True)
        return gone

    def issue(self, device_id: str, ttl_s: float, site: str = "", now: float | None = None) -> str:
        t = _now(now)
        signer = self.keyset.signer(t)
        claims: dict[str, Any] = {"sub": device_id.strip().lower(), "iat": int(t), "exp": int(t + ttl_s)}
        if site:
            claims["site"] = site
        return jwt.encode(claims, self._private_key(signer.kid), algorithm=ALGORITHM, headers={"kid": signer.kid})
