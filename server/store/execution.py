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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Executable

from server.store.statements.tables import FIXED_PLAN, RowsInsert

Row = Mapping[str, Any]
Params = Mapping[str, Any]

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

    def __init__(self, connection: Connection, *, replan: bool = False) -> None:
        """`replan`: plan every statement for its parameters (a write's), never reuse a
        prepared generic plan. A generic plan is kept until its tables are next analyzed,
        and one made while a table was small (the idempotency keys of a young database)
        scans the whole table for a key: measured 5-10 ms a batch a minute later.
        A statement whose plan has no choice in it (statements.tables.fixed_plan) is
        prepared all the same: reads and writes alike."""
        self.connection = connection
        self.direct = connection.dialect.name == "postgresql"
        self.prepare: bool | None = False if replan else None  # None: psycopg decides

    def rows(self, statement: Executable, params: Params | None = None) -> list[Row]:
        if not self.direct:
            result = self.connection.execute(statement, params or {})
            return [cast(Row, r._mapping) for r in result]
        with self._cursor(statement, params) as cursor:
            return cast(list[Row], cursor.fetchall())

    def first(self, statement: Executable, params: Params | None = None) -> Row | None:
        found = self.rows(statement, params)
        return found[0] if found else None

    def scalar(self, statement: Executable, params: Params | None = None) -> Any:
        row = self.first(statement, params)
        return None if row is None else next(iter(row.values()))

    def run(self, statement: Executable, params: Params | Sequence[Params]) -> None:
        """Run a statement that returns nothing, once or (with a list) for each row."""
        if not self.direct:
            self.connection.execute(statement, params)
            return
        if isinstance(params, Mapping):
            with self._cursor(statement, params):
                return
        compiled = Compiled.of(statement)
        try:
            with self._driver().cursor() as cursor:
                cursor.executemany(compiled.sql, [compiled.bind(_adapted(p)) for p in params])
        except psycopg.Error as error:
            raise _wrapped(compiled.sql, params, error) from error

    def rows_each(self, statement: Executable, params: Sequence[Params]) -> list[Row]:
        """Run a statement once for each of `params` (pipelined by psycopg: one round
        trip) and return what each returned, in order."""
        if not self.direct:
            return [
                cast(Row, r._mapping) for p in params for r in self.connection.execute(statement, p)
            ]
        compiled = Compiled.of(statement)
        found: list[Row] = []
        try:
            with self._driver().cursor(row_factory=dict_row) as cursor:
                cursor.executemany(compiled.sql, [compiled.bind(p) for p in params], returning=True)
                while True:
                    found.extend(cursor.fetchall())
                    if not cursor.nextset():
                        break
        except psycopg.Error as error:
            raise _wrapped(compiled.sql, params, error) from error
        return found

    def insert_rows(self, insert: RowsInsert, parts: Sequence[Sequence[Params]]) -> list[Row]:
        """Insert each part's rows with one multi-row statement (PostgreSQL; see
        RowsInsert), the statements sent together (psycopg's pipeline mode: one round
        trip), and return what they returned, if anything."""
        driver = self._driver()
        cursors: list[psycopg.Cursor[Any]] = []
        sql = ""
        try:
            with driver.pipeline():
                for rows in (chunk for part in parts for chunk in insert.chunks(part)):
                    compiled = Compiled.of(insert.of(len(rows)))
                    sql = compiled.sql
                    cursor = driver.cursor(row_factory=dict_row)
                    cursors.append(cursor)
                    params = compiled.bind(_rows_params(insert, rows))
                    cursor.execute(sql, params, prepare=self.prepare)
            return [row for c in cursors if c.description for row in c.fetchall()]
        except psycopg.Error as error:
            raise _wrapped(sql, None, error) from error
        finally:
            for cursor in cursors:
                cursor.close()

    def _driver(self) -> psycopg.Connection[Any]:
        if not self.connection.in_transaction():
            self.connection.begin()  # so that the unit of work's commit commits this work
        return self.connection.connection.driver_connection  # type: ignore[return-value]

    def _cursor(self, statement: Executable, params: Params | None) -> Any:
        compiled = Compiled.of(statement)
        cursor = self._driver().cursor(row_factory=dict_row)
        prepare = True if compiled.fixed_plan else self.prepare
        try:
            cursor.execute(compiled.sql, compiled.bind(params), prepare=prepare)
        except psycopg.Error as error:
            cursor.close()
            raise _wrapped(compiled.sql, params, error) from error
        return cursor


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
