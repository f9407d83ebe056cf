"""Device tokens: Ed25519 JWTs the provisioning host signs and edges verify (shared/tokens.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import tokens

DEVICE = "aa:bb:cc:00:00:01"


@pytest.fixture
def ring(tmp_path: Path) -> tokens.KeyRing:
    return tokens.KeyRing.create(tmp_path / "ring", now=1000)


def _edge_keys(ring: tokens.KeyRing) -> tokens.KeySet:
    """What an edge holds: the key set file, read back from disk."""
    return tokens.KeySet.load(ring.keyset_path)


def test_a_token_is_bound_to_its_device_and_expires(ring: tokens.KeyRing) -> None:
    token = ring.issue("AA:bb:CC:00:00:01", ttl_s=60, now=1000)
    keys = _edge_keys(ring)
    claims = keys.verify(token, DEVICE, now=1059)
    assert claims.device_id == DEVICE and claims.expiry == 1060 and claims.site == ""
    with pytest.raises(tokens.TokenError, match="expired"):
        keys.verify(token, DEVICE, now=1061)
    with pytest.raises(tokens.TokenError, match="another device"):
        keys.verify(token, "aa:bb:cc:00:00:02", now=1000)
    with pytest.raises(tokens.TokenError, match="another device"):
        keys.verify(token, "", now=1000)
    for bad in ("", "v1.1060.abc", "a.b.c", "x" * 300):
        with pytest.raises(tokens.TokenError, match="malformed"):
            keys.verify(bad, DEVICE, now=1000)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_changed_claim_or_another_key_breaks_the_signature(ring: tokens.KeyRing, tmp_path: Path) -> None:
    token = ring.issue(DEVICE, ttl_s=60, now=1000)
    keys = _edge_keys(ring)
    head, _, sig = token.split(".")
    stretched = f"{head}.{_b64({'sub': DEVICE, 'iat': 1000, 'exp': 9_999_999_999})}.{sig}"
    with pytest.raises(tokens.TokenError, match="signature"):
        keys.verify(stretched, DEVICE, now=1000)
    # A ring somebody else made, with a key id this fleet's set does not know...
    other = tokens.KeyRing.create(tmp_path / "other", now=1000)
    with pytest.raises(tokens.TokenError, match="unknown key"):
        keys.verify(other.issue(DEVICE, 60, now=1000), DEVICE, now=1000)
    # ...or claiming this fleet's key id: the signature does not verify.
    kid = next(iter(keys.keys))
    forged = jwt.encode(
        {"sub": DEVICE, "iat": 1000, "exp": 2000}, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
    )
    with pytest.raises(tokens.TokenError, match="signature"):
        keys.verify(forged, DEVICE, now=1000)


def test_only_eddsa_is_accepted(ring: tokens.KeyRing) -> None:
    """The classic JWT confusions: an HMAC token keyed with the (public) key, and an unsigned one."""
    keys = _edge_keys(ring)
    kid, public = next(iter(keys.keys.items()))
    claims = {"sub": DEVICE, "iat": 1000, "exp": 2000}
    hmac_token = jwt.encode(claims, bytes.fromhex(public.public), algorithm="HS256", headers={"kid": kid})
    unsigned = f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(claims)}."
    for bad in (hmac_token, unsigned):
        with pytest.raises(tokens.TokenError, match="not accepted"):
            keys.verify(bad, DEVICE, now=1000)


def test_a_token_for_another_site_is_refused(ring: tokens.KeyRing) -> None:
    token = ring.issue(DEVICE, 60, site="site-a", now=1000)
    keys = _edge_keys(ring)
    assert keys.verify(token, DEVICE, site="site-a", now=1000).site == "site-a"
    with pytest.raises(tokens.TokenError, match="site 'site-a'.*'site-b'"):
        keys.verify(token, DEVICE, site="site-b", now=1000)
    assert keys.verify(token, DEVICE, site="", now=1000)  # an edge without a site compares nothing
    unbound = ring.issue(DEVICE, 60, now=1000)  # assignment knew no site
    assert keys.verify(unbound, DEVICE, site="site-b", now=1000)


def test_the_edge_holds_no_signing_key(ring: tokens.KeyRing) -> None:
    """The key set file has public keys only: nothing in it can sign a token."""
    text = ring.keyset_path.read_text()
    assert "PRIVATE" not in text
    assert ring.keyset_path.stat().st_mode & 0o777 == 0o644
    pems = list(ring.dir.glob("*.pem"))
    assert len(pems) == 1 and pems[0].stat().st_mode & 0o777 == 0o600
    data = json.loads(text)
    assert set(data["keys"][0]) == {"kid", "public", "signing_from", "accept_until"}
    assert len(bytes.fromhex(data["keys"][0]["public"])) == 32


def test_rotation_keeps_old_tokens_valid_until_they_expire(ring: tokens.KeyRing) -> None:
    old_token = ring.issue(DEVICE, ttl_s=100, now=1000)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new = ring.rotate(token_ttl_s=100, publish_window_s=50, now=1010)
    assert new.signing_from == 1060
    keys = _edge_keys(ring)
    assert keys.keys[old_kid].accept_until == 1160  # the new key's start + the token lifetime
    # Within the publish window the old key still signs (edges may not have the new set yet).
    assert jwt.get_unverified_header(ring.issue(DEVICE, 100, now=1050))["kid"] == old_kid
    late_old = ring.issue(DEVICE, 100, now=1059)  # the last token under the old key: expires at 1159
    fresh = ring.issue(DEVICE, 100, now=1061)
    assert jwt.get_unverified_header(fresh)["kid"] == new.kid
    assert keys.verify(old_token, DEVICE, now=1090)  # both keys accepted meanwhile
    assert keys.verify(late_old, DEVICE, now=1158)
    assert keys.verify(fresh, DEVICE, now=1158)
    with pytest.raises(tokens.TokenError, match="retired"):
        keys.verify(late_old, DEVICE, now=1161)
    assert ring.prune(now=1150) == [] and ring.prune(now=1161) == [old_kid]
    assert not (ring.dir / f"{old_kid}.pem").exists()
    assert set(_edge_keys(ring).keys) == {new.kid}
    # The ring reloads from disk the way the provisioning service re-reads it.
    again = tokens.KeyRing.load(ring.dir)
    assert _edge_keys(again).verify(again.issue(DEVICE, 100, now=1200), DEVICE, now=1200).kid == new.kid


def test_a_compromised_key_is_refused_at_once(ring: tokens.KeyRing) -> None:
    stolen = ring.issue(DEVICE, ttl_s=1000, now=1000)
    new = ring.rotate(token_ttl_s=1000, publish_window_s=0, now=1010, compromised=True)
    keys = _edge_keys(ring)
    with pytest.raises(tokens.TokenError, match="retired"):
        keys.verify(stolen, DEVICE, now=1011)
    assert keys.verify(ring.issue(DEVICE, 1000, now=1011), DEVICE, now=1011).kid == new.kid


def test_bad_key_files_are_named(tmp_path: Path, ring: tokens.KeyRing) -> None:
    with pytest.raises(tokens.TokenError, match="already holds"):
        tokens.KeyRing.create(ring.dir)  # never overwrite the fleet's keys
    with pytest.raises(tokens.TokenError, match="cannot read"):
        tokens.KeySet.load(tmp_path / "missing.json")
    for text in ("{}", '{"keys": []}', '{"keys": [{"kid": "k", "public": "zz", "signing_from": 0}]}', "not json"):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(tokens.TokenError, match="bad.json"):
            tokens.KeySet.load(tmp_path / "bad.json")
    (ring.dir / f"{next(iter(ring.keyset.keys))}.pem").write_text("garbage")
    with pytest.raises(tokens.TokenError, match="signing key"):
        tokens.KeyRing.load(ring.dir)
