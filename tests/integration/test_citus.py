"""Tally on Citus: `migrate` places every table, once, and one user's writes and an
entry's look-up each stay on one shard.

Runs where a Citus coordinator is at hand: TALLY_TEST_CITUS_URL names a database of
one (the citus extension created, its workers added), or TALLY_TEST_POSTGRES_URL does
(then the whole suite runs on Citus too). Each run makes its own database on every
node and drops it after. Elsewhere these tests skip, saying so.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import Engine, event, text

from server import app
from server.domain import commands
from server.domain.access import Scope
from server.domain.batch import AwardPoints
from server.domain.errors import StoreUnavailable
from server.domain.model import IntervalUnit, TriggerType, UserProfile
from server.services import transactions
from server.services.operations import api_keys
from server.services.tally import Tally
from server.services.use_cases import points_changes
from server.settings import Settings
from server.store import citus, migrate, shard_map
from server.store.database import SqlStore
from server.store.models import Base
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc
from tests import citus_cluster
from tests.conftest import PG_ADMIN_URL, T0
from tests.e2e.conftest import keyed
from tests.e2e.test_api import error_of
from tests.integration.helpers import award, deduct, system
from tests.integration.test_concurrency import race
from tests.integration.test_feed import Follower, watch_all
from tests.integration.test_triggers import event as record_event
from tests.integration.test_triggers import trigger

CITUS_URL = os.environ.get("TALLY_TEST_CITUS_URL", "")
PER_USER = {name for name, p in citus.PLACEMENTS.items() if p == citus.BY_USER_ID} | {"users"}
REFERENCE = {name for name, p in citus.PLACEMENTS.items() if isinstance(p, citus.Reference)}


def _cluster() -> citus_cluster.Cluster | None:
    for url in (CITUS_URL, PG_ADMIN_URL):
        if not url:
            continue
        try:
            found = citus_cluster.cluster_at(url)
        except Exception:  # noqa: BLE001 - unreachable means "no Citus here"
            continue
        if found is not None:
            return found
    return None


@pytest.fixture(scope="module")
def cluster() -> citus_cluster.Cluster:
    found = _cluster()
    if found is None:
        pytest.skip(
            "skipping the Citus tests: no Citus coordinator (set TALLY_TEST_CITUS_URL to a"
            " database with the citus extension created and its workers added)"
        )
    return found


@pytest.fixture
def citus_url(cluster: citus_cluster.Cluster) -> Iterator[str]:
    name = f"tally_citus_{uuid.uuid4().hex[:12]}"
    url = citus_cluster.create_database(cluster, name)
    try:
        yield url
    finally:
        citus_cluster.drop_database(cluster, name)


def _placements(engine: Engine) -> dict[str, tuple[str, str, int]]:
    """Each Tally table as citus_tables shows it: (type, column, colocation id)."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT table_name::text, citus_table_type, distribution_column, colocation_id"
                " FROM citus_tables"
            )
        ).all()
    return {name: (kind, column, colocation) for name, kind, column, colocation in rows}


def test_migrate_places_every_table_once(citus_url: str) -> None:
    store = SqlStore.from_url(citus_url)
    try:
        migrate.upgrade(store.engine)
        placed = _placements(store.engine)
        assert set(placed) == set(Base.metadata.tables)
        for name, placement in citus.PLACEMENTS.items():
            if isinstance(placement, citus.Reference):
                assert placed[name][:2] == ("reference", "<none>"), name
            else:
                assert placed[name][:2] == ("distributed", placement.column), name
        users_group = placed["users"][2]
        assert {n for n, p in placed.items() if p[2] == users_group} >= PER_USER
        # Again: nothing to do, and nothing moved.
        migrate.upgrade(store.engine)
        assert citus.distribute(store.engine) == []
        assert _placements(store.engine) == placed
    finally:
        store.dispose()


