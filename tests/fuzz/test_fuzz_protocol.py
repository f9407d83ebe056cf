"""Fuzzing the device wire protocol: JSON text messages, binary audio framing (v1/v2/v3), MCP payloads.

Properties and strategies live in bench/fuzz_targets.py (shared with ``python -m bench.fuzz``):
any input parses to the documented type, checked against what it says, or raises ProtocolError
with a known code and a message; never anything else. The regression cases at the bottom are the
inputs fuzzing found that crashed or misparsed before the fixes.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from bench.fuzz_targets import LARGE_INPUT_LIMIT_S, LARGE_INPUTS, TARGETS, LargeInput, run_large_input
from shared.protocol import ProtocolError, parse_client_message
from shared.protocol import errors as perr
from tests.fuzz.conftest import fuzz_settings

PREFIXES = ("messages.", "framing.", "mcp.")


@pytest.mark.parametrize("name", [n for n in TARGETS if n.startswith(PREFIXES)])
def test_property(name: str) -> None:
    """Only the documented result or the documented error, for structured and random inputs."""
    target = TARGETS[name]

    @fuzz_settings(target.weight)
    @given(target.strategy)
    def check(example: object) -> None:
        target.check(example)

    check()


@pytest.mark.parametrize("item", [i for i in LARGE_INPUTS if i.name.startswith(PREFIXES)], ids=lambda i: i.name)
def test_multi_megabyte_input_is_handled_fast(item: LargeInput) -> None:
    """Bounded work on huge input. The limit is generous for a loaded CI box; the failures it
    guards against (a parser walking a multi-megabyte frame) take far longer."""
    outcome, elapsed = run_large_input(item)
    assert elapsed < LARGE_INPUT_LIMIT_S, f"{item.name} took {elapsed:.1f} s ({outcome})"


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
