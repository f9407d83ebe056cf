"""Who a connection is, from headers or the query string, and whether it may connect."""

from __future__ import annotations

from websockets.datastructures import Headers
from websockets.http11 import Request

from edge_node.auth.handshake import DeviceAuth, device_info
from edge_node.config import load_config


def _request(path: str, headers: dict[str, str]) -> Request:
    return Request(path, Headers(headers))


def test_headers_win_over_query() -> None:
    info = device_info(
        _request("/xiaozhi/v1/?device-id=q", {"Device-Id": "d8:3b:da:12:34:56", "Protocol-Version": "3"}), "r"
    )
    assert info.device_id == "d8:3b:da:12:34:56" and info.protocol_version == 3


def test_query_string_fallback() -> None:
    info = device_info(_request("/xiaozhi/v1/?device-id=aa:bb&client-id=c1&protocol-version=2", {}), "r")
    assert (info.device_id, info.client_id, info.protocol_version) == ("aa:bb", "c1", 2)


def test_bad_protocol_version_defaults_to_1() -> None:
    assert device_info(_request("/", {"Protocol-Version": "x"}), "r").protocol_version == 1
    assert device_info(_request("/", {"Protocol-Version": "9"}), "r").protocol_version == 1


def test_auth_off_accepts_empty_bearer_token() -> None:
    auth = DeviceAuth(load_config(environ={}).auth)
    assert auth.authorised(_request("/", {"Authorization": "Bearer "}))
    assert auth.authorised(_request("/", {}))


def test_auth_on_checks_the_token() -> None:
    cfg = load_config(environ={}, overrides={"auth": {"enabled": True, "tokens": ["s3cret"]}})
    auth = DeviceAuth(cfg.auth)
    assert auth.authorised(_request("/", {"Authorization": "Bearer s3cret"}))
    assert auth.authorised(_request("/?authorization=Bearer%20s3cret", {}))
    assert not auth.authorised(_request("/", {"Authorization": "Bearer nope"}))
    assert not auth.authorised(_request("/", {}))
