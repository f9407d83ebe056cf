"""The console's database backends: every test that takes ``databases`` runs once on SQLite and once
on a real PostgreSQL server (``tests/console/pg.py``), with a fresh, empty database each time it asks
for one (a new SQLite file; a new PostgreSQL database from ``CREATE DATABASE``).

The PostgreSQL server is started once per test session, and only when a PostgreSQL test runs; without
Debian's ``postgresql`` package those tests are skipped with that package's name, the SQLite ones run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from shared.nats.server import free_port

from .pg import PostgresServer, PostgresUnavailable, postgres_bin_dir

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Databases:
    """One backend: ``new()`` gives the SQLAlchemy URL of a fresh, empty database on it."""

    backend: str
    new: Callable[[], str]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        bin_dir = postgres_bin_dir()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    server = PostgresServer(free_port(), bin_dir)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def databases(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Databases:
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        return Databases("postgresql", server.new_database)
    work = tmp_path_factory.mktemp("sqlite")
    numbers = itertools.count()
    return Databases("sqlite", lambda: f"sqlite:///{work / f'console-{next(numbers)}.db'}")
