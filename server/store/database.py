"""Engines and the unit of work, for SQLite (embedded) and PostgreSQL.

PostgreSQL: writers run READ COMMITTED and serialize per user on the users' rows (FOR
UPDATE); reads run in autocommit, each a single statement and so one snapshot.
SQLite: one writer at a time, taken up front with BEGIN IMMEDIATE so that a transaction
never fails half-way on a lock upgrade; readers run beside it thanks to WAL.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from psycopg import pq
from psycopg.types.json import set_json_loads
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from server.domain.errors import StoreUnavailable, TransientStoreError
from server.store.analytics import SqlAnalyticsRepository
from server.store.audit import SqlAuditRepository
from server.store.execution import Executor, NothingSent
from server.store.repositories.api_keys import SqlApiKeyRepository
from server.store.repositories.boosts import SqlBoostRepository
from server.store.repositories.events import SqlEventRepository
from server.store.repositories.feeds import SqlFeedRepository
from server.store.repositories.idempotency import SqlIdempotencyRepository
from server.store.repositories.ledger import SqlAccountRepository, SqlLedgerRepository
from server.store.repositories.levels import SqlLevelRepository
from server.store.repositories.systems import SqlSystemRepository, SqlTriggerRepository
from server.store.repositories.users import SqlUserRepository
from server.store.shard_map import ShardMap
from server.store.statements import statements_for

log = logging.getLogger(__name__)

# SQLSTATEs worth a retry: serialization failure, deadlock, and the connection classes.
TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}
# SQLSTATE classes of a COMMIT whose outcome is unknown: the connection's, and the
# server's shutdown or crash (57P01-57P05), which may come after the commit was made.
UNKNOWN_OUTCOME = ("08", "57P")
WRITE_OPTION = "tally_write"
CITUS = "tally_citus"  # a connection's info: its database has the citus extension
# A connection's info, on Citus: what a write transaction runs first (see on_connect).
LOCK_TIMEOUT_STATEMENT = "tally_lock_timeout_statement"


# How long a statement waits for a row lock before it fails (55P03, retried, then
# STORE_UNAVAILABLE): a batch waiting on a user that something else holds (an operator's
# open transaction, a stuck process) would otherwise hold up every write of its process.
LOCK_TIMEOUT_SECONDS = 5.0


def create_store_engine(
    url: str, *, pool_size: int = 10, lock_timeout: float = LOCK_TIMEOUT_SECONDS
) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return _postgres_engine(url, pool_size, lock_timeout)


EMPTY_JSON: dict[bytes, Any] = {b"{}": {}, b"[]": []}


def _json_loads(data: bytes | str) -> Any:
    """psycopg's JSON loader, minus most of its cost: most ledger rows carry empty metadata
    and boost lists, and bytes decode faster than json.loads detects their encoding."""
    if isinstance(data, bytes):
        empty = EMPTY_JSON.get(data)
        if empty is not None:
            return type(empty)()  # a fresh one: callers may mutate what they get
        data = data.decode()
    return json.loads(data)


def _postgres_engine(url: str, pool_size: int, lock_timeout: float) -> Engine:
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping (a round trip per checkout): a connection found dead by its first
        # statement is a transient error, and the unit of work runs again on a fresh one.
        pool_recycle=1800,
    )

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        set_json_loads(_json_loads, dbapi_connection)
        with dbapi_connection.cursor() as cursor:
            # Times come back in UTC, whether SQLAlchemy or the driver reads them.
            cursor.execute("SET TIME ZONE 'UTC'")
            cursor.execute(f"SET lock_timeout = {int(lock_timeout * 1000)}")
            # A Citus coordinator refuses FOR UPDATE over several users' rows at once
            # (they may be on several shards): there a batch locks a shard's users at a time.
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
            record.info[CITUS] = cursor.fetchone() is not None
            if record.info[CITUS]:
                # The lock is waited for on the worker that holds the row, and a session's
                # lock_timeout stays on the coordinator; a transaction's own (SET LOCAL)
                # goes with it to every worker it touches when Citus is told to pass it on.
                cursor.execute("SET citus.propagate_set_commands = 'local'")
                record.info[LOCK_TIMEOUT_STATEMENT] = (
                    f"SET LOCAL lock_timeout = {int(lock_timeout * 1000)}"
                )
        dbapi_connection.commit()

    return engine


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Take transaction control from pysqlite, so BEGIN is ours to say.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged write survives a power cut too, not only a killed
        # process (NORMAL may lose the last commits). Group commit pays the fsync once
        # per batch of changes.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def is_transient(error: BaseException) -> bool:
    """Whether a store error is worth retrying: lost connection, deadlock, busy database."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    orig = getattr(error, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in TRANSIENT_SQLSTATES or (sqlstate or "").startswith("08"):
        return True
    if isinstance(orig, sqlite3.OperationalError):
        message = str(orig)
        return "locked" in message or "busy" in message
    return isinstance(error, OperationalError)


