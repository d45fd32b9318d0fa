"""What the use cases answer, as plain values (the API layer turns them into messages)."""

from __future__ import annotations

from dataclasses import dataclass

from server.domain.model import Balance, LedgerEntry, LevelChange


@dataclass(frozen=True)
class WriteResult:
    """What a points change returns: the entry, the balance after it, and any level move."""

    entry: LedgerEntry
    balance: Balance
    level_change: LevelChange | None = None
    replayed: bool = False


@dataclass(frozen=True)
class BalanceView:
    balance: Balance
    recent: list[LedgerEntry]


@dataclass(frozen=True)
class TransactionsPage:
    entries: list[LedgerEntry]
    next_page_token: str
    total_size: int
