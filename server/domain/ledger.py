"""The account aggregate: how awards, deductions, expiries and reversals change a balance.

An `Account` is one user's standing in one points system. Every change it makes returns the
ledger entry that explains it, so that `balance == sum(entry.amount)` holds by construction,
and `balance == total_earned - total_spent - total_expired` after every change.

Expiring credit is kept as `CreditLot`s (one per expiring award, with what is left of it).
Spending takes from lots first, earliest expiry first; what lapses unspent is written off
with an EXPIRE entry dated at its expiry.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from server.domain.errors import InsufficientPoints, NotReversible
from server.domain.ids import UNSEEDED, IdSource
from server.domain.model import Balance, EntryType, JsonObject, LedgerEntry, Level

ONE = Decimal(1)


@dataclass
class CreditLot:
    """What is left of one expiring award."""

    entry_id: str
    expire_time: datetime
    remaining: int


@dataclass(frozen=True)
class Posting:
    """What a caller asks to write, before the account decides the amount."""

    reason: str = ""
    metadata: JsonObject = field(default_factory=dict)
    idempotency_key: str = ""
    trigger_id: str = ""
    event_type: str = ""


@dataclass
class Account:
    system_key: str
    user_id: str
    balance: int = 0
    total_earned: int = 0
    total_spent: int = 0
    total_expired: int = 0
    last_earned_time: datetime | None = None
    # Earliest expiry among lots with something left; None when there is no expiring credit.
    next_expire_time: datetime | None = None
    # How many entries of each type the account has: a page's total_size without a count.
    entry_counts: dict[EntryType, int] = field(default_factory=dict)
    # When the account was opened (its first entry in the system); None until it is saved.
    create_time: datetime | None = None
    # TIME_INTERVAL accrual: each trigger's last firing, when the next one is due (None:
    # no trigger of the system accrues), and the configuration version it was worked out at.
    interval_marks: dict[str, datetime] = field(default_factory=dict)
    next_accrual_time: datetime | None = None
    accrual_version: int = 0
    # Loaded only when the account has expiring credit (see `needs_lots`).
    lots: list[CreditLot] = field(default_factory=list)
    # Lots created or changed since the account was read (a decision reports them, and
    # the store writes back what it reports).
    changed_lots: dict[str, CreditLot] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Where the ids of its new entries come from: the book a decision opens the account
        # in hands it the batch's source (no field: it is no part of the account's state).
        self.ids: IdSource = UNSEEDED

    def copy(self) -> Account:
        """An independent copy: a decision changes the copy, never the account it was given.
        (Built field by field: every change copies the accounts it decides on.)"""
        lots = [CreditLot(lot.entry_id, lot.expire_time, lot.remaining) for lot in self.lots]
        by_id = {lot.entry_id: lot for lot in lots}
        copied = Account(
            system_key=self.system_key,
            user_id=self.user_id,
            balance=self.balance,
            total_earned=self.total_earned,
            total_spent=self.total_spent,
            total_expired=self.total_expired,
            last_earned_time=self.last_earned_time,
            next_expire_time=self.next_expire_time,
            entry_counts=dict(self.entry_counts),
            create_time=self.create_time,
            interval_marks=dict(self.interval_marks),
            next_accrual_time=self.next_accrual_time,
            accrual_version=self.accrual_version,
            lots=lots,
            changed_lots={
                entry_id: by_id.get(entry_id, replace(lot))
                for entry_id, lot in self.changed_lots.items()
            },
        )
        copied.ids = self.ids
        return copied

    # -- reading -------------------------------------------------------------------------

    @property
    def needs_lots(self) -> bool:
        """Whether `lots` must be loaded before the account can change."""
        return self.next_expire_time is not None

    def to_balance(self, max_points: int, level: Level | None = None) -> Balance:
        return Balance(
            system_key=self.system_key,
            user_id=self.user_id,
            balance=self.balance,
            total_earned=self.total_earned,
            total_spent=self.total_spent,
            total_expired=self.total_expired,
            max_points=max_points,
            last_earned_time=self.last_earned_time,
            level=level,
        )

    def entries_of(self, types: frozenset[EntryType]) -> int:
        """How many entries of these types (all types when empty) the account has."""
        return sum(n for t, n in self.entry_counts.items() if not types or t in types)

    def has_lapsed_credit(self, now: datetime) -> bool:
        return self.next_expire_time is not None and self.next_expire_time <= now

    # -- changing ------------------------------------------------------------------------

    def expire_lapsed(self, now: datetime) -> list[LedgerEntry]:
        """Write off every lot that lapsed at or before `now`, oldest first."""
        entries = []
        for lot in sorted(self._live_lots(), key=_lot_order):
            if lot.expire_time > now:
                break
            amount = lot.remaining
            self._take_from_lot(lot, amount)
            self.balance -= amount
            self.total_expired += amount
            entries.append(
                self._entry(
                    EntryType.EXPIRE,
                    -amount,
                    Posting(reason=f"expiry of {lot.entry_id}"),
                    create_time=lot.expire_time,
                )
            )
        self._refresh_next_expiry()
        return entries

    def award(
        self,
        amount: int,
        posting: Posting,
        *,
        now: datetime,
        max_points: int = 0,
        base_amount: int | None = None,
        multiplier: Decimal = ONE,
        boost_ids: tuple[str, ...] = (),
        expire_time: datetime | None = None,
    ) -> LedgerEntry:
        """Credit `amount` (already boosted), cut to what `max_points` leaves room for."""
        credited = amount
        if max_points > 0:
            credited = max(0, min(amount, max_points - self.balance))
        self.balance += credited
        self.total_earned += credited
        if credited > 0:
            self.last_earned_time = now
        entry = self._entry(
            EntryType.AWARD,
            credited,
            posting,
            create_time=now,
            base_amount=amount if base_amount is None else base_amount,
            multiplier=multiplier,
            boost_ids=boost_ids,
            capped=credited < amount,
            expire_time=expire_time,
        )
        if expire_time is not None and credited > 0:
            lot = CreditLot(entry.id, expire_time, credited)
            self.lots.append(lot)
            self.changed_lots[lot.entry_id] = lot
            self._refresh_next_expiry()
        return entry

    def deduct(self, amount: int, posting: Posting, *, now: datetime) -> LedgerEntry:
        """Spend `amount`, expiring credit first; all or nothing."""
        if amount > self.balance:
            raise InsufficientPoints(available=self.balance, requested=amount)
        self._spend(amount)
        self.balance -= amount
        self.total_spent += amount
        return self._entry(EntryType.DEDUCT, -amount, posting, create_time=now)

    def take(self, amount: int, posting: Posting, *, now: datetime) -> LedgerEntry:
        """Spend what there is of `amount` (a deducting trigger: never below zero)."""
        taken = min(amount, self.balance)
        self._spend(taken)
        self.balance -= taken
        self.total_spent += taken
        return self._entry(
            EntryType.DEDUCT,
            -taken,
            posting,
            create_time=now,
            base_amount=-amount,
            capped=taken < amount,
        )

    def reverse(self, original: LedgerEntry, posting: Posting, *, now: datetime) -> LedgerEntry:
        """Undo an AWARD (taking its points back) or a DEDUCT (giving them back)."""
        if original.type is EntryType.AWARD:
            amount = original.amount
            if amount == 0:
                raise NotReversible.of(original.id, original.type, "it credited no points")
            if original.expire_time is not None and original.expire_time <= now:
                raise NotReversible.of(original.id, original.type, "its credit has expired")
            if amount > self.balance:
                raise InsufficientPoints(available=self.balance, requested=amount)
            self._take_back(original.id, amount, lasting=original.expire_time is None)
            delta = -amount
        elif original.type is EntryType.DEDUCT:
            # The points come back as credit that does not expire.
            delta = -original.amount
            self.balance += delta
            self.total_spent -= delta
        else:
            raise NotReversible.of(
                original.id,
                original.type,
                f"{original.type.value} entries cannot be reversed",
            )
        self._refresh_next_expiry()
        return self._entry(
            EntryType.REVERSAL, delta, posting, create_time=now, reverses_entry_id=original.id
        )

    def replay(
        self,
        entry_id: str,
        type_: EntryType,
        amount: int,
        *,
        expire_time: datetime | None = None,
        reverses_entry_id: str = "",
        reverses_lasting: bool = True,
    ) -> None:
        """Apply an entry already written, as the change that wrote it did, so that an
        account (its credit lots above all, which no entry names) can be recomputed from
        its ledger (`tally-server verify`). `reverses_lasting`: whether the award that a
        reversal takes back had no expiry."""
        if type_ is EntryType.AWARD:
            self.balance += amount
            self.total_earned += amount
            if expire_time is not None and amount > 0:
                self.lots.append(CreditLot(entry_id, expire_time, amount))
        elif type_ is EntryType.DEDUCT:
            self._spend(-amount)
            self.balance += amount
            self.total_spent -= amount
        elif type_ is EntryType.EXPIRE:
            # expire_lapsed writes lots off in lot order, so the first live one is this one
            lot = min(self._live_lots(), key=_lot_order, default=None)
            if lot is not None:
                self._take_from_lot(lot, min(lot.remaining, -amount))
            self.balance += amount
            self.total_expired -= amount
        elif amount < 0:  # a reversal of an award
            self._take_back(reverses_entry_id, -amount, lasting=reverses_lasting)
        else:  # a reversal of a deduction
            self.balance += amount
            self.total_spent -= amount
        self.entry_counts[type_] = self.entry_counts.get(type_, 0) + 1
        self._refresh_next_expiry()

    # -- internals -----------------------------------------------------------------------

    def _take_back(self, award_id: str, amount: int, *, lasting: bool) -> None:
        """Take an award's points back where they still are (its lot, or lasting credit
        for a lasting award); what was spent comes from credit of its kind."""
        rest = amount
        own = next((lot for lot in self._live_lots() if lot.entry_id == award_id), None)
        if own is not None:
            taken = min(own.remaining, rest)
            self._take_from_lot(own, taken)
            self.balance -= taken
            rest -= taken
        self._spend(rest, lasting_first=lasting)
        self.balance -= rest
        self.total_earned -= amount

    def _live_lots(self) -> list[CreditLot]:
        return [lot for lot in self.lots if lot.remaining > 0]

    def _take_from_lot(self, lot: CreditLot, amount: int) -> None:
        lot.remaining -= amount
        self.changed_lots[lot.entry_id] = lot

    def _spend(self, amount: int, *, lasting_first: bool = False) -> None:
        """Take `amount` out of the available points (the balance is lowered by the caller).

        Spending takes lots by earliest expiry first, then the credit that never expires;
        `lasting_first` (taking back a lasting award) takes lasting credit first, so that
        expiring credit still lapses when due. Keeps sum(lot.remaining) <= balance.
        """
        expiring = sum(lot.remaining for lot in self._live_lots())
        lasting = self.balance - expiring
        from_lots = min(amount, expiring)
        if lasting_first:
            from_lots = max(0, amount - lasting)
        for lot in sorted(self._live_lots(), key=_lot_order):
            if from_lots == 0:
                break
            taken = min(lot.remaining, from_lots)
            self._take_from_lot(lot, taken)
            from_lots -= taken
        self._refresh_next_expiry()

    def _refresh_next_expiry(self) -> None:
        live = self._live_lots()
        self.next_expire_time = min((lot.expire_time for lot in live), default=None)

    def _entry(
        self,
        type_: EntryType,
        amount: int,
        posting: Posting,
        *,
        create_time: datetime,
        base_amount: int | None = None,
        multiplier: Decimal = ONE,
        boost_ids: tuple[str, ...] = (),
        capped: bool = False,
        expire_time: datetime | None = None,
        reverses_entry_id: str = "",
    ) -> LedgerEntry:
        self.entry_counts[type_] = self.entry_counts.get(type_, 0) + 1
        return LedgerEntry(
            id=self.ids(),
            system_key=self.system_key,
            user_id=self.user_id,
            type=type_,
            amount=amount,
            base_amount=amount if base_amount is None else base_amount,
            multiplier=multiplier,
            capped=capped,
            balance_after=self.balance,
            reason=posting.reason,
            create_time=create_time,
            boost_ids=boost_ids,
            metadata=posting.metadata,
            idempotency_key=posting.idempotency_key,
            trigger_id=posting.trigger_id,
            event_type=posting.event_type,
            expire_time=expire_time,
            reverses_entry_id=reverses_entry_id,
        )


def _lot_order(lot: CreditLot) -> tuple[datetime, str]:
    return (lot.expire_time, lot.entry_id)
