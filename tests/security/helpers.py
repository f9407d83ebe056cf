"""What the security tests share."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(what: str, check: Callable[[], bool], timeout_s: float, why: Callable[[], str] = lambda: "") -> None:
    """Until ``check()`` holds; otherwise fail saying ``what`` did not happen, with the tail of ``why()``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout_s:g} s:\n{why()[-3000:]}")