def test_a_cluster_with_entry_owners_drops_them_and_finds_entries_by_id(citus_url: str) -> None:
    """A database at 0014 keeps ledger_entry_owners distributed by entry id (a shard
    apart from its user's): migrate drops it, indexes the distributed ledger by id, and
    the entries written before are found by id alone and by their user."""
    store = SqlStore.from_url(citus_url)
    try:
        migrate.upgrade(store.engine, "0014")
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "SELECT create_distributed_table('ledger_entry_owners', 'entry_id',"
                    " colocate_with => 'none')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO ledger_entries (user_id, id, sequence, system_key, type,"
                    " amount, base_amount, multiplier, boost_ids, capped, balance_after,"
                    " reason, metadata, idempotency_key, trigger_id, event_type,"
                    " create_time) VALUES ('u1', 'e-before', 1, 'xp', 'AWARD', 5, 5, '1',"
                    " '[]', false, 5, '', '{}', '', '', '', now())"
                )
            )
            connection.execute(text("INSERT INTO ledger_entry_owners VALUES ('e-before', 'u1')"))
        migrate.upgrade(store.engine)
        assert "ledger_entry_owners" not in _placements(store.engine)
        assert set(_placements(store.engine)) == set(Base.metadata.tables)
        with store.unit_of_work(write=False) as uow:
            found = uow.ledger.get("e-before")
            of_user = uow.ledger.get("e-before", "u1")
            of_another = uow.ledger.get("e-before", "u2")
        assert found is not None
        assert of_user == found
        assert (found.user_id, found.amount) == ("u1", 5)
        assert of_another is None
    finally:
        store.dispose()


def test_a_plain_postgresql_database_moves_onto_citus_with_its_rows(
    cluster: citus_cluster.Cluster,
) -> None:
    """Migrated and written before the extension exists, then migrated again: every
    table is placed, rows and all, and reads and writes go on."""
    name = f"tally_citus_{uuid.uuid4().hex[:12]}"
    url = citus_cluster.create_database(cluster, name, citus=False)
    try:
        store = SqlStore.from_url(url)
        migrate.upgrade(store.engine)
        tally = Tally(store, clock=lambda: T0)
        system(tally)
        first = award(tally, "alice", 10).entry
        store.dispose()
        citus_cluster.add_citus(cluster, name)
        store = SqlStore.from_url(url)
        migrate.upgrade(store.engine)
        assert set(_placements(store.engine)) == set(Base.metadata.tables)
        tally = Tally(store, clock=lambda: T0)
        assert award(tally, "alice", 5).balance.balance == 15
        reversal = points_changes.reverse(tally, commands.Reverse(first.id), T0)
        assert reversal.balance.balance == 5
        with store.engine.connect() as connection:
            local = connection.execute(text("SELECT pg_relation_size('ledger_entries')"))
            assert local.scalar() == 0  # the coordinator kept no copy of the rows it moved
        store.dispose()
    finally:
        citus_cluster.drop_database(cluster, name)


