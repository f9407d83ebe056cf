"""TLS for the fleet's listeners (edge WebSocket and HTTP, provisioning, console) and its clients.

Every server takes a PEM certificate (chain) file and a PEM private key file; both empty means plain
ws/http as before. The files are read and checked when the process starts, before anything slow
(the edge's models), so a wrong path or a key that does not match its certificate stops the process
with a message naming the file instead of failing the first device's handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from shared.settings import ConfigError

__all__ = ["TlsError", "client_context", "pair_problem", "server_context"]


class TlsError(ConfigError):
    """A certificate or key file that cannot be used; the message names the file and why."""


def pair_problem(cert_file: str, key_file: str, cert_key: str, key_key: str) -> str | None:
    """Why a certificate/key setting is unusable as a pair (one set without the other), else None.

    For the config validators: a certificate without its key (or the reverse) is almost always a
    typo, and silently serving plain ws/http then would tell devices ``ws://`` behind the admin's back.
    """
    if bool(cert_file) == bool(key_file):
        return None
    missing, given = (key_key, cert_key) if cert_file else (cert_key, key_key)
    return f"{given} is set but {missing} is not: set both for TLS, or neither for plain ws/http"


def _read_pem(path: str, what: str, marker: str) -> None:
    """Fail early with the file's name when it is missing, unreadable or not the PEM it should be."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise TlsError(f"TLS {what} file {path}: cannot read it ({exc.strerror or exc})") from exc
    if marker not in text:
        raise TlsError(f"TLS {what} file {path}: not a PEM {what} (no '{marker}' line)")


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext | None:
    """A server-side SSL context for this certificate (chain) and key, or None when both are empty."""
    if not cert_file and not key_file:
        return None
    problem = pair_problem(cert_file, key_file, "tls_cert_file", "tls_key_file")
    if problem:
        raise TlsError(problem)
    _read_pem(cert_file, "certificate", "-----BEGIN CERTIFICATE-----")
    _read_pem(key_file, "private key", "PRIVATE KEY-----")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # what ESP-IDF's mbedTLS speaks; nothing older
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise TlsError(f"TLS certificate {cert_file} and key {key_file} cannot be used together: {exc}") from exc
    return ctx


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only ``ca_file`` (a private fleet CA), as the
    firmware checks the server against the CA bundle built into it."""
    if ca_file:
        _read_pem(ca_file, "CA certificate", "-----BEGIN CERTIFICATE-----")
    return ssl.create_default_context(cafile=ca_file or None)
