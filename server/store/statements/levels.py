"""Levels (configuration) and level changes (numbered like the ledger, and fed live)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Executable,
    Select,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql

from server.store.models import LEVEL_CHANGE_SEQUENCE
from server.store.statements.tables import (
    Dialect,
    RowsInsert,
    accounts,
    fixed_plan,
    from_json,
    level_changes,
    levels,
    numbers,
)


class LevelStatements:
    def __init__(self, d: Dialect) -> None:
        insert = d.insert
        self.levels_all = select(levels).order_by(levels.c.system_key, levels.c.points)
        self.level_add = insert(levels)
        self.level_update = (
            update(levels)
            .where(levels.c.id == bindparam("match_id"))
            .values({c.name: bindparam(c.name) for c in levels.c if c.name != "id"})
        )
        self.level_delete = delete(levels).where(levels.c.id == bindparam("id"))
        self.level_change_add: Executable | RowsInsert
        names = [c.name for c in level_changes.c if c.name != "sequence"]
        if d.json_writes:
            numbered = from_json(level_changes, names).add_columns(
                LEVEL_CHANGE_SEQUENCE.next_value()
            )
            self.level_change_add = fixed_plan(
                insert(level_changes)
                .from_select([*names, "sequence"], numbered)
                .returning(level_changes.c.entry_id, level_changes.c.sequence)
            )
        elif d.citus:  # numbered first, then a statement a shard (as LedgerStatements)
            every = [c.name for c in level_changes.c]
            self.level_change_add = RowsInsert(level_changes, every, lambda i: i)
            self.level_change_take = numbers(LEVEL_CHANGE_SEQUENCE)
        else:
            self.level_change_add = insert(level_changes)
            self.level_change_next = select(
                func.coalesce(func.max(level_changes.c.sequence), 0) + literal_column("1")
            )
        # How many of a system's accounts have their basis value in each range between
        # consecutive thresholds (index ranges over (system_key, balance) or (system_key,
        # total_earned)). PostgreSQL: one pass, width_bucket numbering the ranges (0 below
        # the first threshold); SQLite: one range count per level.
        self.level_counts: dict[str, Select[Any]] = {}
        for basis in ("balance", "total_earned"):
            value = accounts.c[basis]
            of_system = accounts.c.system_key == bindparam("system_key")
            if d.set_based:
                thresholds = bindparam("thresholds", type_=postgresql.ARRAY(BigInteger))
                bucket = func.width_bucket(value, thresholds).label("bucket")
                self.level_counts[basis] = (
                    select(bucket, func.count().label("users")).where(of_system).group_by(bucket)
                )
            else:
                self.level_counts[basis] = select(func.count()).where(
                    of_system, value >= bindparam("low"), value < bindparam("high")
                )

        # The live feed of level changes (services/held/feed.py), like the ledger's.
        self.level_changes_feed = (
            select(level_changes)
            .where(
                level_changes.c.sequence > bindparam("after"),
                level_changes.c.sequence <= bindparam("through"),
            )
            .order_by(level_changes.c.sequence)
            .limit(bindparam("limit"))
        )
        self.level_changes_feed_of_system = self.level_changes_feed.where(
            level_changes.c.system_key == bindparam("system_key")
        )
