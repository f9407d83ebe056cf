"""Fuzzing the OTA request parser, the routing config schema and firmware version strings.

Properties and strategies live in tests/fuzz/targets.py: an OTA request is answered with exactly
the device id / firmware / board docs/protocol.md §1 gives it, or refused with OtaRequestError (HTTP
400); a routing config validates or raises RoutingConfigError naming the key path it is about.
The regression cases at the bottom are what fuzzing found.
"""

from __future__ import annotations

import time

import pytest

from provisioning.firmware import parse_version
from shared.protocol.ota import OtaRequestError, parse_ota_request
from shared.routing_config import RoutingConfigError, parse_routing
from tests.fuzz.targets import LARGE_INPUT_LIMIT_S


@pytest.mark.parametrize(
    "body",
    [b"[" * 50_000, b'{"version": ' + b"1" * 5000 + b"}"],
    ids=["deep-nesting", "5000-digit-int"],
)
def test_found_by_fuzzing_ota_body_is_a_400_not_a_500(body: bytes) -> None:
    """RecursionError and the int-digits ValueError escaped parse_ota_request: the edge and the
    provisioning service answered 500 instead of 400."""
    with pytest.raises(OtaRequestError, match="not valid JSON"):
        parse_ota_request({"Device-Id": "d8:3b:da:12:34:56"}, body)


def test_found_by_fuzzing_routing_rules_duplicate_check_is_linear() -> None:
    """20 000 aliased copies of one rule: the unique-name check counted each name in the whole list."""
    text = "r: &r {name: a, route: cloud}\nllm:\n  rules: [" + ", ".join(["*r"] * 20_000) + "]\n"
    started = time.perf_counter()
    with pytest.raises(RoutingConfigError, match="rule names must be unique"):
        parse_routing(text)
    assert time.perf_counter() - started < LARGE_INPUT_LIMIT_S


@pytest.mark.parametrize("text", ["[" * 5000, "a: &a [*a]\nllm: *a"], ids=["deep", "self-alias"])
def test_found_by_fuzzing_routing_yaml_recursion_is_a_config_error(text: str) -> None:
    with pytest.raises(RoutingConfigError):
        parse_routing(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2.²", (2, 0)), ("1.٣.0", (1, 0, 0)), ("1." + "9" * 5000, (1, 2**31 - 1)), ("2.0007.10", (2, 7, 10))],
    ids=["superscript", "arabic-indic", "5000-digits", "leading-zeros"],
)
def test_found_by_fuzzing_firmware_versions(text: str, expected: tuple[int, ...]) -> None:
    """str.isdigit() let "²" through to int() (ValueError -> 500 in provisioning's OTA)."""
    assert parse_version(text) == expected
