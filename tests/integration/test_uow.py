"""The unit of work and the schema, on both stores.

A unit of work writes only when told to commit; transient failures are retried a bounded
number of times and then reach callers as STORE_UNAVAILABLE; and the Alembic migrations
build exactly the tables the models describe, both ways.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from tenacity import wait_none

from server.domain import commands
from server.domain.errors import InsufficientPoints, StoreUnavailable, TransientStoreError
from server.domain.model import LevelBasis, PointsSystem, TriggerType
from server.services import transactions
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction
from server.services.use_cases import reads
from server.store import migrate
from server.store.database import CITUS, SqlStore, create_store_engine
from server.store.execution import Compiled, Executor
from server.store.models import Base, SystemRow, UserRow
from server.store.repositories.base import rows_json
from server.store.repositories.ledger import standing_params
from server.store.statements import statements_for
from server.store.statements.tables import RowsInsert
from tests.conftest import PG_ADMIN_URL, T0
from tests.integration.helpers import award, system
from tests.integration.test_triggers import trigger


def a_system(key: str = "xp") -> PointsSystem:
    return PointsSystem(key, key, "", "", 0, LevelBasis.BALANCE, T0, T0)


def system_keys(store: SqlStore) -> list[str]:
    with store.engine.connect() as connection:
        return list(connection.scalars(text("SELECT key FROM points_systems ORDER BY key")))


class TestUnitOfWork:
    def test_rolls_back_unless_committed(self, store: SqlStore) -> None:
        with store.unit_of_work(write=True) as uow:
            assert uow.systems.add(a_system())
            assert uow.systems.get("xp") is not None  # visible inside
        assert system_keys(store) == []

    def test_commits_when_told(self, store: SqlStore) -> None:
        with store.unit_of_work(write=True) as uow:
            uow.systems.add(a_system())
            uow.commit()
        assert system_keys(store) == ["xp"]
        with store.unit_of_work(write=False) as uow:
            assert uow.systems.get("xp") == a_system()

    def test_rolls_back_when_the_work_raises(self, store: SqlStore) -> None:
        def refused() -> None:
            with store.unit_of_work(write=True) as uow:
                uow.systems.add(a_system())
                uow.systems.add(a_system("other"))
                raise InsufficientPoints(available=0, requested=1)

        with pytest.raises(InsufficientPoints):
            refused()
        assert system_keys(store) == []

    def test_explicit_rollback_discards_earlier_writes(self, store: SqlStore) -> None:
        with store.unit_of_work(write=True) as uow:
            uow.systems.add(a_system("a"))
            uow.rollback()
            uow.systems.add(a_system("b"))
            uow.commit()
        assert system_keys(store) == ["b"]

    def test_in_transaction_commits_only_what_work_commits(self, store: SqlStore) -> None:
        def forgetful(uow: UnitOfWork) -> None:
            uow.systems.add(a_system("a"))

        def careful(uow: UnitOfWork) -> None:
            uow.systems.add(a_system("b"))
            uow.commit()

        in_transaction(store, forgetful, write=True)
        in_transaction(store, careful, write=True)
        assert system_keys(store) == ["b"]

    def test_transient_database_error_is_retried_on_a_fresh_transaction(
        self, store: SqlStore, fast_retries: None
    ) -> None:
        """Each failed attempt is rolled back, so the retry does not trip on its own rows."""
        attempts = 0

        def work(uow: UnitOfWork) -> str:
            nonlocal attempts
            attempts += 1
            assert uow.systems.add(a_system()), "an earlier attempt's insert leaked"
            if attempts < 3:
                raise OperationalError("INSERT ...", {}, Exception("connection reset"))
            uow.commit()
            return "done"

        assert in_transaction(store, work, write=True) == "done"
        assert attempts == 3
        assert system_keys(store) == ["xp"]


# -- retries, with fakes ---------------------------------------------------------------------


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three tries, no waiting: the policy, not the clock, is under test."""
    monkeypatch.setattr(transactions, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(transactions, "wait_random_exponential", lambda **_: wait_none())


@dataclass
class FakeUnitOfWork:
    committed: bool = False
    exited: list[type[BaseException] | None] = field(default_factory=list)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.exited.append(exc_type)

    def commit(self) -> None:
        self.committed = True

    def rollback(self) -> None:
        pass


@dataclass
class FlakyStore:
    """A store whose first `failures` units of work cannot even start."""

    failures: int
    attempts: int = 0
    opened: list[FakeUnitOfWork] = field(default_factory=list)

    def unit_of_work(self, *, write: bool) -> FakeUnitOfWork:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise TransientStoreError("could not serialize access")
        uow = FakeUnitOfWork()
        self.opened.append(uow)
        return uow


def committing(uow: Any) -> str:
    uow.commit()
    return "ok"


class TestRetries:
    def test_a_transient_failure_is_retried(self, fast_retries: None) -> None:
        store = FlakyStore(failures=2)
        assert in_transaction(store, committing, write=True) == "ok"  # type: ignore[arg-type]
        assert store.attempts == 3
        assert [uow.committed for uow in store.opened] == [True]

    def test_when_the_budget_runs_out_it_is_store_unavailable(self, fast_retries: None) -> None:
        store = FlakyStore(failures=10**6)
        with pytest.raises(StoreUnavailable) as caught:
            in_transaction(store, committing, write=True)  # type: ignore[arg-type]
        assert store.attempts == 3
        assert caught.value.reason == "STORE_UNAVAILABLE"
        assert isinstance(caught.value.__cause__, TransientStoreError)

    def test_the_budget_is_also_bounded_in_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(transactions, "MAX_ATTEMPTS", 10**6)
        monkeypatch.setattr(transactions, "MAX_SECONDS", 0.2)
        monkeypatch.setattr(transactions, "wait_random_exponential", lambda **_: wait_none())
        store = FlakyStore(failures=10**9)
        with pytest.raises(StoreUnavailable):
            in_transaction(store, committing, write=True)  # type: ignore[arg-type]
        assert 1 < store.attempts < 10**6

    def test_transient_failure_inside_the_work_is_retried(self, fast_retries: None) -> None:
        store = FlakyStore(failures=0)
        calls = 0

        def work(uow: Any) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise TransientStoreError("deadlock detected")
            uow.commit()
            return calls

        assert in_transaction(store, work, write=False) == 2  # type: ignore[arg-type]
        assert [uow.committed for uow in store.opened] == [False, True]
        assert store.opened[0].exited == [TransientStoreError]

    def test_domain_errors_are_not_retried(self, fast_retries: None) -> None:
        store = FlakyStore(failures=0)

        def work(uow: Any) -> None:
            raise InsufficientPoints(available=1, requested=2)

        with pytest.raises(InsufficientPoints):
            in_transaction(store, work, write=True)  # type: ignore[arg-type]
        assert store.attempts == 1


UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/tally"


def test_a_read_on_an_unreachable_database_is_store_unavailable(fast_retries: None) -> None:
    store = SqlStore.from_url(UNREACHABLE_PG)
    try:
        with pytest.raises(StoreUnavailable):
            in_transaction(store, lambda uow: uow.systems.get("xp"), write=False)
    finally:
        store.dispose()


def test_a_write_on_an_unreachable_database_is_store_unavailable(fast_retries: None) -> None:
    """Callers retry UNAVAILABLE with their idempotency key; INTERNAL tells them not to."""
    store = SqlStore.from_url(UNREACHABLE_PG)
    try:
        with pytest.raises(StoreUnavailable):
            in_transaction(store, lambda uow: uow.systems.get("xp"), write=True)
    finally:
        store.dispose()


def test_a_balance_read_on_an_unreachable_database_is_store_unavailable(
    fast_retries: None,
) -> None:
    """The first read of a process asks the store whether it reads views together (and
    so whether it is Citus): unreachable, that is UNAVAILABLE too, not INTERNAL."""
    store = SqlStore.from_url(UNREACHABLE_PG)
    tally = Tally(store, clock=lambda: T0)
    try:
        with pytest.raises(StoreUnavailable):
            reads.get_balance(tally, commands.GetBalance("xp", "ann", 10), T0)
    finally:
        store.dispose()


# -- migrations ------------------------------------------------------------------------------


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config(engine)).get_current_head()


