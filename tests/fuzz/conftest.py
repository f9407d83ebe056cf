"""Hypothesis profiles for the fuzz tests, chosen with ``XIAOZHI_FUZZ_PROFILE`` (default ``ci``).

* ``ci``: a few hundred examples per property, derandomized (the same inputs on every run, so a
  CI failure reproduces locally and a green run stays green), no example database.
* ``long``: many examples from fresh random seeds, for a local or nightly hunt
  (``XIAOZHI_FUZZ_PROFILE=long .venv/bin/pytest tests/fuzz``); ``python -m bench.fuzz`` is the
  faster way to run the pure-function properties for longer.

The profiles are applied per test through :func:`fuzz_settings` instead of ``load_profile``:
loading one would change hypothesis' defaults for every other test in the same pytest run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE_ENV = "XIAOZHI_FUZZ_PROFILE"

_SUPPRESSED = [
    HealthCheck.too_slow,  # some inputs are deliberately large (70 KB frames, 60 000-deep nesting)
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]
settings.register_profile(
    "ci",
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,  # a loaded 2-core CI box makes per-example timing meaningless
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile("long", settings.get_profile("ci"), max_examples=5000, derandomize=False)


def fuzz_settings(weight: float = 1.0) -> settings:
    """The selected profile with ``max_examples`` scaled by ``weight`` (slow targets take fewer)."""
    profile = settings.get_profile(os.environ.get(PROFILE_ENV, "ci"))
    return settings(profile, max_examples=max(5, round(profile.max_examples * weight)))
