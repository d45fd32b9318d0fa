"""Settling accounts: writing what fell due by a time (lapsed credit written off, due
TIME_INTERVAL firings), posted through the writer like any change. Reads settle the
account they read; the sweep settles idle ones."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from server.domain import changes
from server.domain.book import Book
from server.domain.errors import TallyError
from server.services.pipeline.posting import Change, Circumstances, Decide
from server.services.pipeline.writer import Writer


def settle(writer: Writer, system_key: str, user_id: str, now: datetime) -> None:
    """Write what fell due by `now` (nothing when someone got there first)."""
    settle_many(writer, [(system_key, user_id)], now)


def settle_many(writer: Writer, accounts: Sequence[tuple[str, str]], now: datetime) -> None:
    def decide_for(system_key: str) -> Decide:
        def decide(book: Book, given: Circumstances) -> None:
            changes.settle(book, given.rules, given.system(system_key), now)

        return decide

    outcomes = writer.post(
        [Change(key, user_id, decide_for(key), now) for key, user_id in accounts]
    )
    for outcome in outcomes:
        if isinstance(outcome, TallyError):
            raise outcome