def test_migrations_build_exactly_the_models(store: SqlStore) -> None:
    assert schema_diff(store.engine) == []
    assert migrate.current(store.engine) == head_revision(store.engine)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each kind, made for one test and dropped after it."""
    if request.param == "sqlite":
        engine = create_store_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield engine
        engine.dispose()
        return
    request.getfixturevalue("postgresql_url")  # skips (or fails under CI) when unreachable
    name = f"tally_migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = create_store_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def user_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_downgrade_to_base_then_upgrade_to_head(fresh_engine: Engine) -> None:
    models = set(Base.metadata.tables)
    postgres = fresh_engine.dialect.name == "postgresql"

    migrate.upgrade(fresh_engine)
    assert user_tables(fresh_engine) == models
    if postgres:
        assert "ledger_entry_sequence" in inspect(fresh_engine).get_sequence_names()

    command.downgrade(migrate.alembic_config(fresh_engine), "base")
    assert user_tables(fresh_engine) == set()
    assert migrate.current(fresh_engine) is None
    if postgres:
        assert inspect(fresh_engine).get_sequence_names() == []

    migrate.upgrade(fresh_engine)
    assert user_tables(fresh_engine) == models
    assert migrate.current(fresh_engine) == head_revision(fresh_engine)
    assert schema_diff(fresh_engine) == []

    # The rebuilt schema takes writes: one committed unit of work end to end.
    store = SqlStore(fresh_engine)
    in_transaction(store, _add_and_commit, write=True)
    with store.unit_of_work(write=False) as uow:
        assert uow.systems.get("xp") == a_system()


def _add_and_commit(uow: UnitOfWork) -> None:
    uow.systems.add(a_system())
    uow.commit()


def test_upgrade_is_idempotent(fresh_engine: Engine) -> None:
    migrate.upgrade(fresh_engine)
    migrate.upgrade(fresh_engine)
    assert migrate.current(fresh_engine) == head_revision(fresh_engine)
    assert schema_diff(fresh_engine) == []


def test_users_from_before_0015_are_welcomed_in_the_systems_that_existed_then(
    fresh_engine: Engine,
) -> None:
    """A user existing at the upgrade was welcomed when created, by the rule then in
    force: 0015 counts them welcomed in every system that existed at the upgrade (through
    its time), so no call welcomes them there again, and owed the welcome of any system
    created after it."""
    before = datetime.now(UTC) - timedelta(days=1)
    migrate.upgrade(fresh_engine, "0014")
    with fresh_engine.begin() as connection:  # the columns of 0014
        user = {"id": "old", "display_name": "", "email": "", "attributes": {}}
        connection.execute(insert(UserRow).values(**user, create_time=before))
        texts = {"key": "xp", "name": "xp", "description": "", "badge_url": ""}
        basis = LevelBasis.BALANCE.value
        times = {"create_time": before, "update_time": before}
        connection.execute(
            insert(SystemRow).values(**texts, max_points=0, level_basis=basis, **times)
        )
    migrate.upgrade(fresh_engine)
    after = datetime.now(UTC) + timedelta(seconds=1)
    tally = Tally(SqlStore(fresh_engine), clock=lambda: after)
    system(tally, "gems", at=after)
    trigger(tally, TriggerType.USER_IDENTIFIED, 100, system_key="xp", at=after)
    trigger(tally, TriggerType.USER_IDENTIFIED, 7, system_key="gems", at=after)
    with tally.store.unit_of_work(write=False) as uow:
        old = uow.users.get("old")
    assert old is not None
    assert old.welcomed.systems == frozenset()
    assert old.welcomed.through is not None
    assert before < old.welcomed.through < after
    # welcomed in xp, which existed at the upgrade; owed gems's welcome, once
    assert award(tally, "old", 5, at=after).balance.balance == 5
    assert award(tally, "old", 5, system_key="gems", at=after).balance.balance == 7 + 5
    assert award(tally, "old", 5, system_key="gems", at=after).balance.balance == 7 + 10
    assert award(tally, "new", 5, at=after).balance.balance == 100 + 5


def test_sqlite_commits_survive_a_power_cut(tmp_path: Path) -> None:
    """WAL with synchronous=FULL: a commit is on disk before the caller hears of it."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'tally.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


