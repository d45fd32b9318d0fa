"""What `tally-server verify` holds against the stored state: an account's figures as
stored and as its ledger entries add up, its credit lots as a replay of its entries
leaves them, and the levels those figures imply.

Plain values in, `Difference`s out. The store adds the entries up (store/audit.py); these
rules say what the sums must equal and which level a basis implies (domain/levels.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal

from server.domain import levels
from server.domain.ledger import Account, CreditLot
from server.domain.levels import Ladder
from server.domain.model import EntryType, PointsSystem

# What a difference shows of a stored value and of what the ledger implies.
Fact = int | str | None


@dataclass(frozen=True)
class Difference:
    """One way the stored state disagrees with its ledger. `check` names the figure or
    rule (ACCOUNT_CHECKS and the names below); `entry_id` the entry it is about, if one."""

    system_key: str
    user_id: str
    check: str
    stored: Fact
    expected: Fact
    entry_id: str = ""
    detail: str = ""


@dataclass(frozen=True)
class AccountFigures:
    """An account's running figures: as the account row keeps them, or as its entries
    add up (balance: every amount; earned: awards less reversed awards; spent:
    deductions less reversed deductions; expired: expiries; and entries by type)."""

    balance: int = 0
    total_earned: int = 0
    total_spent: int = 0
    total_expired: int = 0
    award_entries: int = 0
    deduct_entries: int = 0
    expire_entries: int = 0
    reversal_entries: int = 0

    @property
    def entries(self) -> int:
        return (
            self.award_entries + self.deduct_entries + self.expire_entries + self.reversal_entries
        )


ACCOUNT_CHECKS = tuple(f.name for f in fields(AccountFigures))
ACCOUNT_MISSING = "account_missing"  # entries of an account that has no row
NEGATIVE_BALANCE = "negative_balance"
BALANCE_AFTER = "balance_after"  # an entry's balance_after is not the one before + amount
NEGATIVE_BALANCE_AFTER = "negative_balance_after"
REVERSED_TWICE = "reversed_twice"
REVERSAL_TARGET = "reversal_target"  # a reversal of no entry, or not of its amount
IDEMPOTENCY_KEY = "idempotency_key"  # a key's stored response names a missing entry
LOT_REMAINING = "lot_remaining"
NEXT_EXPIRE_TIME = "next_expire_time"
LEVEL = "level"  # the level served from the stored figures is not the ledger's
LEVEL_CHANGE = "level_change"  # a recorded move its entry's basis does not allow
METRIC_TOTAL = "metric_total"  # a running event total is not the sum of its events


def account_differences(
    system_key: str, user_id: str, stored: AccountFigures | None, ledger: AccountFigures | None
) -> list[Difference]:
    """Each figure of the account row that its entries do not add up to."""
    if stored is None:
        assert ledger is not None, "an account is found by its row or by its entries"
        count = ledger.entries
        detail = f"{count} {'entry' if count == 1 else 'entries'}, but no account"
        return [Difference(system_key, user_id, ACCOUNT_MISSING, None, ledger.balance, "", detail)]
    summed = ledger or AccountFigures()
    found = [
        Difference(system_key, user_id, name, getattr(stored, name), getattr(summed, name))
        for name in ACCOUNT_CHECKS
        if getattr(stored, name) != getattr(summed, name)
    ]
    if stored.balance < 0:
        found.append(Difference(system_key, user_id, NEGATIVE_BALANCE, stored.balance, 0))
    return found


def level_difference(
    system: PointsSystem,
    ladder: Ladder,
    user_id: str,
    stored: AccountFigures | None,
    ledger: AccountFigures | None,
) -> Difference | None:
    """The level served from the stored figures against the level the ledger's figures
    imply, both under the system's levels as they are (levels are derived, never kept)."""
    if not ladder:
        return None
    served = _level_key(system, ladder, stored or AccountFigures())
    implied = _level_key(system, ladder, ledger or AccountFigures())
    if served == implied:
        return None
    return Difference(system.key, user_id, LEVEL, served, implied)


def _level_key(system: PointsSystem, ladder: Ladder, figures: AccountFigures) -> str | None:
    level = levels.level_of(ladder, levels.basis_of(system, figures.balance, figures.total_earned))
    return level.key if level else None


