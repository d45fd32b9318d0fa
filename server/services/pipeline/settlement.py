"""Settling accounts: writing what fell due by a time (lapsed credit written off, due
TIME_INTERVAL firings), posted through the writer like any change. Reads settle the
account they read; the sweep settles idle ones."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from server.domain.batch import SettleAccount
from server.domain.errors import TallyError
from server.services.pipeline.writer import Writer


def settle(writer: Writer, system_key: str, user_id: str, now: datetime) -> None:
    """Write what fell due by `now` (nothing when someone got there first)."""
    settle_many(writer, [(system_key, user_id)], now)


def settle_many(writer: Writer, accounts: Sequence[tuple[str, str]], now: datetime) -> None:
    outcomes = writer.post([SettleAccount(key, user_id, now) for key, user_id in accounts])
    for outcome in outcomes:
        if isinstance(outcome, TallyError):
            raise outcome
