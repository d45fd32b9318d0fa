"""A write's round trips to PostgreSQL, and what sending statements later must keep.

A batch of existing users costs three round trips (issue 24): BEGIN, the lock and the
standing read in one; the ledger's insert in one; the other writes and COMMIT in one
(store/execution.py, Executor deferred). Counted from libpq's own protocol trace: each
round trip ends with the server's ReadyForQuery. Sending later must not change what a
write does: statements still run in order, and a failure sent with COMMIT is a definite
failure that commits nothing, not an outcome unknown.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import DBAPIError

from server.domain.errors import StoreUnavailable
from server.domain.model import TriggerType
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction
from server.store.database import CITUS, SqlStore, SqlUnitOfWork
from server.store.execution import Executor, _wrapped
from server.store.models import SystemRow
from server.store.shard_map import ShardMap
from server.store.statements.tables import systems
from tests.conftest import T0
from tests.integration.helpers import award, system
from tests.integration.test_concurrency import ledger_sum
from tests.integration.test_triggers import event as record
from tests.integration.test_triggers import trigger
from tests.integration.test_writer import award_change


@contextmanager
def round_trips(store: SqlStore) -> Iterator[list[int]]:
    """Count the round trips of every connection checked out meanwhile (the count is
    the list's one item once the block ends). Under Citus the shard map is read first
    and held: its read, once a minute, is not the write's."""
    counted: list[int] = []
    held = store.shard_map
    if citus(store):
        store.shard_map = ShardMap(store.engine.connect, max_age=math.inf)
        store.shard_map.current()
    with tempfile.NamedTemporaryFile("w+") as trace:

        def on_checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
            dbapi.pgconn.trace(trace.fileno())

        def on_checkin(dbapi: Any, _record: Any) -> None:
            dbapi.pgconn.untrace()

        event.listen(store.engine, "checkout", on_checkout)
        event.listen(store.engine, "checkin", on_checkin)
        try:
            yield counted
        finally:
            event.remove(store.engine, "checkout", on_checkout)
            event.remove(store.engine, "checkin", on_checkin)
            store.shard_map = held
        trace.seek(0)
        counted.append(sum("\tReadyForQuery" in line for line in trace))


def test_an_award_of_a_known_user_is_three_round_trips(pg_store: SqlStore) -> None:
    tally = Tally(pg_store, clock=lambda: T0)
    system(tally)
    award(tally, "ann", 5)
    with round_trips(pg_store) as counted:
        result = award(tally, "ann", 5, idempotency_key="k1")
    assert result.balance.balance == 10
    assert counted == [3]
    with round_trips(pg_store) as counted:  # a replay: nothing to write but the COMMIT
        award(tally, "ann", 5, idempotency_key="k1")
    assert counted[0] <= 3


def test_an_award_of_a_new_user_adds_one_round_trip(pg_store: SqlStore) -> None:
    tally = Tally(pg_store, clock=lambda: T0)
    system(tally)
    award(tally, "ann", 5)  # the process has read the configuration
    with round_trips(pg_store) as counted:
        assert award(tally, "bo", 5).balance.balance == 5
    # The user's insert, which says whether another made it first, and (on PostgreSQL)
    # reads the configuration's version with it; under Citus the insert goes a statement a
    # shard and the version is read after it.
    assert counted == [5 if citus(pg_store) else 4]


def test_an_event_a_metric_counts_reads_its_totals_with_the_lock(pg_store: SqlStore) -> None:
    """The running totals a METRIC trigger counts are read in the lock's round trip: an
    event of a known user is three round trips, as an award is."""
    tally = Tally(pg_store, clock=lambda: T0)
    system(tally)
    trigger(tally, TriggerType.METRIC, 5, event_type="lesson", metric_threshold=Decimal(30))
    record(tally, "ann", "lesson", 20)
    with round_trips(pg_store) as counted:
        result = record(tally, "ann", "lesson", 15, idempotency_key="e1")
    assert result.metric_total == 35  # the total read with the lock, and counted on
    assert result.results["xp"].added == 5  # 35 crossed 30 once
    assert counted == [3]


def citus(store: SqlStore) -> bool:
    with store.engine.connect() as connection:
        return bool(connection.info.get(CITUS))


def _system_row(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": key,
        "description": "",
        "badge_url": "",
        "max_points": 0,
        "level_basis": "BALANCE",
        "create_time": T0,
        "update_time": T0,
    }


def test_a_write_sent_later_runs_before_a_later_read(pg_store: SqlStore) -> None:
    with pg_store.unit_of_work(write=True) as uow:
        db = uow.users.db
        db.run(insert(SystemRow), _system_row("later"))  # waits to be sent
        assert [r["key"] for r in db.rows(select(systems.c.key))] == ["later"]
        uow.commit()
    with pg_store.unit_of_work(write=False) as uow:
        assert uow.systems.get("later") is not None


def test_a_write_that_fails_with_the_commit_commits_nothing_and_is_not_unknown(
    pg_store: SqlStore,
) -> None:
    with pg_store.unit_of_work(write=True) as uow:
        uow.users.db.run(insert(SystemRow), _system_row("first"))
        uow.commit()
    with pg_store.unit_of_work(write=True) as uow:
        db = uow.users.db
        db.run(insert(SystemRow), _system_row("second"))
        db.run(insert(SystemRow), _system_row("first"))  # a duplicate key, sent with COMMIT
        with pytest.raises(DBAPIError) as caught:
            uow.commit()
    assert not isinstance(caught.value, StoreUnavailable)
    assert getattr(caught.value.orig, "sqlstate", None) == "23505"
    with pg_store.unit_of_work(write=True) as uow:  # nothing of it committed; the pool is fine
        assert uow.systems.get("second") is None
        assert uow.systems.get("first") is not None
        uow.users.db.run(insert(SystemRow), _system_row("third"))
        uow.commit()
    with pg_store.unit_of_work(write=False) as uow:
        assert uow.systems.get("third") is not None


# -- what a commit's failure says about its outcome ---------------------------------------


def _commit_then_lose_the_connection(
    monkeypatch: pytest.MonkeyPatch, sqlstate: str, message: str
) -> None:
    """The next commit is made, and then reports `sqlstate` with its connection gone: what
    a server sends when it fails after writing the commit record (a PANIC on fsync,
    58030, or 'cannot abort transaction, it was already committed', XX000)."""
    real = Executor.commit
    failed: list[bool] = []

    def commit_then_fail(self: Executor) -> None:
        real(self)
        if not failed:
            failed.append(True)
            self.connection.connection.driver_connection.close()  # type: ignore[union-attr]
            raise _wrapped("COMMIT", None, psycopg.errors.lookup(sqlstate)(message))

    monkeypatch.setattr(Executor, "commit", commit_then_fail)


def test_a_failure_with_the_connection_gone_after_commit_is_never_run_again(
    pg_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tally = Tally(pg_store, clock=lambda: T0)
    system(tally)
    award(tally, "ann", 5)
    _commit_then_lose_the_connection(monkeypatch, "58030", "could not fsync file")
    with pytest.raises(StoreUnavailable):
        award(tally, "ann", 5)  # no idempotency key: a retry would award twice
    monkeypatch.undo()
    assert ledger_sum(pg_store, "ann") == 10


def test_a_batch_whose_commit_fails_with_the_connection_gone_is_not_posted_again(
    pg_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tally = Tally(pg_store, clock=lambda: T0)
    system(tally)
    _commit_then_lose_the_connection(
        monkeypatch, "XX000", "cannot abort transaction 1234, it was already committed"
    )
    a, b = _one_batch(pg_store)
    outcomes = tally.writer.post([award_change(a, 1), award_change(b, 1)])
    monkeypatch.undo()
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert ledger_sum(pg_store, a) + ledger_sum(pg_store, b) == 2  # once, not again alone


def _one_batch(store: SqlStore) -> tuple[str, str]:
    """Two users the writer posts in one batch (under Citus, of one worker's shards)."""
    users = [f"u{i}" for i in range(40)]
    by_group: dict[int, list[str]] = {}
    for user, group in zip(users, store.write_groups(users), strict=True):
        by_group.setdefault(group, []).append(user)
    a, b, *_ = next(found for found in by_group.values() if len(found) >= 2)
    return a, b


def test_a_connection_found_dead_before_its_commit_is_sent_is_a_plain_retry(
    pg_store: SqlStore,
) -> None:
    """A write whose only round trip is its commit (add, then commit: an API key's
    creation) on a pooled connection whose backend was terminated meanwhile (a database
    restart): nothing of it reached the server, so it runs again on a fresh connection."""
    store = SqlStore.from_url(
        pg_store.engine.url.render_as_string(hide_password=False), pool_size=1
    )
    try:
        with store.engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            connection.rollback()
        with pg_store.engine.connect() as admin:
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            admin.commit()
        time.sleep(0.2)  # the FATAL and the end of file reach the pooled socket

        def work(uow: UnitOfWork) -> None:
            assert isinstance(uow, SqlUnitOfWork)
            uow.users.db.run(insert(SystemRow), _system_row("again"))
            uow.commit()

        in_transaction(store, work, write=True)
    finally:
        store.dispose()
    with pg_store.unit_of_work(write=False) as uow:
        assert uow.systems.get("again") is not None
