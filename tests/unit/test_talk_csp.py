"""The /talk page's Content-Security-Policy (edge_node/talk/): connect-src is the node's WebSocket only."""

from __future__ import annotations

import pytest

from edge_node.talk import FILES, STATIC, csp_for


@pytest.mark.parametrize(
    ("ws_url", "connect"),
    [
        ("ws://192.168.1.5:8000/xiaozhi/v1/", "connect-src ws://192.168.1.5:8000/xiaozhi/v1/;"),
        ("wss://edge.example:8000/xiaozhi/v1/", "connect-src wss://edge.example:8000/xiaozhi/v1/;"),
        ("ws://[::1]:8000/xiaozhi/v1/", "connect-src ws://[::1]:8000/xiaozhi/v1/;"),
        # A Host header that is no host name must not write the policy.
        ("ws://x; script-src *:8000/xiaozhi/v1/", "connect-src 'none';"),
        ("http://edge:8000/xiaozhi/v1/", "connect-src 'none';"),
    ],
)
def test_connect_src_is_the_websocket_only(ws_url: str, connect: str) -> None:
    csp = csp_for(ws_url)
    assert connect in csp
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "default-src 'none';" in csp
    assert "unsafe" not in csp


def test_every_served_file_ships_with_the_package() -> None:
    for name in [*FILES, "index.html"]:
        assert (STATIC / name).is_file(), name
