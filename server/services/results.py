"""What the use cases answer, as plain values (the API layer turns them into messages)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from server.domain.model import Balance, LedgerEntry, LevelChange, Trigger


@dataclass(frozen=True)
class WriteResult:
    """What a points change returns: the entry, the balance after it, and any level move."""

    entry: LedgerEntry
    balance: Balance
    level_change: LevelChange | None = None
    replayed: bool = False

    def written(self, entries: Mapping[str, LedgerEntry]) -> WriteResult:
        return replace(self, entry=entries[self.entry.id])


@dataclass(frozen=True)
class SystemEventResult:
    """What an event did in one system: net points added, the balance after, and the
    entries its triggers wrote, each with the trigger."""

    added: int
    balance: Balance
    awards: tuple[tuple[LedgerEntry, Trigger], ...] = ()
    level_change: LevelChange | None = None


@dataclass(frozen=True)
class EventResult:
    event_id: str
    metric_total: Decimal
    results: dict[str, SystemEventResult] = field(default_factory=dict)
    replayed: bool = False

    def written(self, entries: Mapping[str, LedgerEntry]) -> EventResult:
        return replace(
            self,
            results={
                key: replace(r, awards=tuple((entries[e.id], t) for e, t in r.awards))
                for key, r in self.results.items()
            },
        )


# What a decided change answers (posting.Decide); its entries are replaced by their
# stored form (with sequences) once written.
Result = WriteResult | EventResult


@dataclass(frozen=True)
class BalanceView:
    balance: Balance
    recent: list[LedgerEntry]
    triggers: list[Trigger] = field(default_factory=list)  # behind the recent entries


@dataclass(frozen=True)
class TransactionsPage:
    entries: list[LedgerEntry]
    next_page_token: str
    total_size: int
