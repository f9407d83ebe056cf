"""How a cloud-side process (workers, console, provisioning) reaches the hub: one section, one set of flags."""

from __future__ import annotations

import ssl

from shared.settings import Settings

# The help of ``--nats-ca`` wherever a cloud-side command takes ``--credential``.
NATS_CA_HELP = (
    "PEM CA the hub's client-port certificate chains to (tls/hub/ca.pem from nats-config --client-tls): "
    "connect over TLS, checking the hub's certificate and host name; none: plain unless the URL is tls://"
)


class NatsClientConfig(Settings):
    url: str = "nats://127.0.0.1:4222"
    # A credential file written by `xiaozhi-cloud nats-config` (role cloud); empty: no auth.
    credential: str = ""
    # A PEM CA the hub's client-port certificate must chain to (`nats-config --client-tls`: tls/hub/ca.pem).
    # Set (or a tls:// URL, then with the system's CAs): TLS, the hub's certificate and host name checked.
    ca_file: str = ""

    def tls(self) -> ssl.SSLContext | None:
        """The SSL context for the hub, None for a plain connection; a CA file that cannot be used raises
        ``shared.tls.TlsError`` naming it (call it at start, before anything slow)."""
        from shared.nats.connect import nats_tls

        return nats_tls(self.url, self.ca_file)


def client_overrides(
    nats: str | None, credential: str | None, log_level: str | None, nats_ca: str | None = None
) -> dict[str, dict[str, str]]:
    """The command-line flags every cloud-side process shares (``--nats``, ``--credential``, ``--nats-ca``,
    ``--log-level``) as settings overrides: flags beat the file and the environment."""
    overrides: dict[str, dict[str, str]] = {}
    if nats:
        overrides.setdefault("nats", {})["url"] = nats
    if credential:
        overrides.setdefault("nats", {})["credential"] = credential
    if nats_ca:
        overrides.setdefault("nats", {})["ca_file"] = nats_ca
    if log_level:
        overrides["log"] = {"level": log_level}
    return overrides