@dataclass(frozen=True)
class RecordedMove:
    """A stored LevelChange, with the levels' keys and thresholds as it recorded them and
    the figures of the account at the entry it names (None: no such entry there)."""

    system_key: str
    user_id: str
    entry_id: str
    previous_key: str | None
    previous_points: int | None
    new_key: str | None
    new_points: int | None
    balance_after: int | None
    earned_through: int | None  # total earned up to and including the entry


def move_difference(system: PointsSystem, move: RecordedMove) -> Difference | None:
    """A recorded move that the account's basis at its entry does not allow, under the
    thresholds the move itself recorded (later edits of the levels do not matter): a
    move up to a level needs a basis at its threshold or above; a move down from one
    needs a basis below its threshold."""
    if move.balance_after is None or move.earned_through is None:
        return Difference(
            move.system_key,
            move.user_id,
            LEVEL_CHANGE,
            move.entry_id,
            None,
            move.entry_id,
            "the level change names an entry that is not in this account's ledger",
        )
    value = levels.basis_of(system, move.balance_after, move.earned_through)
    up_ok = move.new_points is None or value >= move.new_points
    down = move.previous_points is not None and (
        move.new_points is None or move.new_points < move.previous_points
    )
    down_ok = not down or (move.previous_points is not None and value < move.previous_points)
    if up_ok and down_ok:
        return None
    return Difference(
        move.system_key,
        move.user_id,
        LEVEL_CHANGE,
        move.new_key,
        value,
        move.entry_id,
        f"recorded a move {move.previous_key or '(none)'} -> {move.new_key or '(none)'} "
        f"at a basis of {value}, which those thresholds do not allow",
    )


@dataclass(frozen=True)
class Posted:
    """What a replay needs of a written entry."""

    id: str
    type: EntryType
    amount: int
    expire_time: datetime | None = None
    reverses_entry_id: str = ""


def replay(system_key: str, user_id: str, entries: Iterable[Posted]) -> Account:
    """The account as its entries (in sequence order) leave it, credit lots included."""
    account = Account(system_key, user_id)
    expiring: set[str] = set()
    for entry in entries:
        if entry.type is EntryType.AWARD and entry.expire_time is not None:
            expiring.add(entry.id)
        account.replay(
            entry.id,
            entry.type,
            entry.amount,
            expire_time=entry.expire_time,
            reverses_entry_id=entry.reverses_entry_id,
            reverses_lasting=entry.reverses_entry_id not in expiring,
        )
    return account


def lot_differences(
    replayed: Account, stored: Sequence[CreditLot], next_expire_time: datetime | None
) -> list[Difference]:
    """The stored lots (and the account's next expiry) against the replay's: a lot left
    with nothing is deleted, so a missing lot is one with 0 left."""
    key, user = replayed.system_key, replayed.user_id
    expected = {lot.entry_id: lot.remaining for lot in replayed.lots if lot.remaining > 0}
    kept = {lot.entry_id: lot.remaining for lot in stored}
    found = [
        Difference(
            key, user, LOT_REMAINING, kept.get(entry_id, 0), expected.get(entry_id, 0), entry_id
        )
        for entry_id in sorted(expected.keys() | kept.keys())
        if kept.get(entry_id, 0) != expected.get(entry_id, 0)
    ]
    if next_expire_time != replayed.next_expire_time:
        found.append(
            Difference(
                key, user, NEXT_EXPIRE_TIME, _iso(next_expire_time), _iso(replayed.next_expire_time)
            )
        )
    return found


def metric_difference(
    user_id: str, event_type: str, reach: str, stored: Decimal | None, summed: Decimal | None
) -> Difference | None:
    """A user's running total of an event type in one reach against the sum of their
    events of it recorded in that reach."""
    if (stored or Decimal(0)) == (summed or Decimal(0)):
        return None
    return Difference(
        "",
        user_id,
        METRIC_TOTAL,
        None if stored is None else str(stored),
        str(summed or Decimal(0)),
        "",
        f"event type {event_type!r}" + (f" (systems {reach})" if reach else ""),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
