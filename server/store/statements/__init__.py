"""Every SQL statement the repositories run, built once per dialect, by aggregate.

Building a SQLAlchemy statement (coercing each value, computing its cache key) costs far
more than running a prebuilt one with parameters, so the hot path only executes these.
The ON CONFLICT forms differ per dialect in import only (PostgreSQL vs SQLite).

`Statements` is one dialect's: a part per aggregate, each built in its own module
(`tables.py` holds the tables and what the parts share).
"""

from __future__ import annotations

import functools

from server.store.statements.api_keys import ApiKeyStatements
from server.store.statements.boosts import BoostStatements, boosts_page
from server.store.statements.events import EventStatements
from server.store.statements.feeds import FeedStatements
from server.store.statements.idempotency import IdempotencyStatements
from server.store.statements.ledger import LedgerStatements
from server.store.statements.levels import LevelStatements
from server.store.statements.systems import SystemStatements
from server.store.statements.tables import Dialect
from server.store.statements.users import UserStatements

__all__ = ["Statements", "boosts_page", "statements_for"]


class Statements:
    """The statements of one dialect, a part per aggregate."""

    def __init__(self, dialect: str, *, citus: bool = False) -> None:
        d = Dialect(dialect, citus=citus)
        self.dialect = dialect
        self.set_based = d.set_based
        self.json_writes = d.json_writes
        self.systems = SystemStatements(d)  # and the configuration's version, triggers
        self.api_keys = ApiKeyStatements(d)
        self.users = UserStatements(d)
        self.ledger = LedgerStatements(d)  # accounts, lots, entries, a user's standing
        self.idempotency = IdempotencyStatements(d)
        self.events = EventStatements(d)
        self.levels = LevelStatements(d)
        self.boosts = BoostStatements(d)
        self.feeds = FeedStatements(d)


@functools.cache
def statements_for(dialect: str, *, citus: bool = False) -> Statements:
    return Statements(dialect, citus=citus)
