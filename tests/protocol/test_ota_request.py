"""The OTA request parser both OTA servers use (docs/protocol.md §1.2, §1.3)."""

from __future__ import annotations

import pytest

from shared.protocol.ota import OtaRequestError, parse_ota_request

HEADERS = {"Device-Id": "D8:3B:DA:12:34:56", "User-Agent": "bread-compact-wifi/2.4.2"}


def test_headers_and_body_as_the_firmware_sends_them() -> None:
    body = b'{"mac_address":"d8:3b:da:12:34:56","application":{"version":"2.4.3"},"board":{"type":"esp-box"}}'
    ota = parse_ota_request(HEADERS, body)
    assert (ota.device_id, ota.firmware, ota.board) == ("d8:3b:da:12:34:56", "2.4.3", "esp-box")


def test_the_user_agent_and_mac_address_fill_in() -> None:
    ota = parse_ota_request({"User-Agent": "bread-compact-wifi/2.4.2"}, b'{"mac_address": "AA:BB:CC:00:00:01"}')
    assert (ota.device_id, ota.firmware, ota.board) == ("aa:bb:cc:00:00:01", "2.4.2", "bread-compact-wifi")
    assert parse_ota_request({"Device-Id": "x"}, b"").firmware == ""


@pytest.mark.parametrize(
    ("headers", "body", "needle"),
    [
        (HEADERS, b"{not json", "not valid JSON"),
        (HEADERS, b"\xff\xfe", "not valid JSON"),
        (HEADERS, b"[1, 2]", "JSON object"),
        ({}, b"{}", "missing Device-Id"),
        ({"Device-Id": "a" * 65}, b"{}", "longer than 64"),
    ],
)
def test_bad_requests_say_why(headers: dict[str, str], body: bytes, needle: str) -> None:
    with pytest.raises(OtaRequestError, match=needle):
        parse_ota_request(headers, body)
