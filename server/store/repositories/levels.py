"""Levels (configuration) and level changes (numbered like the ledger, and fed live)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from server.domain import stored_json
from server.domain.model import Level, LevelBasis, LevelChange
from server.store.execution import Row
from server.store.repositories.base import Repository

LEVEL_BASIS_COLUMNS = {LevelBasis.BALANCE: "balance", LevelBasis.LIFETIME_EARNED: "total_earned"}
NO_LIMIT = 2**62  # above any basis value (points never approach it)


class SqlLevelRepository(Repository):
    def all(self) -> list[Level]:
        return [stored_json.level_of(r) for r in self.db.rows(self.sql.levels.levels_all)]

    def add(self, level: Level) -> None:
        self.db.run(self.sql.levels.level_add, {"id": level.id, **_level_values(level)})

    def update(self, level: Level) -> None:
        self.db.run(self.sql.levels.level_update, {"match_id": level.id, **_level_values(level)})

    def delete(self, level_id: str) -> None:
        self.db.run(self.sql.levels.level_delete, {"id": level_id})

    def add_changes(self, changes: Sequence[LevelChange]) -> list[LevelChange]:
        if not changes:
            return []
        sql = self.sql.levels
        numbers = self._write_numbered_rows(
            sql.level_change_add,
            [_level_change_values(c) for c in changes],
            key="entry_id",
            take=lambda: sql.level_change_take,
            next_one=lambda: sql.level_change_next,
        )
        return [replace(c, sequence=n) for c, n in zip(changes, numbers, strict=True)]

    def changes_after(
        self, system_key: str, after_sequence: int, through_sequence: int, limit: int
    ) -> list[LevelChange]:
        sql = self.sql.levels
        rows = self._feed_rows(
            sql.level_changes_feed,
            sql.level_changes_feed_of_system,
            system_key,
            after_sequence,
            through_sequence,
            limit,
        )
        return [level_change(r) for r in rows]

    def counts(self, system_key: str, basis: LevelBasis, thresholds: Sequence[int]) -> list[int]:
        statement = self.sql.levels.level_counts[LEVEL_BASIS_COLUMNS[basis]]
        if self.sql.set_based:
            params = {"system_key": system_key, "thresholds": list(thresholds)}
            counts = [0] * (len(thresholds) + 1)
            for row in self.db.rows(statement, params):
                counts[row["bucket"]] = row["users"]
            return counts
        bounds = [-NO_LIMIT, *thresholds, NO_LIMIT]
        return [
            int(self.db.scalar(statement, {"system_key": system_key, "low": low, "high": high}))
            for low, high in itertools.pairwise(bounds)
        ]


def _level_values(level: Level) -> dict[str, Any]:
    """A level's row but for its id (set apart: by `id` on insert, `match_id` on update)."""
    values = stored_json.level_fields(level)
    del values["id"]
    return values


def _level_change_values(change: LevelChange) -> dict[str, Any]:
    values = stored_json.level_change_fields(change)
    del values["sequence"]  # numbered as it is written
    return values


def level_change(r: Row) -> LevelChange:
    """A level_changes row as a LevelChange (for the feed)."""
    return LevelChange(
        system_key=r["system_key"],
        user_id=r["user_id"],
        previous_level=stored_json.level_in(r["previous_level"]),
        new_level=stored_json.level_in(r["new_level"]),
        entry_id=r["entry_id"],
        create_time=r["create_time"],
        sequence=r["sequence"],
    )
