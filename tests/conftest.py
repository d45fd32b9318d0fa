"""Shared fixtures: a real PostgreSQL and an SQLite file, each migrated once per run.

The PostgreSQL half uses a fresh database made for this run and dropped after it (on
every node when TALLY_TEST_POSTGRES_URL names a Citus coordinator's database: then the
whole suite runs on Citus). Where no PostgreSQL can be reached (or started), that half
is skipped with a line saying so, except under CI=true, where it is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from server.services.tally import Tally
from server.store import migrate
from server.store.database import SqlStore
from server.store.models import Base
from tests import citus_cluster

# CI runs are reproducible (a fixed derandomized search); local runs keep exploring.
# No per-example deadline: these machines are shared, and a slow example is not a bug.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("local", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "local")

PG_ADMIN_URL = os.environ.get(
    "TALLY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI") == "true"
STORES = ["sqlite", "postgresql"]

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def postgres_unreachable(admin_url: str = PG_ADMIN_URL) -> str | None:
    """None when PostgreSQL answers; otherwise why not."""
    try:
        engine = create_engine(admin_url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def _start_local_cluster() -> None:
    """Start the machine's PostgreSQL cluster when it is installed but stopped."""
    clusters = Path("/etc/postgresql")
    if not clusters.is_dir() or shutil.which("pg_ctlcluster") is None:
        return
    for version in sorted(p.name for p in clusters.iterdir()):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
            timeout=60,
        )


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    why = postgres_unreachable()
    if why is not None:
        _start_local_cluster()
        why = postgres_unreachable()
    if why is not None:
        message = f"PostgreSQL at {make_url(PG_ADMIN_URL).render_as_string()} unreachable: {why}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true requires it)")
        pytest.skip(f"skipping the PostgreSQL half: {message}")
    name = f"tally_test_{uuid.uuid4().hex[:12]}"
    cluster = citus_cluster.cluster_at(PG_ADMIN_URL)
    if cluster is not None:  # a Citus coordinator: the run's database on every node
        url = citus_cluster.create_database(cluster, name)
        try:
            yield url
        finally:
            citus_cluster.drop_database(cluster, name)
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'tally.db'}"


@pytest.fixture(scope="session")
def _stores(request: pytest.FixtureRequest) -> Iterator[dict[str, SqlStore]]:
    stores: dict[str, SqlStore] = {}
    yield stores
    for store in stores.values():
        store.dispose()


def _session_store(
    kind: str, request: pytest.FixtureRequest, stores: dict[str, SqlStore]
) -> SqlStore:
    if kind not in stores:
        url = request.getfixturevalue(f"{kind}_url")
        store = SqlStore.from_url(url, pool_size=20)
        migrate.upgrade(store.engine)
        stores[kind] = store
    return stores[kind]


def _empty(store: SqlStore) -> None:
    # config_version keeps its one row (the version only ever rises).
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name != "config_version"]
    with store.engine.begin() as connection:
        if store.engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)}"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, _stores: dict[str, SqlStore]) -> SqlStore:
    """A migrated, empty store: SQLite, then PostgreSQL."""
    store = _session_store(request.param, request, _stores)
    _empty(store)
    return store


@pytest.fixture
def pg_store(request: pytest.FixtureRequest, _stores: dict[str, SqlStore]) -> SqlStore:
    """PostgreSQL alone, for what only a real database with row locks can show."""
    store = _session_store("postgresql", request, _stores)
    _empty(store)
    return store


@pytest.fixture
def tally(store: SqlStore) -> Tally:
    """The use cases' context over `store` (both stores, like `store`), its clock at T0."""
    return Tally(store, clock=lambda: T0)


@pytest.fixture
def pg_tally(pg_store: SqlStore) -> Tally:
    return Tally(pg_store, clock=lambda: T0)
