"""The one heartbeat parser the console and provisioning share."""

from __future__ import annotations

import pytest

from shared.nats.heartbeats import HeartbeatError, parse_heartbeat


def test_a_heartbeat_names_its_edge() -> None:
    assert parse_heartbeat("xz.fleet.heartbeat.site-a-1", b'{"sessions": 3}') == ("site-a-1", {"sessions": 3})


@pytest.mark.parametrize(
    ("subject", "data", "needle"),
    [
        ("xz.fleet.heartbeat.a", b"{nope", "not JSON"),
        ("xz.fleet.heartbeat.a", b"[1]", "not a JSON object"),
        ("xz.fleet.heartbeat.a.b", b"{}", "does not name an edge"),
        ("xz.fleet.heartbeat.", b"{}", "does not name an edge"),
        ("xz.other.a", b"{}", "does not name an edge"),
    ],
)
def test_what_is_not_a_heartbeat_says_why(subject: str, data: bytes, needle: str) -> None:
    with pytest.raises(HeartbeatError, match=needle):
        parse_heartbeat(subject, data)