class SqlUnitOfWork:
    """One transaction over the store's repositories; rolls back unless committed.

    A unit of work belongs to one thread (one gRPC call); it holds one pooled connection
    from `__enter__` to `__exit__`. The transaction begins with the first statement
    (SQLAlchemy's autobegin; on SQLite a writer's BEGIN IMMEDIATE), and after a commit or
    rollback the next statement begins a new one.
    """

    systems: SqlSystemRepository
    users: SqlUserRepository
    accounts: SqlAccountRepository
    ledger: SqlLedgerRepository
    idempotency: SqlIdempotencyRepository
    triggers: SqlTriggerRepository
    events: SqlEventRepository
    levels: SqlLevelRepository
    boosts: SqlBoostRepository
    api_keys: SqlApiKeyRepository
    feeds: SqlFeedRepository
    analytics: SqlAnalyticsRepository
    audit: SqlAuditRepository

    def __init__(
        self,
        engine: Engine,
        *,
        write: bool,
        snapshot: bool = False,
        shard_map: ShardMap | None = None,
    ) -> None:
        self._engine = engine
        self._shard_map = shard_map
        self._write = write
        self._snapshot = snapshot
        self._connection: Connection | None = None
        self._db: Executor

    def __enter__(self) -> Self:
        opened: Connection | None = None
        try:
            connection = opened = self._engine.connect()
            if self._write and self._engine.dialect.name == "postgresql":
                # The executor says BEGIN and COMMIT itself, each in one round trip with
                # other statements (execution.Executor, deferred): the driver, left in
                # autocommit, sends none of its own.
                connection = connection.execution_options(
                    isolation_level="AUTOCOMMIT", **{WRITE_OPTION: True}
                )
            elif self._write:
                connection = connection.execution_options(**{WRITE_OPTION: True})
            elif self._snapshot and self._engine.dialect.name == "postgresql":
                # One snapshot for the whole transaction, however many statements it runs
                # (SQLite's deferred read transaction is one already, in WAL).
                connection = connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            elif self._engine.dialect.name == "postgresql":
                # A read that must agree with itself (a balance and its recent entries, a
                # page and its total) is one statement, and so one snapshot: reads need no
                # transaction, and skip its BEGIN and ROLLBACK round trips. (SQLite reads
                # the parts apart, in its deferred BEGIN, which is a snapshot in WAL.)
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as exc:
            if opened is not None:
                opened.close()  # back to the pool (invalidated, if it died)
            if is_transient(exc):
                raise TransientStoreError(str(exc.orig)) from exc
            raise
        self._connection = connection
        citus = connection.info.get(CITUS, False)
        sql = statements_for(self._engine.dialect.name, citus=citus)
        db = self._db = Executor(connection, replan=self._write, deferred=self._write)
        lock_timeout = connection.info.get(LOCK_TIMEOUT_STATEMENT)
        if self._write and lock_timeout:
            # Only writes wait for row locks (reads see their snapshot), so only they pay
            # the statement, and only on Citus, where the session's timeout does not reach;
            # it goes with each transaction's BEGIN. (Not an engine "begin" event:
            # any engine event makes SQLAlchemy dispatch on every statement.)
            db.with_begin(lock_timeout)
        shards = None
        if citus and self._write:
            shards = (self._shard_map or ShardMap(self._engine.connect)).current()
        self.systems = SqlSystemRepository(db, sql)
        self.users = SqlUserRepository(db, sql, shards=shards)
        self.accounts = SqlAccountRepository(db, sql, shards=shards)
        self.ledger = SqlLedgerRepository(db, sql, shards=shards)
        self.idempotency = SqlIdempotencyRepository(db, sql, shards=shards)
        self.triggers = SqlTriggerRepository(db, sql)
        self.events = SqlEventRepository(db, sql, shards=shards)
        self.levels = SqlLevelRepository(db, sql, shards=shards)
        self.boosts = SqlBoostRepository(db, sql)
        self.api_keys = SqlApiKeyRepository(db, sql)
        self.feeds = SqlFeedRepository(db, sql, citus=citus)
        self.analytics = SqlAnalyticsRepository(connection)
        self.audit = SqlAuditRepository(connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        self._db.discard()
        try:
            self._connection.rollback()
        except DBAPIError as error:  # the connection is gone; the transaction went with it
            log.warning("rollback failed, the connection is gone: %s", _first_line(error))
        finally:
            self._connection.close()  # back to the pool, which replaces a broken one
        if isinstance(exc, DBAPIError) and is_transient(exc):
            raise TransientStoreError(str(exc.orig)) from exc

    def commit(self) -> None:
        """Commit (with the writes still waiting to be sent: Executor.deferred).

        A failure the server reports (a SQLSTATE outside the connection and shutdown
        classes, the connection still there) means nothing was committed: a transient one
        runs the unit of work again, any other is raised as it is (a write's own failure,
        sent with the COMMIT). A connection lost with or after the error leaves the
        outcome unknown, unless it was found gone before anything was sent."""
        assert self._connection is not None
        try:
            self._db.commit()
        except NothingSent as exc:  # the connection was gone before the transaction went
            raise TransientStoreError(str(exc)) from exc
        except DBAPIError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if _lost_with(self._connection, exc):
                pass  # the error may have come after the commit was made: unknown
            elif sqlstate in ("40001", "40P01", "55P03") or isinstance(
                exc.orig, sqlite3.OperationalError
            ):
                raise TransientStoreError(str(exc.orig)) from exc
            elif sqlstate and not sqlstate.startswith(UNKNOWN_OUTCOME):
                raise
            # The connection broke during COMMIT: the outcome is unknown, so a blind retry
            # could write twice. The caller retries with its idempotency key instead.
            raise StoreUnavailable(
                "the store connection failed while committing; the outcome is unknown, "
                "retry with the same idempotency key"
            ) from exc

    def rollback(self) -> None:
        assert self._connection is not None
        self._db.discard()
        self._connection.rollback()


def _lost_with(connection: Connection, error: DBAPIError) -> bool:
    """Whether the connection went with a commit's error (a FATAL or PANIC, or the
    driver's connection closed): the server may have written the commit record before it
    failed (a PANIC on fsync, or 'cannot abort transaction, it was already committed'),
    whatever SQLSTATE it sent."""
    if error.connection_invalidated:
        return True
    diag = getattr(error.orig, "diag", None)
    if getattr(diag, "severity_nonlocalized", None) in ("FATAL", "PANIC"):
        return True
    if connection.dialect.name != "postgresql":
        return False
    driver = connection.connection.driver_connection
    return bool(driver is None or driver.closed or driver.pgconn.status == pq.ConnStatus.BAD)


def _first_line(error: DBAPIError) -> str:
    text = str(error.orig).strip()
    return text.splitlines()[0] if text else type(error.orig).__name__


class SqlStore:
    """The store the services use: hands out units of work over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._citus: bool | None = None  # known once a connection has told
        self.shard_map = ShardMap(engine.connect)

    @classmethod
    def from_url(
        cls, url: str, *, pool_size: int = 10, lock_timeout: float = LOCK_TIMEOUT_SECONDS
    ) -> SqlStore:
        return cls(create_store_engine(url, pool_size=pool_size, lock_timeout=lock_timeout))

    def unit_of_work(self, *, write: bool) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=write, shard_map=self.shard_map)

    def write_groups(self, user_ids: Sequence[str]) -> list[int]:
        """Under Citus, the worker (node group) that holds each user's shard, so that
        a batch commits on one worker; elsewhere one group (0) for every user."""
        if not self._on_citus():
            return [0] * len(user_ids)
        shards = self.shard_map.current()
        return [shards.group(user_id) for user_id in user_ids]

    def fans_out(self) -> bool:
        """Under Citus, where per-user tables are distributed by user, a read that does
        not name the user asks every shard (ports.Sharding)."""
        return self._on_citus()

    def views_together(self) -> bool:
        """On one PostgreSQL, many users' views read as one statement (ports.ViewsTogether)."""
        return self.engine.dialect.name == "postgresql" and not self._on_citus()

    def _on_citus(self) -> bool:
        """Whether the database is a Citus coordinator, asked once; a store that cannot
        be reached to say is STORE_UNAVAILABLE to the call that asked (never INTERNAL)."""
        if self._citus is None:
            try:
                with self.engine.connect() as connection:
                    self._citus = bool(connection.info.get(CITUS, False))
            except DBAPIError as exc:
                raise StoreUnavailable() from exc
        return self._citus

    def snapshot(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, write=False, snapshot=True)

    def dispose(self) -> None:
        self.engine.dispose()
