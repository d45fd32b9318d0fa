"""The tables the statements read and write, and what the statements of every aggregate
share: the dialect's forms (`Dialect`) and a batch's rows bound as one JSON set."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from collections.abc import Sequence as Many
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    ColumnElement,
    Executable,
    Integer,
    Select,
    Sequence,
    String,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import table as sa_table
from sqlalchemy.sql.elements import ColumnClause

from server.store.models import (
    AccountRow,
    ApiKeyRow,
    BoostRow,
    ConfigVersionRow,
    CreditLotRow,
    EventRow,
    IdempotencyRow,
    LedgerEntryRow,
    LevelChangeRow,
    LevelRow,
    MetricTotalRow,
    SystemRow,
    TriggerRow,
    UserRow,
)

# PostgreSQL's view of its sessions (the live feeds' watermark reads it).
activity = sa_table(
    "pg_stat_activity",
    column("pid", Integer),
    column("datname", String),
    column("backend_xid", String),
    column("backend_type", String),
    column("state", String),
    column("xact_start", String),
)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


systems = _table(SystemRow)
users = _table(UserRow)
accounts = _table(AccountRow)
lots = _table(CreditLotRow)
ledger = _table(LedgerEntryRow)
idempotency = _table(IdempotencyRow)
config = _table(ConfigVersionRow)
triggers = _table(TriggerRow)
metric_totals = _table(MetricTotalRow)
events = _table(EventRow)
levels = _table(LevelRow)
boosts = _table(BoostRow)
level_changes = _table(LevelChangeRow)
api_keys = _table(ApiKeyRow)

# The configuration's version (every statement that reads it as a subquery reads this).
config_version = select(config.c.version).where(config.c.id == 1)


class Dialect:
    """What the statements of one dialect are built with."""

    def __init__(self, name: str, *, citus: bool = False) -> None:
        self.name = name
        self.insert = postgresql.insert if name == "postgresql" else sqlite.insert
        # PostgreSQL's own forms (LATERAL, arrays, rows bound as one JSON array).
        self.set_based = name == "postgresql"
        self.citus = citus
        # PostgreSQL writes a batch's rows of the per-user tables with one set-based
        # statement per table (rows bound as one JSON array, see json_rows). SQLite,
        # in-process, runs executemany; so does Citus, where an INSERT ... SELECT from
        # a function goes through the coordinator (an intermediate result copied to the
        # shards) and a statement writing several shards commits in two phases, while
        # a row's statement is routed to its shard (psycopg pipelines executemany).
        self.json_writes = self.set_based and not citus

    def one_of(self, column: ColumnClause[Any] | Any, name: str) -> ColumnElement[bool]:
        """`column` is one of the list bound as `name`: `= ANY(array)` on PostgreSQL
        (one statement text, and so one prepared plan, whatever the list's length),
        an expanding IN on SQLite."""
        if self.name == "postgresql":
            return column == any_(bindparam(name, type_=postgresql.ARRAY(String)))
        return column.in_(bindparam(name, expanding=True))


def json_rows(table: Table, names: list[str]) -> Any:
    """The rows of a JSON array bound as `rows` (one object per row, keyed by column name)
    as a table: a batch's rows as one set, so that one statement writes them all, its text
    (and so its prepared plan) the same whatever the batch's size, and its one parameter
    made by a single json.dumps (PostgreSQL)."""
    return (
        func.jsonb_to_recordset(cast(bindparam("rows", type_=Text), postgresql.JSONB))
        .table_valued(*(column(n, _plain(table.c[n].type)) for n in names))
        .render_derived(name="batch", with_types=True)
    )


def from_json(table: Table, names: list[str]) -> Select[Any]:
    """SELECT of `names` from json_rows."""
    rows = json_rows(table, names)
    return select(*(rows.c[n] for n in names))


# An execution option: the statement's plan has no choice in it, so a prepared plan
# cannot go stale (store/execution.py prepares it even in a write; see fixed_plan).
FIXED_PLAN = "tally_fixed_plan"


def fixed_plan(statement: Executable) -> Any:
    """`statement`, marked as one whose plan is the same whatever the tables hold: an
    INSERT ... SELECT FROM json_rows (ON CONFLICT and RETURNING included) scans the
    function and inserts, its conflicts found by the unique index it names, with no
    join, scan or index to choose. Such a statement is prepared on its first use and
    its generic plan kept, which saves parsing and planning it for every batch
    (planning the three of an award's batch took 75 of the 500 us per award that
    pg_stat_statements counted, bench/profiles/award-cost-2026-12-07.md); a
    write's other statements, whose plans depend on the tables' statistics, are still
    planned for their values every time (Executor's replan)."""
    return statement.execution_options(**{FIXED_PLAN: True})


def _plain(type_: Any) -> Any:
    """The column's type as SQL knows it (a TypeDecorator's own implementation)."""
    return getattr(type_, "impl", type_)


def numbers(sequence: Sequence) -> Select[Any]:
    """The next :n numbers of a sequence, in order (Citus: taken on the coordinator,
    where the sequence lives, before a batch's rows are written a shard at a time)."""
    taken = select(sequence.next_value().label("number")).select_from(
        func.generate_series(1, bindparam("n", type_=Integer))
    )
    return taken.order_by(literal_column("number"))


T = TypeVar("T")

MAX_BOUND_VALUES = 65_535  # the most a PostgreSQL statement may bind
MAX_ROWS_PER_INSERT = 500  # and fewer statement shapes to build and prepare


class RowsInsert:
    """Under Citus, an INSERT of a batch's rows of one shard as one multi-row VALUES
    statement, which Citus routes to that shard as it is (one statement a shard rather
    than a row; a statement over several shards would commit in two phases). Built once
    for each number of rows, each row's values bound as `<column>_<row>`. A statement
    binds at most 65,535 values (PostgreSQL's protocol), so a shard's rows beyond
    `max_rows` go in several statements (a user owed thousands of TIME_INTERVAL entries
    is written all the same)."""

    def __init__(self, table: Table, names: list[str], finish: Callable[[Any], Executable]) -> None:
        self.table = table
        self.names = names
        # the columns psycopg must be told are JSON (dicts and lists bound as jsonb)
        self.user = "id" if table.name == "users" else "user_id"  # its shard's key
        self.json = frozenset(n for n in names if isinstance(_plain(table.c[n].type), JSON))
        self._finish = finish  # ON CONFLICT, RETURNING: from the INSERT ... VALUES
        self.max_rows = min(MAX_ROWS_PER_INSERT, MAX_BOUND_VALUES // len(names))
        self._built: dict[int, Executable] = {}
        self._mutex = threading.Lock()

    def of(self, rows: int) -> Executable:
        built = self._built.get(rows)
        if built is None:
            values = [
                {n: bindparam(f"{n}_{i}", type_=self.table.c[n].type) for n in self.names}
                for i in range(rows)
            ]
            built = self._finish(postgresql.insert(self.table).values(values))
            with self._mutex:
                self._built.setdefault(rows, built)
        return built

    def chunks(self, rows: Many[T]) -> list[Many[T]]:
        """`rows` in runs of at most `max_rows`, each one statement's."""
        step = self.max_rows
        return [rows[at : at + step] for at in range(0, len(rows), step)]

    def params(self, rows: Many[Mapping[str, Any]]) -> dict[str, Any]:
        return {f"{n}_{i}": row[n] for i, row in enumerate(rows) for n in self.names}