class RemoteCommands:
    """What the coordinator sends to the workers (citus.log_remote_commands), per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.issued: list[tuple[str, str]] = []  # (command, node)
        event.listen(engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.add_notice_handler(self._notice)
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET citus.log_remote_commands = on")
        dbapi_connection.commit()

    def _notice(self, diagnostic: Any) -> None:
        message = diagnostic.message_primary or ""
        if message.startswith("issuing "):
            node = re.search(r"on server \S+@(\S+)", diagnostic.message_detail or "")
            self.issued.append((message.removeprefix("issuing "), node.group(1) if node else ""))

    def transaction_nodes(self) -> set[str]:
        """The nodes a transaction block was opened on (a write's, or a multi-statement
        one's; a read outside a transaction is sent alone, without BEGIN)."""
        return {node for sql, node in self.issued if sql.startswith("BEGIN")}

    def around_transaction(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The commands sent before the first transaction block, and from it on."""
        starts = [i for i, (sql, _node) in enumerate(self.issued) if sql.startswith("BEGIN")]
        first = starts[0] if starts else len(self.issued)
        return self.issued[:first], self.issued[first:]

    def shards_named(self, sent: list[tuple[str, str]]) -> dict[int, tuple[str, str]]:
        """Every shard these commands name: shard id -> (table, its hash range's start;
        '' for a reference table)."""
        ids = sorted({int(n) for sql, _node in sent for n in re.findall(r"_(\d{6,})\b", sql)})
        with self.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT shardid, logicalrelid::regclass::text,"
                    " coalesce(shardminvalue, '') FROM pg_dist_shard"
                    " WHERE shardid = ANY(:ids)"
                ),
                {"ids": ids},
            ).all()
        return {shard: (table, start) for shard, table, start in rows}

    def prepared(self) -> list[str]:
        """The PREPARE TRANSACTION commands: a commit in two phases."""
        return [sql for sql, _node in self.issued if sql.startswith("PREPARE TRANSACTION")]

    def shards(self, table: str) -> set[tuple[str, str]]:
        """The shards of `table` named by the commands sent, with the node of each."""
        pattern = re.compile(rf"\b{table}_(\d+)\b")
        return {(m, node) for sql, node in self.issued for m in pattern.findall(sql)}


@pytest.fixture
def watched(citus_url: str) -> Iterator[tuple[Tally, RemoteCommands]]:
    engine_store = SqlStore.from_url(citus_url)
    migrate.upgrade(engine_store.engine)
    engine_store.dispose()
    store = SqlStore.from_url(citus_url)
    commands_sent = RemoteCommands(store.engine)
    try:
        yield Tally(store, clock=lambda: T0), commands_sent
    finally:
        store.dispose()


def test_an_award_writes_one_shard_of_each_user_table(
    watched: tuple[Tally, RemoteCommands],
) -> None:
    tally, sent = watched
    system(tally)
    sent.issued.clear()
    result = award(tally, "alice", 10, idempotency_key="k1")
    assert result.entry.amount == 10
    touched = {table: sent.shards(table) for table in PER_USER}
    for table in ("users", "accounts", "ledger_entries", "idempotency_keys"):
        assert len(touched[table]) == 1, (table, touched[table])
    # The user's rows are colocated: every per-user shard named is on one node.
    assert len({node for table in PER_USER for _shard, node in touched[table]}) == 1


ONE_USER_WRITES = [
    "award-existing",
    "award-new",
    "deduct",
    "reverse-by-entry-id",
    "reverse-of-user",
    "record-event",
]


@pytest.fixture(scope="module")
def shaped(cluster: citus_cluster.Cluster) -> Iterator[tuple[Tally, RemoteCommands]]:
    """One database for the commit-shape tests (each writes its own users): a system
    with an EVENT trigger, and what the coordinator sends to the workers."""
    name = f"tally_citus_{uuid.uuid4().hex[:12]}"
    url = citus_cluster.create_database(cluster, name)
    store = SqlStore.from_url(url)
    sent = RemoteCommands(store.engine)  # before the first connection
    try:
        migrate.upgrade(store.engine)
        tally = Tally(store, clock=lambda: T0)
        system(tally)
        trigger(tally, TriggerType.EVENT, 3, event_type="lesson")
        yield tally, sent
    finally:
        store.dispose()
        citus_cluster.drop_database(cluster, name)


def _one_users_write(tally: Tally, sent: RemoteCommands, write: str, run: str) -> None:
    """`write` of one user alone (users of its own, `run` apart), with the commands sent
    for it, and only those, in `sent`. One call at a time: the writer would group
    concurrent users' changes."""
    user = f"{run}-{write}-dave"
    for other in ("alice", "bob", "carol", "erin"):  # more users, on both workers
        award(tally, f"{run}-{write}-{other}", 10)
    original = award(tally, user, 10).entry
    calls: dict[str, Callable[[], object]] = {
        "award-existing": lambda: award(tally, user, 5, idempotency_key="a1"),
        "award-new": lambda: award(tally, f"{run}-{write}-frank", 5, idempotency_key="a1"),
        "deduct": lambda: deduct(tally, user, 4, idempotency_key="d1"),
        "reverse-by-entry-id": lambda: points_changes.reverse(
            tally, commands.Reverse(original.id, idempotency_key="r1"), T0
        ),
        "reverse-of-user": lambda: points_changes.reverse(
            tally, commands.Reverse(original.id, idempotency_key="r1", user_id=user), T0
        ),
        "record-event": lambda: record_event(tally, user, "lesson", idempotency_key="e1"),
    }
    sent.issued.clear()
    calls[write]()


@pytest.mark.parametrize("write", ONE_USER_WRITES)
def test_one_users_write_runs_on_one_worker(
    shaped: tuple[Tally, RemoteCommands], write: str
) -> None:
    """Every row of one user's write is on that user's shard, so its transaction opens
    on one worker and nothing else is sent elsewhere. A Reverse naming only the entry
    reads its owner before the write, from every shard, outside any transaction."""
    tally, sent = shaped
    _one_users_write(tally, sent, write, "place")
    before, transaction = sent.around_transaction()
    assert len({node for _sql, node in transaction}) == 1, transaction
    # ... and on that worker, one shard of the user's colocated tables (and reference
    # tables): nothing keyed by anything but the user.
    named = sent.shards_named(transaction)
    assert {table for table, _start in named.values()} <= PER_USER | REFERENCE, named
    assert len({start for _table, start in named.values() if start}) == 1, named
    if not write.startswith("reverse"):
        assert before == []
        return
    # Reverse's look-up, before the write: one read-only statement, of every shard of
    # the ledger when only the entry is named, else of the user's shard alone.
    assert before
    assert all(sql.startswith("SELECT") for sql, _node in before)
    looked_up = sent.shards_named(before)
    assert {table for table, _start in looked_up.values()} == {"ledger_entries"}
    if write == "reverse-of-user":
        assert set(looked_up.values()) <= set(named.values())
        assert {node for _sql, node in before} == {node for _sql, node in transaction}
    else:
        assert len(looked_up) > 2


@pytest.mark.parametrize("write", ONE_USER_WRITES)
def test_one_users_write_commits_in_one_phase(
    shaped: tuple[Tally, RemoteCommands], write: str
) -> None:
    tally, sent = shaped
    _one_users_write(tally, sent, write, "phase")
    assert sent.prepared() == []
    [worker] = sent.transaction_nodes()
    assert ("COMMIT", worker) in sent.issued


def test_an_entry_of_a_named_user_is_read_from_one_shard(
    watched: tuple[Tally, RemoteCommands],
) -> None:
    tally, sent = watched
    system(tally)
    for user in ("alice", "bob", "carol"):
        award(tally, user, 10)
    original = award(tally, "dave", 10).entry
    sent.issued.clear()
    with tally.store.unit_of_work(write=False) as uow:
        found = uow.ledger.get(original.id, "dave")
    assert found == original
    assert len(sent.shards("ledger_entries")) == 1
    sent.issued.clear()
    with tally.store.unit_of_work(write=False) as uow:
        assert uow.ledger.get(original.id) == original  # by id alone: every shard, one read
    assert len(sent.shards("ledger_entries")) > 2
    assert not any(sql.startswith("BEGIN") for sql, _node in sent.issued)


def test_explain_shows_one_task_for_the_entry_of_a_user(
    watched: tuple[Tally, RemoteCommands],
) -> None:
    tally, sent = watched
    system(tally)
    entry = award(tally, "alice", 10).entry
    with sent.engine.connect() as connection:
        plan = "\n".join(
            connection.execute(
                text("EXPLAIN SELECT * FROM ledger_entries WHERE user_id = :user AND id = :id"),
                {"user": "alice", "id": entry.id},
            ).scalars()
        )
    assert "Task Count: 1" in plan, plan


def test_a_citus_store_says_its_reads_not_naming_the_user_fan_out(citus_url: str) -> None:
    store = SqlStore.from_url(citus_url)
    try:
        assert store.fans_out()
    finally:
        store.dispose()


def test_one_database_says_its_reads_do_not_fan_out(store: SqlStore) -> None:
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as connection:
            if citus.has_citus(connection):
                pytest.skip("this PostgreSQL has Citus: the test above covers it")
    assert not store.fans_out()


def test_a_server_bounds_each_keys_reverses_by_entry_id_alone(citus_url: str) -> None:
    """Each Reverse naming the entry alone asks every shard, found or not: a server
    allows each API key the burst of them, then answers RESOURCE_EXHAUSTED RATE_LIMITED
    with a RetryInfo before asking any shard. Naming the user is never charged, and
    another key has a bucket of its own."""
    store = SqlStore.from_url(citus_url)
    sent = RemoteCommands(store.engine)  # before the first connection
    migrate.upgrade(store.engine)
    settings = Settings(
        listen="127.0.0.1:0",
        threads=8,
        sweep_seconds=0,  # no sweep's statements among the call's
        entry_lookup_limit_per_second=0.001,  # no token comes back during the test
        entry_lookup_limit_burst=2,
    )
    built = app.build(settings, store)
    built.start()
    ghost = str(uuid.uuid4())
    try:
        keys = {n: api_keys.create_key(store, n, Scope.WRITE, (), app.utc_now()) for n in "ab"}
        admin = api_keys.create_key(store, "admin", Scope.ADMIN, (), app.utc_now()).text
        with grpc.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = {
                n: points_pb2_grpc.PointsServiceStub(keyed(channel, k.text))
                for n, k in keys.items()
            }
            setup = points_pb2_grpc.PointsServiceStub(keyed(channel, admin))
            setup.CreateSystem(
                points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp"))
            )
            entries = [
                setup.Award(
                    points_pb2.AwardRequest(
                        system_key="xp", user=common_pb2.User(id="alice"), amount=1
                    )
                ).entry.id
                for _ in range(3)
            ]

            def reverse(name: str, entry_id: str, user_id: str = "") -> points_pb2.ReverseResponse:
                request = points_pb2.ReverseRequest(entry_id=entry_id, user_id=user_id)
                response: points_pb2.ReverseResponse = stub[name].Reverse(request)
                return response

            def refused(name: str, entry_id: str) -> grpc.RpcError:
                with pytest.raises(grpc.RpcError) as caught:
                    reverse(name, entry_id)
                return caught.value

            assert reverse("a", entries[0]).entry.amount == -1
            assert error_of(refused("a", ghost))[1] == "ENTRY_NOT_FOUND"
            sent.issued.clear()
            limited = refused("a", entries[1])
            code, reason, metadata, _ = error_of(limited)
            assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
            assert metadata["key_id"] == keys["a"].key.id
            status = rpc_status.from_call(limited)
            assert status is not None
            retry = error_details_pb2.RetryInfo()
            assert [d.Unpack(retry) for d in status.details if d.Is(retry.DESCRIPTOR)] == [True]
            assert retry.retry_delay.seconds > 0
            assert sent.shards("ledger_entries") == set()  # refused before the look-up
            # Naming the user: one shard, never charged.
            sent.issued.clear()
            assert reverse("a", entries[1], user_id="alice").entry.amount == -1
            assert len({shard for shard, _node in sent.shards("ledger_entries")}) == 1
            # Another key's bucket is its own.
            assert reverse("b", entries[2]).entry.amount == -1
            assert error_of(refused("a", ghost))[1] == "RATE_LIMITED"
    finally:
        built.stop(grace_seconds=1)
        store.dispose()


def test_on_postgresql_without_citus_distribute_does_nothing(pg_store: SqlStore) -> None:
    with pg_store.engine.connect() as connection:
        if citus.has_citus(connection):
            pytest.skip("this PostgreSQL has Citus: the other tests here cover it")
    assert citus.distribute(pg_store.engine) == []


def test_a_write_waiting_on_a_held_user_gives_up_on_the_workers_too(
    citus_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row lock is waited for on a worker, where a session's lock_timeout set on the
    coordinator does not reach: each write transaction sets its own, which Citus passes
    on, so a user held elsewhere fails the batch (STORE_UNAVAILABLE) within the bound
    instead of stalling every write of the process."""
    monkeypatch.setattr(transactions, "MAX_ATTEMPTS", 1)
    store = SqlStore.from_url(citus_url, lock_timeout=0.2)
    migrate.upgrade(store.engine)
    tally = Tally(store)
    try:
        system(tally)
        award(tally, "held", 1)
        with store.engine.connect() as operator:
            operator.execute(text("SELECT * FROM users WHERE id = 'held' FOR UPDATE"))
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                award(tally, "held", 1)
            assert time.monotonic() - started < 5
            operator.rollback()
        assert award(tally, "held", 1).balance.balance == 2
    finally:
        store.dispose()


def test_eight_writers_and_a_follower_see_every_entry_once_in_order(citus_url: str) -> None:
    """On the coordinator a writer's session may hold no transaction id (its rows are
    written on the workers): the feed's watermark waits for every session in a
    transaction, so a follower misses no entry a late commit brings (with the
    transaction-id watermark of plain PostgreSQL it missed some here)."""
    store = SqlStore.from_url(citus_url)
    migrate.upgrade(store.engine)
    tally = Tally(store)
    try:
        system(tally)
        follower = Follower(tally)
        per_thread = 25

        def write(i: int) -> None:
            for n in range(per_thread):
                award(tally, f"u{i}-{n % 3}", n + 1)

        race(8, write)
        received = follower.wait_for(8 * per_thread)
        everything = watch_all(tally)
        follower.stop(tally)
        assert len(received) == 8 * per_thread
        assert [e.id for e in received] == [e.id for e in everything]
        assert follower.received == received  # nothing after the last, nothing twice
    finally:
        store.dispose()


def test_write_groups_are_the_workers_citus_places_users_on(citus_url: str) -> None:
    """The hash and the shard map computed in Python (store/shard_map.py) agree with the
    cluster's own for every id, so a batch of one write group is one worker's."""
    store = SqlStore.from_url(citus_url)
    try:
        migrate.upgrade(store.engine)
        ids = [f"user-{i}" for i in range(300)] + ["", "é", "☃ snow", "x" * 255, "a b\tc"]
        with store.engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT u.id, hashtext(u.id), p.groupid FROM unnest(CAST(:ids AS text[]))"
                    " AS u(id) JOIN pg_dist_placement p"
                    " ON p.shardid = get_shard_id_for_distribution_column('users', u.id)"
                ),
                {"ids": ids},
            ).all()
        hashes = {row[0]: row[1] for row in rows}
        groups = {row[0]: row[2] for row in rows}
        assert {i: shard_map.hashtext(i) for i in ids} == hashes
        assert dict(zip(ids, store.write_groups(ids), strict=True)) == groups
        assert len(set(groups.values())) == 2  # both workers hold users
    finally:
        store.dispose()


def test_a_batch_of_one_workers_users_locks_a_shard_a_statement_and_is_routed(
    watched: tuple[Tally, RemoteCommands],
) -> None:
    tally, sent = watched
    system(tally)
    store = tally.store
    assert isinstance(store, SqlStore)
    candidates = [f"batch-{i}" for i in range(60)]
    group = store.write_groups(candidates[:1])[0]
    users = [
        u for u, g in zip(candidates, store.write_groups(candidates), strict=True) if g == group
    ]
    shards = {store.shard_map.current().shard(u) for u in users}
    assert len(users) > len(shards) > 1  # several shards, some holding several of them
    sent.issued.clear()
    outcomes = tally.writer.post(
        [AwardPoints(commands.Award("xp", UserProfile(u), 1), T0) for u in users]
    )
    assert all(not isinstance(o, Exception) for o in outcomes)
    locks = [sql for sql, _node in sent.issued if "FOR UPDATE" in sql]
    assert len(locks) == len(shards)  # a statement a shard, not a user
    # Every user's row went to its shard from the coordinator directly: no intermediate
    # result, no COPY, and one worker for every per-user table.
    assert not [sql for sql, _ in sent.issued if "intermediate_result" in sql or "COPY" in sql]
    nodes = {node for table in PER_USER for _shard, node in sent.shards(table)}
    assert len(nodes) == 1


def test_a_user_owed_thousands_of_interval_firings_is_written_all_the_same(
    citus_url: str,
) -> None:
    """A shard's rows are one multi-row INSERT under Citus, a bound value a column a row,
    and a statement binds at most 65,535: a user idle for three days under a minutely
    TIME_INTERVAL trigger owes 4,320 entries (over 3,449 ledger rows of 19 columns), which
    go in several statements rather than one that can never be sent (found in review)."""
    store = SqlStore.from_url(citus_url)
    try:
        migrate.upgrade(store.engine)
        tally = Tally(store, clock=lambda: T0)
        system(tally)
        award(tally, "idle", 1)
        trigger(
            tally,
            TriggerType.TIME_INTERVAL,
            1,
            interval_unit=IntervalUnit.MINUTES,
            interval_count=1,
        )
        result = award(tally, "idle", 1, at=T0 + timedelta(days=3))
        assert result.balance.balance == 1 + 3 * 24 * 60 + 1
        with store.engine.connect() as connection:
            written = connection.execute(
                text("SELECT count(*), sum(amount) FROM ledger_entries WHERE user_id = 'idle'")
            ).one()
        assert tuple(written) == (2 + 3 * 24 * 60, result.balance.balance)
    finally:
        store.dispose()
