"""Fixtures for tests that drive `tally-server serve` as a separate process: databases
made for one test (an SQLite file, a fresh database on the shared PostgreSQL, a private
PostgreSQL cluster), and a factory of real servers on free loopback ports, each with an
admin key, killed at the end of the test whatever state it was left in.

Nothing here is specific to one scenario: any test of the real server may use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL, postgres_unreachable
from tests.faults.processes import (
    PrivateCluster,
    Server,
    fresh_database,
    prepare,
    private_cluster,
    private_postgres_missing,
)

IN_CI = os.environ.get("CI") == "true"


def _unavailable(message: str) -> None:
    """Skip, saying why; under CI=true a missing database is a failure."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true requires it)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The shared PostgreSQL's admin URL (TALLY_TEST_POSTGRES_URL), once it answers."""
    why = postgres_unreachable()
    if why is not None:
        _unavailable(f"PostgreSQL at {PG_ADMIN_URL} unreachable: {why}")
    return PG_ADMIN_URL


@pytest.fixture
def fresh_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A new, empty database on the shared PostgreSQL, for this test alone."""
    with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def sqlite_file_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tally.db'}"


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test's own (never the shared one), which it may stop."""
    why = private_postgres_missing()
    if why is not None:
        _unavailable(f"no private PostgreSQL cluster: {why}")
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture
def own_postgres_url(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL database for this test alone: a private cluster's where one can be
    made (heavy tests then leave the shared cluster's connections to others), else a
    fresh database on the shared cluster."""
    if private_postgres_missing() is None:
        cluster: PrivateCluster = request.getfixturevalue("private_postgres")
        return cluster.url
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


StartServer = Callable[..., tuple[Server, str]]


@pytest.fixture
def tally_server(tmp_path: Path) -> Iterator[StartServer]:
    """`start(database_url, workers=1, grace_seconds=10.0)`: migrate, make an admin key,
    start `tally-server serve` and wait for SERVING; returns the server and the key."""
    started: list[Server] = []

    def start(
        database_url: str, *, workers: int = 1, grace_seconds: float = 10.0
    ) -> tuple[Server, str]:
        key = prepare(database_url)
        server = Server(database_url, tmp_path, workers=workers, grace_seconds=grace_seconds)
        started.append(server)
        server.start()
        return server, key

    yield start
    for server in started:
        server.stop()
