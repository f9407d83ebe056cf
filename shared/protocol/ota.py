"""The OTA request a device sends at boot (docs/protocol.md §1.2, §1.3), parsed once for every
server that answers it: an edge's own OTA endpoint and the fleet's provisioning service."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OtaRequest", "OtaRequestError", "parse_ota_request"]

MAX_DEVICE_ID = 64


class OtaRequestError(ValueError):
    """Why the request cannot be answered (HTTP 400): the message is sent back as is."""


@dataclass(frozen=True)
class OtaRequest:
    device_id: str  # lower case; the Device-Id header, else the body's mac_address
    firmware: str  # application.version, else the User-Agent's "<board>/<version>"
    board: str  # board.type, else the User-Agent's board
    body: dict[str, Any] = field(default_factory=dict)


def parse_ota_request(headers: Mapping[str, str], raw: bytes) -> OtaRequest:
    body: dict[str, Any] = {}
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError as exc:  # also UnicodeDecodeError, and integer literals over 4300 digits
            raise OtaRequestError(f"request body is not valid JSON: {exc}") from exc
        except RecursionError:  # found by fuzzing: "[[[..." escaped as a 500
            raise OtaRequestError("request body is not valid JSON: nested too deeply") from None
        if not isinstance(parsed, dict):
            raise OtaRequestError("request body must be a JSON object")
        body = parsed
    device_id = (headers.get("Device-Id") or "").strip().lower()
    if not device_id and isinstance(body.get("mac_address"), str):
        device_id = body["mac_address"].strip().lower()
    if not device_id:
        raise OtaRequestError("missing Device-Id header")
    if len(device_id) > MAX_DEVICE_ID:
        raise OtaRequestError(f"Device-Id longer than {MAX_DEVICE_ID} characters")
    agent_board, _, agent_version = (headers.get("User-Agent") or "").partition("/")
    app = body.get("application") if isinstance(body.get("application"), dict) else {}
    firmware = app.get("version") if isinstance(app.get("version"), str) else agent_version
    board_info = body.get("board") if isinstance(body.get("board"), dict) else {}
    board = board_info.get("type") if isinstance(board_info.get("type"), str) else agent_board
    return OtaRequest(device_id, firmware.strip(), board.strip(), body)
