"""The OTA check the firmware makes at boot (docs/protocol.md §1.2-§1.3), as a request to send.

Used by the fleet run's simulated devices and the tests: one place that says which headers and
body fields unmodified firmware sends, so a server change that breaks them shows up everywhere.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ota_request"]


def ota_request(
    device_id: str, client_id: str, version: str = "2.4.2", board: str = "bread-compact-wifi"
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of ``POST /xiaozhi/ota/`` from a board running firmware ``version``."""
    headers = {
        "Activation-Version": "1",
        "Device-Id": device_id,
        "Client-Id": client_id,
        "User-Agent": f"{board}/{version}",
        "Accept-Language": "en-US",
        "Content-Type": "application/json",
    }
    body: dict[str, Any] = {
        "version": 2,
        "language": "en-US",
        "mac_address": device_id,
        "uuid": client_id,
        "chip_model_name": "esp32s3",
        "application": {"name": "xiaozhi", "version": version},
        "board": {"type": board, "name": board, "rssi": -50},
    }
    return headers, json.dumps(body).encode()
