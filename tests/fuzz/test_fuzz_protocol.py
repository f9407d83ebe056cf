"""Fuzzing the device wire protocol: JSON text messages, binary audio framing (v1/v2/v3), MCP payloads.

Properties and strategies live in tests/fuzz/targets.py (shared with ``python -m bench.fuzz``):
any input parses to the documented type, checked against what it says, or raises ProtocolError
with a known code and a message; never anything else. The regression cases at the bottom are the
inputs fuzzing found that crashed or misparsed before the fixes.
"""

from __future__ import annotations

import pytest

from shared.protocol import ProtocolError, parse_client_message
from shared.protocol import errors as perr


@pytest.mark.parametrize(
    "text",
    [
        # An infinite volume reached int() in the session's legacy IoT handling and crashed it.
        '{"type":"iot","states":[{"name":"Speaker","state":{"volume":1e999}}]}',
        '{"type":"hello","version":1,"audio_params":{"sample_rate":-1e400}}',
        # A lone surrogate cannot be encoded back: the stt echo failed inside websockets and the
        # connection dropped without a close frame.
        '{"type":"listen","state":"detect","text":"\\ud800 what time is it"}',
        '{"type":"abort","reason":"a\\udfffb"}',
        '{"type":"mcp","payload":{"jsonrpc":"2.0","id":1,"result":{"\\ud83d":1}}}',
    ],
)
def test_found_by_fuzzing_refused_as_invalid_json(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text)
    assert caught.value.code == perr.INVALID_JSON


def test_surrogate_pairs_and_escaped_backslashes_still_parse() -> None:
    """The surrogate check must not refuse valid text: a paired escape is one emoji, and an escaped
    backslash before ``ud800`` is no escape at all."""
    emoji = parse_client_message('{"type":"listen","state":"detect","text":"\\ud83d\\ude00 hi"}')
    assert emoji.text == "\U0001f600 hi"  # type: ignore[union-attr]
    literal = parse_client_message('{"type":"listen","state":"detect","text":"\\\\ud800"}')
    assert literal.text == "\\ud800"  # type: ignore[union-attr]
    big = parse_client_message('{"type":"iot","states":[{"state":{"volume":1e308}}]}')
    assert big.states == [{"state": {"volume": 1e308}}]  # type: ignore[union-attr]
