"""Running the prebuilt statements on a unit of work's connection.

On PostgreSQL each statement's SQL is compiled once (by SQLAlchemy, for psycopg) and run
straight on the driver's cursor of the unit of work's connection, inside the same
transaction: SQLAlchemy's per-call execution (result metadata, parameter processing)
cost about three times the driver's own work per statement, and a batch runs several.
The statements bind only values psycopg adapts as they are (strings, numbers, aware
datetimes, lists as arrays, a batch's rows as one JSON text), and rows come back as
mappings of label to value, JSON already decoded and times in UTC (the session's time
zone, see database.py). On SQLite, in-process, statements run through SQLAlchemy, whose
type processing SQLite needs (it keeps no time zones).

In a write, a statement that returns nothing is sent later (`deferred`): queued, and sent
in one round trip (psycopg's pipeline mode) with the next statement whose rows are read,
or with COMMIT. Statements still run in the order they were issued, so a read sees what
came before it; what changes is when a failure is seen: at the next read, or at commit
(as a definite failure with the server's SQLSTATE, told apart from a lost connection by
the unit of work). A batch's writes after its ledger insert then cost one round trip
with the COMMIT, instead of one each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any, ClassVar, cast

import psycopg
from psycopg import pq
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Executable

from server.store.statements.tables import FIXED_PLAN, RowsInsert

Row = Mapping[str, Any]
Params = Mapping[str, Any]
# A statement sent later: its SQL, its bound values, whether to prepare it.
_Later = tuple[str, Params, bool | None]

_DIALECT = pg_psycopg.dialect()  # type: ignore[no-untyped-call]


class Compiled:
    """A statement's PostgreSQL text (%(name)s placeholders) and the values it binds
    itself (literals in the statement, such as `id = 1`), compiled once."""

    _known: ClassVar[dict[int, tuple[Executable, Compiled]]] = {}

    def __init__(self, statement: Executable) -> None:
        compiled = cast(ClauseElement, statement).compile(dialect=_DIALECT)
        self.sql = str(compiled)
        self.fixed = {k: v for k, v in compiled.params.items() if v is not None}
        # prepared at once and kept, in writes too (statements.tables.fixed_plan)
        self.fixed_plan = bool(statement.get_execution_options().get(FIXED_PLAN, False))

    @classmethod
    def of(cls, statement: Executable) -> Compiled:
        known = cls._known.get(id(statement))
        if known is None or known[0] is not statement:
            known = (statement, cls(statement))
            cls._known[id(statement)] = known
        return known[1]

    def bind(self, params: Params | None) -> Params:
        if not self.fixed:
            return params or {}
        return {**self.fixed, **(params or {})}


class Executor:
    """The statements' one way to the database, for the repositories of a unit of work."""

    def __init__(
        self, connection: Connection, *, replan: bool = False, deferred: bool = False
    ) -> None:
        """`replan`: plan every statement for its parameters (a write's), never reuse a
        prepared generic plan. A generic plan is kept until its tables are next analyzed,
        and one made while a table was small (the idempotency keys of a young database)
        scans the whole table for a key: measured 5-10 ms a batch a minute later.
        A statement whose plan has no choice in it (statements.tables.fixed_plan) is
        prepared all the same: reads and writes alike.
        `deferred` (a write's transaction; PostgreSQL only): statements that return
        nothing are sent later (see the module's docstring); `commit` sends the rest."""
        self.connection = connection
        self.direct = connection.dialect.name == "postgresql"
        self.prepare: bool | None = False if replan else None  # None: psycopg decides
        self.deferred = deferred and self.direct
        self._later: list[_Later] = []
        self._begun = False  # (deferred) BEGIN is sent, or waits to be
        self._with_begin: list[str] = []  # (deferred) what every BEGIN brings

    def with_begin(self, sql: str) -> None:
        """Run a statement (a SET LOCAL) at the start of every transaction of this
        executor, sent with its BEGIN (deferred), or now."""
        if not self.deferred:
            self.connection.exec_driver_sql(sql)
            return
        self._with_begin.append(sql)

    def commit(self) -> None:
        """Commit; in a deferred executor, COMMIT goes in one round trip with the
        statements still waiting to be sent (and a failure of one of them skips it:
        the server ignores what follows a failed statement of a pipeline)."""
        if not self.deferred:
            self.connection.commit()
            return
        if self._begun:
            driver = self._driver()
            if self._later and self._later[0][0] == "BEGIN":
                _check_alive(driver)  # nothing of the transaction was sent yet
            self._later.append(("COMMIT", {}, False))
            try:
                with driver.pipeline():
                    self._send_later(driver)
            except psycopg.Error as error:
                raise _wrapped("COMMIT", None, error) from error
            finally:
                self.discard()
        self.connection.commit()  # SQLAlchemy's transaction (the driver has none open now)

    def discard(self) -> None:
        """Forget what waits to be sent (the transaction rolls back, or has committed):
        the next statement begins a new transaction."""
        self._later.clear()
        self._begun = False

    def _open(self) -> None:
        """(deferred) Begin the transaction with the first statement sent: BEGIN goes in
        the same round trip (the driver runs in autocommit, and would otherwise send its
        own BEGIN in a round trip of its own, even in a pipeline)."""
        if not self._begun:
            self._begun = True
            begin: list[_Later] = [("BEGIN", {}, False)]
            begin += [(sql, {}, False) for sql in self._with_begin]
            self._later[:0] = begin

    def _send_later(self, driver: psycopg.Connection[Any]) -> None:
        """Send the statements waiting (inside the caller's pipeline), in order."""
        later, self._later = self._later, []
        for sql, params, prepare in later:
            driver.execute(sql, params or None, prepare=prepare)

    def rows(self, statement: Executable, params: Params | None = None) -> list[Row]:
        if not self.direct:
            result = self.connection.execute(statement, params or {})
            return [cast(Row, r._mapping) for r in result]
        return self._together([self._sent(statement, params)])[0]

    def first(self, statement: Executable, params: Params | None = None) -> Row | None:
        found = self.rows(statement, params)
        return found[0] if found else None

    def scalar(self, statement: Executable, params: Params | None = None) -> Any:
        row = self.first(statement, params)
        return None if row is None else next(iter(row.values()))

    def run(self, statement: Executable, params: Params | Sequence[Params]) -> None:
        """Run a statement that returns nothing, once or (with a list) for each row;
        in a deferred executor, later."""
        if not self.direct:
            self.connection.execute(statement, params)
            return
        if isinstance(params, Mapping):
            sent = [self._sent(statement, params)]
        else:  # a row's JSON values bound as jsonb
            sent = [self._sent(statement, _adapted(p)) for p in params]
        if self.deferred:
            self._open()
            self._later.extend(sent)
        else:
            self._together(sent)

    def rows_together(self, reads: Sequence[tuple[Executable, Params]]) -> list[list[Row]]:
        """Run these statements in order and return each one's rows: on PostgreSQL sent
        together (psycopg's pipeline mode: one round trip), each still its own statement
        (under READ COMMITTED, its own snapshot, taken when the one before has finished)."""
        if not self.direct:
            return [self.rows(statement, params) for statement, params in reads]
        return self._together([self._sent(statement, params) for statement, params in reads])

    def insert_rows(
        self, insert: RowsInsert, parts: Sequence[Sequence[Params]], *, returning: bool
    ) -> list[Row]:
        """Insert each part's rows with one multi-row statement (PostgreSQL; see
        RowsInsert), the statements sent together (psycopg's pipeline mode: one round
        trip), and return what they returned when `returning` (else, in a write's
        transaction, they are sent later)."""
        sent: list[_Later] = []
        for rows in (chunk for part in parts for chunk in insert.chunks(part)):
            compiled = Compiled.of(insert.of(len(rows)))
            sent.append((compiled.sql, compiled.bind(_rows_params(insert, rows)), self.prepare))
        if self.deferred and not returning:
            self._open()
            self._later.extend(sent)
            return []
        return [row for rows in self._together(sent) for row in rows]

    def _sent(self, statement: Executable, params: Params | None) -> _Later:
        """A statement as it is sent: its SQL, its values, whether psycopg prepares it
        (None: as it decides, after 5 uses; a fixed plan at once)."""
        compiled = Compiled.of(statement)
        prepare = True if compiled.fixed_plan else self.prepare
        return compiled.sql, compiled.bind(params), prepare

    def _together(self, sent: Sequence[_Later]) -> list[list[Row]]:
        """Send what waits and then these statements, in order, and return each one's
        rows: in one round trip (psycopg's pipeline mode) when there is more than one
        statement to send, else as a plain statement."""
        driver = self._driver()
        cursors: list[psycopg.Cursor[Any]] = []
        sql = ""
        try:
            with driver.pipeline() if self._later or len(sent) > 1 else nullcontext():
                self._send_later(driver)
                for sql, params, prepare in sent:
                    cursor = driver.cursor(row_factory=dict_row)
                    cursors.append(cursor)
                    cursor.execute(sql, params, prepare=prepare)
            return [cast(list[Row], c.fetchall()) if c.description else [] for c in cursors]
        except psycopg.Error as error:
            raise _wrapped(sql, None, error) from error
        finally:
            for cursor in cursors:
                cursor.close()

    def _driver(self) -> psycopg.Connection[Any]:
        if not self.connection.in_transaction():
            self.connection.begin()  # so that the unit of work's commit commits this work
        if self.deferred:
            self._open()
        return self.connection.connection.driver_connection  # type: ignore[return-value]


