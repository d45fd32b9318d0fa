"""What every repository shares: its unit of work's executor and statements, and how
it writes many rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.sql import Executable

from server.store.execution import Executor, Row
from server.store.statements import Statements


class Repository:
    def __init__(self, db: Executor, sql: Statements) -> None:
        self.db = db
        self.sql = sql

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

    def _write_user_rows(self, statement: Executable, rows: list[dict[str, Any]]) -> None:
        """Write a batch's rows of a per-user table: one set-based statement where the
        statements write JSON sets (PostgreSQL), else one statement a row (SQLite; Citus,
        where each is routed to its user's shard: see Dialect.json_writes)."""
        self.db.run(statement, rows_json(rows) if self.sql.json_writes else rows)


def rows_json(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Rows as the one JSON parameter of a set-based statement (statements.from_json)."""
    return {"rows": json.dumps(rows, separators=(",", ":"), ensure_ascii=False, default=_iso)}


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def config_version(db: Executor, sql: Statements) -> int:
    return int(db.scalar(sql.systems.config_version))
