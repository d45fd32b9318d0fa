"""What a decided points change answers, as plain values: the API layer turns them into
messages, the codec into the stored responses idempotency keys replay."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal

from server.domain.model import Balance, LedgerEntry, LevelChange, Trigger


@dataclass(frozen=True)
class Written:
    """What a post stored, for results to show in its stored form (with sequences): the
    entries by id, and the level changes by the id of the entry that caused them."""

    entries: Mapping[str, LedgerEntry]
    level_changes: Mapping[str, LevelChange] = field(default_factory=dict)

    def level_change(self, change: LevelChange | None) -> LevelChange | None:
        return None if change is None else self.level_changes[change.entry_id]


@dataclass(frozen=True)
class WriteResult:
    """What a points change returns: the entry, the balance after it, and any level move."""

    entry: LedgerEntry
    balance: Balance
    level_change: LevelChange | None = None
    replayed: bool = False

    def with_levels(self, moves: Mapping[str, LevelChange]) -> WriteResult:
        """With the level move its change made in its system (by system key)."""
        return replace(self, level_change=moves.get(self.entry.system_key))

    def written(self, stored: Written) -> WriteResult:
        return replace(
            self,
            entry=stored.entries[self.entry.id],
            level_change=stored.level_change(self.level_change),
        )


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

    def within(self, allows: Callable[[str], bool]) -> EventResult:
        """The result as a caller who may use only the systems `allows` may see it."""
        return replace(self, results={k: r for k, r in self.results.items() if allows(k)})

    def with_levels(self, moves: Mapping[str, LevelChange]) -> EventResult:
        results = {k: replace(r, level_change=moves.get(k)) for k, r in self.results.items()}
        return replace(self, results=results)

    def written(self, stored: Written) -> EventResult:
        return replace(
            self,
            results={
                key: replace(
                    r,
                    awards=tuple((stored.entries[e.id], t) for e, t in r.awards),
                    level_change=stored.level_change(r.level_change),
                )
                for key, r in self.results.items()
            },
        )


# What a decided change answers (domain/batch.py); its entries are replaced by their
# stored form (with sequences) once written.
Result = WriteResult | EventResult
