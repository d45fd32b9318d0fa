"""What every repository shares: its unit of work's executor and statements, and how
it writes many rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.sql import Executable

from server.store.execution import Executor, Row
from server.store.shard_map import Shards
from server.store.statements import Statements
from server.store.statements.tables import RowsInsert


class Repository:
    def __init__(self, db: Executor, sql: Statements, *, shards: Shards | None = None) -> None:
        self.db = db
        self.sql = sql
        self.shards = shards  # under Citus, in a write: where each user's rows are

    def _feed_rows(
        self,
        every_system: Executable,
        of_system: Executable,
        system_key: str,
        after_sequence: int,
        through_sequence: int,
        limit: int,
    ) -> list[Row]:
        """A live feed's rows numbered after `after_sequence` through `through_sequence`,
        of one system (`of_system`) or of all (`every_system`, for system_key '')."""
        params: dict[str, Any] = {
            "after": after_sequence,
            "through": through_sequence,
            "limit": limit,
        }
        if system_key:
            params["system_key"] = system_key
        return self.db.rows(of_system if system_key else every_system, params)

    def _write_rows(self, statement: Executable, rows: list[dict[str, Any]]) -> None:
        """Run a statement that writes many rows: set-based (the rows as one JSON
        parameter) where the dialect's statement is, else as executemany."""
        self.db.run(statement, rows_json(rows) if self.sql.set_based else rows)

    def _write_user_rows(
        self,
        statement: Executable | RowsInsert,
        rows: list[dict[str, Any]],
        *,
        returning: bool = False,
    ) -> list[Row]:
        """Write a batch's rows of a per-user table: one set-based statement (PostgreSQL);
        under Citus one multi-row statement a shard (RowsInsert), returning what they
        return when asked (`returning`); else one a row (SQLite, and updates under Citus:
        executemany). What returns nothing is sent later in a write (Executor.deferred)."""
        if isinstance(statement, RowsInsert):
            parts = self._by_shard(statement.user, rows)
            return self.db.insert_rows(statement, parts, returning=returning)
        self.db.run(statement, rows_json(rows) if self.sql.json_writes else rows)
        return []

    def _write_numbered_rows(
        self,
        add: Executable | RowsInsert,
        rows: list[dict[str, Any]],
        *,
        key: str,
        take: Callable[[], Executable],
        next_one: Callable[[], Executable],
    ) -> list[int]:
        """Write a batch's rows of a table numbered by a sequence (the ledger, the level
        changes), and return their numbers in the rows' order: given by the insert itself
        (PostgreSQL: RETURNING, by `key`), taken first on the coordinator (Citus, `take`:
        the rows then go a shard at a time and keep the batch's order), or counted on from
        the last (SQLite, `next_one`: one writer at a time)."""
        if self.sql.json_writes and not isinstance(add, RowsInsert):
            returned = {r[key]: r["sequence"] for r in self.db.rows(add, rows_json(rows))}
            return [returned[row[key]] for row in rows]
        if isinstance(add, RowsInsert):
            numbers = [r["number"] for r in self.db.rows(take(), {"n": len(rows)})]
        else:
            first = int(self.db.scalar(next_one()))
            numbers = [first + i for i in range(len(rows))]
        for row, number in zip(rows, numbers, strict=True):
            row["sequence"] = number
        self._write_user_rows(add, rows)
        return numbers

    def _by_shard(self, key: str, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """The rows a part per shard of their users (one part without a shard map)."""
        if self.shards is None:
            return [rows]
        parts: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            parts.setdefault(self.shards.index(row[key]), []).append(row)
        return [parts[index] for index in sorted(parts)]


def rows_json(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Rows as the one JSON parameter of a set-based statement (statements.from_json)."""
    return {"rows": json.dumps(rows, separators=(",", ":"), ensure_ascii=False, default=_iso)}


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def config_version(db: Executor, sql: Statements) -> int:
    return int(db.scalar(sql.systems.config_version))
