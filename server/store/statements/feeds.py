"""What the live feeds' watermarks are made of (services/held/feed.py), per feed by the
name services/held/feed.py gives it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    String,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import postgresql

from server.store.models import LEDGER_SEQUENCE, LEVEL_CHANGE_SEQUENCE
from server.store.statements.tables import Dialect, activity, ledger, level_changes


class FeedStatements:
    def __init__(self, d: Dialect) -> None:
        dialect = d.name
        self.feed_last = {
            "ledger": _feed_last(dialect, LEDGER_SEQUENCE.name, ledger.c.sequence),
            "level_changes": _feed_last(
                dialect, LEVEL_CHANGE_SEQUENCE.name, level_changes.c.sequence
            ),
        }
        # The transactions of this database that hold a transaction id now (they may hold
        # numbers not yet committed), as "pid:xid", and which of a list still run. Other
        # databases of the cluster cannot write here, so they are never waited for.
        writer = func.concat(
            cast(activity.c.pid, Text), literal(":"), cast(activity.c.backend_xid, Text)
        )
        self.feed_writers = select(func.array_agg(writer).label("writers")).where(
            activity.c.datname == func.current_database(),
            activity.c.backend_xid.is_not(None),
            activity.c.pid != func.pg_backend_pid(),
        )
        self.feed_running = select(func.array_agg(writer).label("running")).where(
            writer == any_(bindparam("writers", type_=postgresql.ARRAY(String)))
        )
        # On a Citus coordinator the rows are written on the workers, and a writer's
        # coordinator session may hold no transaction id at all: every client session of
        # this database that is in a transaction (or running a statement, COMMIT and the
        # workers' commits included) may hold numbers, as "pid|xact_start". One of them
        # has ended once its session is idle or has begun another transaction.
        session = func.concat(
            cast(activity.c.pid, Text),
            literal("|"),
            func.coalesce(cast(activity.c.xact_start, Text), literal("")),
        )
        self.feed_writers_citus = select(func.array_agg(session).label("writers")).where(
            activity.c.datname == func.current_database(),
            activity.c.backend_type == literal("client backend"),
            activity.c.state != literal("idle"),
            activity.c.pid != func.pg_backend_pid(),
        )
        self.feed_running_citus = text(
            "SELECT array_agg(w) AS running FROM unnest(CAST(:writers AS text[])) AS w "
            "WHERE EXISTS (SELECT 1 FROM pg_stat_activity a "
            "WHERE a.pid = CAST(split_part(w, '|', 1) AS integer) AND a.state <> 'idle' "
            "AND (a.xact_start IS NULL OR CAST(a.xact_start AS text) = split_part(w, '|', 2)))"
        ).bindparams(bindparam("writers", type_=postgresql.ARRAY(String)))


def _feed_last(dialect: str, sequence: str, numbered: ColumnElement[Any]) -> Executable:
    """The highest number a feed has handed out: on PostgreSQL the sequence's last
    value, whether or not its transaction has committed; on SQLite, which numbers from
    the highest committed number under its one writer lock, that number."""
    if dialect == "postgresql":
        last = func.pg_sequence_last_value(cast(literal(sequence), postgresql.REGCLASS))
    else:
        last = func.max(numbered)
    return select(func.coalesce(last, 0).label("last"))
