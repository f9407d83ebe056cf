"""Admin login for the console: argon2 password hashes, opaque session cookies, CSRF tokens and a
login rate limit.

- Passwords: argon2id through ``argon2-cffi`` (its default, memory-hard parameters); a hash made
  with older parameters is upgraded on the next successful login.
- Sessions: the cookie holds 32 random bytes; the database holds only their SHA-256, so a copy of
  the database does not log anyone in. Cookie flags: HttpOnly, SameSite=Strict, Secure (unless
  ``console.cookie_secure`` is off for plain-HTTP try-outs on loopback).
- CSRF: every state-changing request must carry the session's token in ``X-CSRF-Token``; pages
  get it from ``GET /api/session``. SameSite=Strict already stops cross-site posts in current
  browsers; the token covers older ones and same-site attackers.
- Rate limit: failed logins are counted per client address and per user name in a sliding
  window; past the limit every attempt (even a right password) gets 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import defaultdict, deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["LoginLimiter", "hash_password", "new_token", "token_hash", "verify_password"]

_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing of both failures alike.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
MIN_PASSWORD = 12


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"passwords need at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> tuple[bool, str | None]:
    """(matches, a rehash to store if the parameters are outdated)."""
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if stored is None:
        return False, None
    return True, _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class LoginLimiter:
    """At most ``attempts`` failures per ``window_s`` for one address, and for one user name."""

    def __init__(self, attempts: int, window_s: float) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def retry_after(self, address: str, username: str, now: float | None = None) -> float:
        """Seconds until another attempt is allowed (0: allowed now)."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        for key in (f"ip:{address}", f"user:{username.lower()}"):
            q = self._recent(key, now)
            if len(q) >= self.attempts:
                wait = max(wait, q[0] + self.window_s - now)
        return wait

    def failed(self, address: str, username: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in (f"ip:{address}", f"user:{username.lower()}"):
            self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # a spray of names: keep memory bounded
            for key in [k for k, q in self._failures.items() if not self._recent(k, now)]:
                del self._failures[key]

    def succeeded(self, username: str) -> None:
        self._failures.pop(f"user:{username.lower()}", None)