class NothingSent(Exception):
    """The connection was found gone before anything of the transaction was sent to it:
    nothing can have been committed, so the unit of work may run again."""


def _check_alive(driver: psycopg.Connection[Any]) -> None:
    """Read what the server sent meanwhile (never blocking): a pooled connection whose
    backend was terminated has a FATAL and an end of file waiting (libpq's first read
    takes the message, a second finds the end). Sent with a COMMIT, its failure would
    leave the outcome unknown; found before, it is a plain retry."""
    try:
        driver.pgconn.consume_input()
        driver.pgconn.consume_input()
    except psycopg.OperationalError as error:
        raise NothingSent(str(error)) from error
    if driver.closed or driver.pgconn.status == pq.ConnStatus.BAD:
        raise NothingSent("the store connection is closed")


def _rows_params(insert: RowsInsert, rows: Sequence[Params]) -> dict[str, Any]:
    params = insert.params(rows)
    for i in range(len(rows)):
        for name in insert.json:
            params[f"{name}_{i}"] = Jsonb(params[f"{name}_{i}"])
    return params


def _adapted(row: Params) -> Params:
    """A row to write, its JSON columns' values (dicts and lists) bound as jsonb."""
    if not any(isinstance(v, dict | list) for v in row.values()):
        return row
    return {k: Jsonb(v) if isinstance(v, dict | list) else v for k, v in row.items()}


def _wrapped(sql: str, params: Any, error: psycopg.Error) -> DBAPIError:
    """The driver's error as SQLAlchemy would raise it, so that the unit of work and the
    retry rules see one kind of store error."""
    return DBAPIError.instance(sql, params, error, psycopg.Error)  # type: ignore[return-value]
