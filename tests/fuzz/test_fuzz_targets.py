"""Every fuzz target of tests/fuzz/targets.py (shared with ``python -m bench.fuzz``): device protocol
(messages, framing, MCP), OTA, routing config, firmware versions, NATS messages and cache entries.

Any input gives the documented result, checked against what it says, or the documented error with
a message; never anything else. Multi-megabyte inputs must be handled within a bound: before the
fixes the routing alias bomb took 18 s at twice this size and a 1 MB config seconds of YAML. The
regression cases for what fuzzing found live beside their parsers' tests in this directory.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from tests.fuzz.conftest import fuzz_settings
from tests.fuzz.targets import LARGE_INPUT_LIMIT_S, LARGE_INPUTS, TARGETS, LargeInput, run_large_input


@pytest.mark.parametrize("name", list(TARGETS))
def test_property(name: str) -> None:
    """Only the documented result or the documented error, for structured and random inputs."""
    target = TARGETS[name]

    @fuzz_settings(target.weight)
    @given(target.strategy)
    def check(example: object) -> None:
        target.check(example)

    check()


@pytest.mark.parametrize("item", LARGE_INPUTS, ids=lambda i: i.name)
def test_multi_megabyte_input_is_handled_fast(item: LargeInput) -> None:
    """Bounded work on huge input; the limit is generous for a loaded CI box."""
    outcome, elapsed = run_large_input(item)
    assert elapsed < LARGE_INPUT_LIMIT_S, f"{item.name} took {elapsed:.1f} s ({outcome})"
