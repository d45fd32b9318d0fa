"""What the use cases answer, as plain values (the API layer turns them into messages).

The results of points changes are decided in the domain (domain/results.py) and named
here too, so that every use case finds its answers in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.domain.model import Balance, LedgerEntry, Level, Trigger
from server.domain.results import EventResult, Result, SystemEventResult, WriteResult, Written

__all__ = [
    "BalanceView",
    "EventResult",
    "Result",
    "SystemEventResult",
    "TransactionsPage",
    "WriteResult",
    "Written",
]


@dataclass(frozen=True)
class BalanceView:
    balance: Balance
    recent: list[LedgerEntry]
    triggers: list[Trigger] = field(default_factory=list)  # behind the recent entries
    next_level: Level | None = None


@dataclass(frozen=True)
class TransactionsPage:
    entries: list[LedgerEntry]
    next_page_token: str
    total_size: int
