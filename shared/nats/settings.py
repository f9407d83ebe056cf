"""How a cloud-side process (workers, console, provisioning) reaches the hub: one section, one set of flags."""

from __future__ import annotations

from shared.settings import Settings


class NatsClientConfig(Settings):
    url: str = "nats://127.0.0.1:4222"
    # A credential file written by `xiaozhi-cloud nats-config` (role cloud); empty: no auth.
    credential: str = ""


def client_overrides(nats: str | None, credential: str | None, log_level: str | None) -> dict[str, dict[str, str]]:
    """The command-line flags every cloud-side process shares (``--nats``, ``--credential``,
    ``--log-level``) as settings overrides: flags beat the file and the environment."""
    overrides: dict[str, dict[str, str]] = {}
    if nats:
        overrides.setdefault("nats", {})["url"] = nats
    if credential:
        overrides.setdefault("nats", {})["credential"] = credential
    if log_level:
        overrides["log"] = {"level": log_level}
    return overrides
