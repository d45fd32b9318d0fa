"""Citus: every table placed by one declared list, after the migrations.

On a PostgreSQL with the `citus` extension created, `distribute` makes the
configuration tables reference tables (a copy on every node) and the per-user tables
hash-distributed by user, colocated with `users`, so that every write of one user runs
on one shard. It runs after every `alembic upgrade` (migrations create plain tables) and
places only what is not placed yet, so running it again, or after a migration that adds
a table, distributes just the new table. Everywhere else (SQLite, PostgreSQL without
Citus) it does nothing.

A table of the models missing from PLACEMENTS is an error here and a failing test
(tests/unit/test_citus_placements.py), so a new table cannot be forgotten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from server.store.models import Base

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """Small, the same for every user, read with every user's rows: one copy per node."""


@dataclass(frozen=True)
class Distributed:
    """Hash-distributed by `column`, colocated with `colocate_with` (a table, or "none")."""

    column: str
    colocate_with: str


REFERENCE = Reference()
BY_USER_ID = Distributed("user_id", colocate_with="users")

# Every table of Base.metadata, and where Citus keeps it, in the order they are placed.
# `users` starts the colocation group (by its id); every per-user table joins it, by
# user_id, so a user's rows of every table share one shard.
PLACEMENTS: dict[str, Reference | Distributed] = {
    "points_systems": REFERENCE,
    "config_version": REFERENCE,
    "triggers": REFERENCE,
    "levels": REFERENCE,
    "boosts": REFERENCE,
    "api_keys": REFERENCE,
    "users": Distributed("id", colocate_with="none"),
    "accounts": BY_USER_ID,
    "credit_lots": BY_USER_ID,
    "ledger_entries": BY_USER_ID,
    "idempotency_keys": BY_USER_ID,
    "metric_totals": BY_USER_ID,
    "events": BY_USER_ID,
    "level_changes": BY_USER_ID,
}


class PlacementError(RuntimeError):
    """The schema and PLACEMENTS disagree: a table not declared, or placed otherwise."""


def unplaced(table_names: set[str]) -> list[str]:
    """Tables of these that PLACEMENTS does not name."""
    return sorted(table_names - set(PLACEMENTS))


def has_citus(connection: Connection) -> bool:
    """Whether this database has the citus extension created (not merely installed)."""
    if connection.dialect.name != "postgresql":
        return False
    found = connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'citus'"))
    return found.first() is not None


def distribute(engine: Engine) -> list[str]:
    """Place every table of the models that exists and is not placed yet, in the order
    of PLACEMENTS. Returns the tables placed now (empty when there is nothing to do, or
    no Citus)."""
    missing = unplaced({t.name for t in Base.metadata.tables.values()})
    if missing:
        raise PlacementError(f"tables with no Citus placement declared: {', '.join(missing)}")
    with engine.connect() as connection:
        if not has_citus(connection):
            return []
        existing = set(
            connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            ).scalars()
        )
        placed = {
            name: (kind, column)
            for name, kind, column in connection.execute(
                text(
                    # (not the citus_tables view: it measures every table's shards)
                    "SELECT c.relname, CASE WHEN p.partmethod = 'h' THEN 'distributed'"
                    " WHEN p.repmodel = 't' THEN 'reference' ELSE 'local' END,"
                    " CASE WHEN p.partmethod = 'h'"
                    " THEN column_to_column_name(p.logicalrelid, p.partkey) ELSE '' END"
                    " FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid"
                    " WHERE c.relnamespace = current_schema()::regnamespace"
                )
            ).all()
        }
        connection.rollback()
        done: list[str] = []
        for name, placement in PLACEMENTS.items():  # in the order declared
            if name not in existing:
                continue  # a table of a later revision than the database's
            wanted = _described(placement)
            if name in placed:
                if placed[name] != wanted:
                    raise PlacementError(
                        f"{name} is placed as {placed[name]} under Citus; Tally declares {wanted}"
                    )
                continue
            with connection.begin():
                if isinstance(placement, Reference):
                    connection.execute(text("SELECT create_reference_table(:t)"), {"t": name})
                else:
                    connection.execute(
                        text("SELECT create_distributed_table(:t, :c, colocate_with => :w)"),
                        {"t": name, "c": placement.column, "w": placement.colocate_with},
                    )
                # Rows that were there are now on the shards; drop the coordinator's copy.
                connection.execute(
                    text("SELECT truncate_local_data_after_distributing_table(:t)"), {"t": name}
                )
            log.info("citus: %s made %s", name, _said(placement))
            done.append(name)
        return done


def _described(placement: Reference | Distributed) -> tuple[str, str]:
    """A placement as pg_dist_partition shows it: (kind, distribution column)."""
    if isinstance(placement, Reference):
        return ("reference", "")
    return ("distributed", placement.column)


def _said(placement: Reference | Distributed) -> str:
    if isinstance(placement, Reference):
        return "a reference table"
    if placement.colocate_with == "none":
        return f"distributed by {placement.column}"
    return f"distributed by {placement.column}, colocated with {placement.colocate_with}"
