"""One typed configuration for ``xiaozhi-provision``: defaults < ``--config provision.yaml`` <
``XIAOZHI_PROVISION__SECTION__KEY`` environment < flags (the same rules as the edge's)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.nats.settings import NatsClientConfig
from shared.settings import LogConfig, Settings
from shared.tls import pair_problem

ENV_PREFIX = "XIAOZHI_PROVISION__"


class ProvisionConfig(Settings):
    host: str = "0.0.0.0"
    port: int = Field(8004, ge=0, le=65535)
    # What devices are told to poll and download from: this service's address as the devices reach it.
    public_url: str = "http://127.0.0.1:8004"
    # PEM certificate (chain) and private key: both set, the OTA, activation and firmware endpoints are
    # served over HTTPS (public_url should then say https://). Empty: plain HTTP.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # The console's database: devices, their activation codes and assigned edges live there.
    db: str = "sqlite:///xiaozhi-console.db"
    # The device-token key ring (a directory: Ed25519 signing keys and keyset.json, created by
    # `xiaozhi-provision enroll-edge`, rotated by `rotate-key`). Only this host holds it; edges get the
    # public keyset.json. Re-read when keyset.json changes, so a rotation needs no restart.
    token_keys_dir: str = "device-token-keys"
    token_ttl_s: float = Field(30 * 24 * 3600.0, gt=0)  # renewed at every boot's OTA
    # A device waiting for activation gets a short token, so it can talk once bound even if it does
    # not ask OTA again; 0: no token until bound.
    pending_token_ttl_s: float = Field(900.0, ge=0)
    activation_required: bool = True  # unknown devices get a 6-digit code; False: served at once
    console_url: str = "the fleet console"  # shown and spoken with the activation code
    # Site -> client address ranges (CIDR): a device is assigned an edge of the site it calls from.
    sites: dict[str, list[str]] = Field(default_factory=dict)
    firmware_dir: str = ""  # a directory with firmware.yaml and the images it lists; empty: no updates
    stale_after_s: float = Field(20.0, gt=0)  # an edge without a heartbeat for this long takes no devices
    timezone_offset_min: int | None = None  # None: this host's
    nats: NatsClientConfig = Field(default_factory=NatsClientConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @model_validator(mode="after")
    def _tls_pair(self) -> ProvisionConfig:
        problem = pair_problem(self.tls_cert_file, self.tls_key_file, "tls_cert_file", "tls_key_file")
        if problem:
            raise ValueError(problem)
        return self