def test_a_write_prepares_fixed_plans_and_plans_its_reads_each_time(pg_store: SqlStore) -> None:
    """In a write, a statement whose plan has no choice (an INSERT from a batch's JSON
    rows) is prepared at once and its plan kept; a read, whose plan depends on the
    tables' statistics (a key's lookup, planned while the table was small, scans it
    whole), is planned for its values every time, however often it runs."""
    sql = statements_for("postgresql")
    key_add = sql.idempotency.key_add
    assert not isinstance(key_add, RowsInsert)  # (Citus's form)
    engine = create_store_engine(pg_store.engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection:  # a new session: none of the pool's prepared
        db = Executor(connection, replan=True)
        for _ in range(6):  # past psycopg's threshold (5 uses) for preparing on its own
            db.run(key_add, rows_json([]))
            db.rows(sql.ledger.standing, {"user_ids": ["u"], "scopes": ["xp"], "keys": ["k"]})
        prepared = list(
            connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars()
        )
        connection.rollback()
    engine.dispose()
    assert [s.split(" (")[0] for s in prepared] == ["INSERT INTO idempotency_keys"]


def test_a_batch_reads_a_key_by_its_own_lookup_however_many_its_user_holds(
    pg_store: SqlStore,
) -> None:
    """A user's idempotency keys are kept as long as their entries, so a busy user holds
    many; the standing read names every column of the keys' index (user, scope, key),
    and finds each key by a lookup of its own, never by scanning all of the user's (a
    read by user and key alone scanned 50,000 index entries of such a user per batch:
    2 ms, against 0.03 ms)."""
    with pg_store.engine.connect() as connection:
        if connection.info.get(CITUS):
            pytest.skip("under Citus each worker plans its shard's read by its own statistics")
    with pg_store.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO idempotency_keys (user_id, scope, key, request_hash, response,"
            " create_time) SELECT 'hot', 'xp', 'k' || g, 'h', '{}', now()"
            " FROM generate_series(1, 5000) g"
        )
        connection.exec_driver_sql("ANALYZE idempotency_keys")
    sql = Compiled.of(statements_for("postgresql").ledger.standing)
    params = sql.bind(standing_params(["hot"], [("hot", "xp", "k77")]))
    with pg_store.engine.connect() as connection:
        plan = connection.exec_driver_sql("EXPLAIN (ANALYZE, COSTS OFF) " + sql.sql, params)
        shown = "\n".join(row[0] for row in plan)
    condition = shown[shown.index("idempotency_keys") :].split("\n")[1]
    assert "Index Cond" in condition, shown
    for column in ("user_id", "scope", "key"):  # the index's every column: one lookup
        assert f"({column})::text = ANY" in condition, shown
    assert "Rows Removed by Filter" not in shown, shown
