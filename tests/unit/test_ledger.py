"""The Account aggregate without a database: caps, spending order, expiry, reversals.

Every change must leave `balance == sum(ledger)` and explain itself with one entry; the
state machine at the end checks that over random histories, not just hand-picked ones.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from server.domain import audit
from server.domain.errors import InsufficientPoints, NotReversible
from server.domain.ledger import Account, CreditLot, Posting
from server.domain.model import EntryType, LedgerEntry
from tests.conftest import T0

NOTHING = Posting()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def lots_left(account: Account) -> dict[str, int]:
    """Remaining credit per expiring award, for lots that still hold something."""
    return {lot.entry_id: lot.remaining for lot in account.lots if lot.remaining > 0}


def totals(account: Account) -> tuple[int, int, int, int]:
    return (account.balance, account.total_earned, account.total_spent, account.total_expired)


@pytest.fixture
def account() -> Account:
    return Account("xp", "alice")


class TestAward:
    def test_uncapped_award_credits_all_of_it(self, account: Account) -> None:
        entry = account.award(50, Posting(reason="signup"), now=T0)
        assert (entry.type, entry.amount, entry.base_amount, entry.capped) == (
            EntryType.AWARD,
            50,
            50,
            False,
        )
        assert (entry.balance_after, entry.reason, entry.create_time) == (50, "signup", T0)
        assert totals(account) == (50, 50, 0, 0)
        assert account.last_earned_time == T0

    def test_cap_cuts_the_award_to_the_room_left(self, account: Account) -> None:
        account.award(80, NOTHING, now=T0, max_points=100)
        entry = account.award(50, NOTHING, now=at(1), max_points=100)
        assert (entry.amount, entry.base_amount, entry.capped) == (20, 50, True)
        assert (entry.balance_after, account.balance, account.total_earned) == (100, 100, 100)

    def test_cap_already_reached_writes_a_zero_entry(self, account: Account) -> None:
        """The entry still explains why nothing came, and the last earning time stays."""
        account.award(100, NOTHING, now=T0, max_points=100)
        entry = account.award(10, NOTHING, now=at(60), max_points=100)
        assert (entry.amount, entry.base_amount, entry.capped, entry.balance_after) == (
            0,
            10,
            True,
            100,
        )
        assert totals(account) == (100, 100, 0, 0)
        assert account.last_earned_time == T0

    def test_base_amount_and_multiplier_are_kept_apart_from_the_credit(
        self, account: Account
    ) -> None:
        entry = account.award(
            30,
            NOTHING,
            now=T0,
            max_points=25,
            base_amount=10,
            multiplier=Decimal("3"),
            boost_ids=("b1",),
        )
        assert (entry.amount, entry.base_amount, entry.multiplier, entry.capped) == (
            25,
            10,
            Decimal(3),
            True,
        )
        assert entry.boost_ids == ("b1",)

    def test_expiring_award_keeps_a_lot_of_what_was_credited(self, account: Account) -> None:
        account.award(90, NOTHING, now=T0, max_points=100)
        entry = account.award(50, NOTHING, now=T0, max_points=100, expire_time=at(60))
        assert entry.expire_time == at(60)
        assert lots_left(account) == {entry.id: 10}
        assert account.changed_lots[entry.id].remaining == 10
        assert account.next_expire_time == at(60)

    def test_fully_capped_expiring_award_leaves_no_lot(self, account: Account) -> None:
        account.award(100, NOTHING, now=T0, max_points=100)
        account.award(5, NOTHING, now=T0, max_points=100, expire_time=at(60))
        assert account.lots == []
        assert account.next_expire_time is None
        assert not account.needs_lots


class TestDeduct:
    def test_spends_earliest_expiring_credit_first_then_lasting_credit(
        self, account: Account
    ) -> None:
        account.award(100, NOTHING, now=T0)
        late = account.award(30, NOTHING, now=T0, expire_time=at(200))
        early = account.award(20, NOTHING, now=T0, expire_time=at(100))

        entry = account.deduct(25, Posting(reason="shop"), now=at(10))
        assert (entry.type, entry.amount, entry.balance_after) == (EntryType.DEDUCT, -25, 125)
        assert lots_left(account) == {late.id: 25}
        assert account.next_expire_time == at(200)

        account.deduct(40, NOTHING, now=at(20))
        assert lots_left(account) == {}
        assert account.next_expire_time is None
        assert totals(account) == (85, 150, 65, 0)
        # Both lots were touched, so both go back to the store (emptied ones to be deleted).
        assert {k: v.remaining for k, v in account.changed_lots.items()} == {
            late.id: 0,
            early.id: 0,
        }

    def test_lots_with_the_same_expiry_are_spent_in_a_stable_order(self, account: Account) -> None:
        first = account.award(10, NOTHING, now=T0, expire_time=at(100))
        second = account.award(10, NOTHING, now=T0, expire_time=at(100))
        account.deduct(5, NOTHING, now=at(1))
        spent_from = min(first.id, second.id)
        assert lots_left(account) == {spent_from: 5, max(first.id, second.id): 10}

    def test_spending_everything_is_allowed(self, account: Account) -> None:
        account.award(40, NOTHING, now=T0, expire_time=at(100))
        account.deduct(40, NOTHING, now=at(1))
        assert totals(account) == (0, 40, 40, 0)
        assert account.next_expire_time is None

    def test_insufficient_points_changes_nothing(self, account: Account) -> None:
        account.award(30, NOTHING, now=T0, expire_time=at(100))
        before = (totals(account), lots_left(account), account.next_expire_time)
        with pytest.raises(InsufficientPoints) as caught:
            account.deduct(31, NOTHING, now=at(1))
        assert (caught.value.available, caught.value.requested) == (30, 31)
        assert caught.value.metadata == {"available": "30", "requested": "31"}
        assert (totals(account), lots_left(account), account.next_expire_time) == before


class TestExpire:
    def test_lapsed_lots_are_written_off_at_their_expiry(self, account: Account) -> None:
        account.award(100, NOTHING, now=T0)
        a = account.award(30, NOTHING, now=T0, expire_time=at(200))
        b = account.award(20, NOTHING, now=T0, expire_time=at(100))
        c = account.award(5, NOTHING, now=T0, expire_time=at(500))
        account.deduct(25, NOTHING, now=at(10))  # all of b, 5 of a

        assert account.has_lapsed_credit(at(200))
        assert not account.has_lapsed_credit(at(199))
        # b lapses with nothing left (no entry); a lapses exactly at `now` (<= counts).
        entries = account.expire_lapsed(at(200))
        assert [(e.type, e.amount, e.create_time, e.balance_after) for e in entries] == [
            (EntryType.EXPIRE, -25, at(200), 105)
        ]
        assert a.id in entries[0].reason
        assert b.id not in lots_left(account)
        assert lots_left(account) == {c.id: 5}
        assert account.next_expire_time == at(500)
        assert totals(account) == (105, 155, 25, 25)

    def test_several_lapsed_lots_expire_oldest_first_dated_at_their_own_expiry(
        self, account: Account
    ) -> None:
        """A late read still dates each write-off when it happened, not when it was seen."""
        account.award(7, NOTHING, now=T0, expire_time=at(300))
        account.award(3, NOTHING, now=T0, expire_time=at(100))
        entries = account.expire_lapsed(at(10_000))
        assert [(e.amount, e.create_time, e.balance_after) for e in entries] == [
            (-3, at(100), 7),
            (-7, at(300), 0),
        ]
        assert totals(account) == (0, 10, 0, 10)
        assert account.next_expire_time is None

    def test_nothing_lapsed_writes_nothing(self, account: Account) -> None:
        account.award(7, NOTHING, now=T0, expire_time=at(300))
        assert account.expire_lapsed(at(299)) == []
        assert totals(account) == (7, 7, 0, 0)


class TestReverse:
    def test_reversing_an_award_takes_its_points_back(self, account: Account) -> None:
        original = account.award(40, NOTHING, now=T0)
        account.award(5, NOTHING, now=T0)
        entry = account.reverse(original, Posting(reason="mistake"), now=at(1))
        assert (entry.type, entry.amount, entry.reverses_entry_id) == (
            EntryType.REVERSAL,
            -40,
            original.id,
        )
        assert (entry.balance_after, entry.reason, entry.create_time) == (5, "mistake", at(1))
        assert totals(account) == (5, 5, 0, 0)

    def test_reversing_an_expiring_award_removes_its_own_lot(self, account: Account) -> None:
        other = account.award(20, NOTHING, now=T0, expire_time=at(50))
        original = account.award(40, NOTHING, now=T0, expire_time=at(100))
        account.reverse(original, NOTHING, now=at(1))
        assert lots_left(account) == {other.id: 20}
        assert account.next_expire_time == at(50)
        assert totals(account) == (20, 20, 0, 0)

    def test_reversing_an_award_whose_lot_was_partly_spent(self, account: Account) -> None:
        """What is left of its lot goes, and the part already spent comes from other credit."""
        original = account.award(100, NOTHING, now=T0, expire_time=at(100))
        account.award(200, NOTHING, now=T0)
        account.deduct(60, NOTHING, now=at(1))  # all from the expiring lot: 40 left
        assert lots_left(account) == {original.id: 40}

        entry = account.reverse(original, NOTHING, now=at(2))
        assert (entry.amount, entry.balance_after) == (-100, 140)
        assert lots_left(account) == {}
        assert account.next_expire_time is None
        assert totals(account) == (140, 200, 60, 0)
        # Nothing is left to lapse: the 140 are lasting credit.
        assert account.expire_lapsed(at(1000)) == []

    def test_reversing_an_award_whose_credit_expired_is_refused(self, account: Account) -> None:
        original = account.award(40, NOTHING, now=T0, expire_time=at(100))
        account.award(100, NOTHING, now=T0)
        account.expire_lapsed(at(100))
        before = totals(account)
        with pytest.raises(NotReversible) as caught:
            account.reverse(original, NOTHING, now=at(100))
        assert caught.value.reason == "NOT_REVERSIBLE"
        assert caught.value.metadata == {"entry_id": original.id, "entry_type": "ENTRY_TYPE_AWARD"}
        assert totals(account) == before

    def test_reversing_an_award_that_credited_nothing_is_refused(self, account: Account) -> None:
        account.award(10, NOTHING, now=T0, max_points=10)
        nothing = account.award(5, NOTHING, now=T0, max_points=10)
        with pytest.raises(NotReversible):
            account.reverse(nothing, NOTHING, now=at(1))
        assert totals(account) == (10, 10, 0, 0)

    def test_a_reversal_or_an_expiry_is_not_reversible(self, account: Account) -> None:
        original = account.award(40, NOTHING, now=T0)
        reversal = account.reverse(original, NOTHING, now=at(1))
        account.award(5, NOTHING, now=at(2), expire_time=at(3))
        (expiry,) = account.expire_lapsed(at(3))
        for entry in (reversal, expiry):
            with pytest.raises(NotReversible):
                account.reverse(entry, NOTHING, now=at(4))
        assert totals(account) == (0, 5, 0, 5)

    def test_reversing_a_spent_award_needs_the_points(self, account: Account) -> None:
        original = account.award(40, NOTHING, now=T0)
        account.deduct(30, NOTHING, now=at(1))
        with pytest.raises(InsufficientPoints) as caught:
            account.reverse(original, NOTHING, now=at(2))
        assert (caught.value.available, caught.value.requested) == (10, 40)
        assert totals(account) == (10, 40, 30, 0)

    def test_reversing_a_deduct_gives_the_points_back_as_lasting_credit(
        self, account: Account
    ) -> None:
        account.award(50, NOTHING, now=T0, expire_time=at(100))
        spent = account.deduct(30, NOTHING, now=at(1))
        entry = account.reverse(spent, NOTHING, now=at(2))
        assert (entry.type, entry.amount, entry.reverses_entry_id, entry.balance_after) == (
            EntryType.REVERSAL,
            30,
            spent.id,
            50,
        )
        assert totals(account) == (50, 50, 0, 0)
        # Only the 20 still in the lot lapse; the 30 given back stay.
        assert [e.amount for e in account.expire_lapsed(at(100))] == [-20]
        assert account.balance == 30

    def test_reversing_a_lasting_award_leaves_expiring_credit_to_lapse(
        self, account: Account
    ) -> None:
        """Undoing an award must leave the user as if it never happened: the 50 that were
        going to expire still expire."""
        lasting = account.award(100, NOTHING, now=T0)
        expiring = account.award(50, NOTHING, now=T0, expire_time=at(100))
        account.reverse(lasting, NOTHING, now=at(1))
        assert account.balance == 50
        assert lots_left(account) == {expiring.id: 50}
        assert [e.amount for e in account.expire_lapsed(at(100))] == [-50]
        assert account.balance == 0


# -- random histories ----------------------------------------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    """Awards (some expiring), deducts, time passing and reversals, in any order.

    Like the service, every change first writes off what lapsed; a refused change must
    leave the account exactly as it was.
    """

    def __init__(self) -> None:
        super().__init__()
        self.account = Account("xp", "alice")
        self.entries: list[LedgerEntry] = []
        self.now = T0
        self.max_points = 0
        self.reversible: list[LedgerEntry] = []

    @initialize(cap=st.sampled_from([0, 0, 500, 2_000]))
    def choose_cap(self, cap: int) -> None:
        self.max_points = cap

    def _settle(self) -> None:
        self.entries.extend(self.account.expire_lapsed(self.now))

    def _snapshot(self) -> tuple[object, ...]:
        lots = sorted((lot.entry_id, lot.expire_time, lot.remaining) for lot in self.account.lots)
        return (*totals(self.account), self.account.next_expire_time, lots)

    @rule(
        amount=st.integers(1, 400),
        expires_in=st.none() | st.integers(1, 3_600),
    )
    def award(self, amount: int, expires_in: int | None) -> None:
        self._settle()
        expire_time = None if expires_in is None else self.now + timedelta(seconds=expires_in)
        entry = self.account.award(
            amount, NOTHING, now=self.now, max_points=self.max_points, expire_time=expire_time
        )
        assert 0 <= entry.amount <= amount
        assert entry.capped == (entry.amount < amount)
        if self.max_points:
            # An award never takes the balance over the cap (a refunded deduct may).
            assert entry.amount == 0 or self.account.balance <= self.max_points
        self.entries.append(entry)
        self.reversible.append(entry)

    @rule(amount=st.integers(1, 500))
    def deduct(self, amount: int) -> None:
        self._settle()
        if amount > self.account.balance:
            before = self._snapshot()
            with pytest.raises(InsufficientPoints):
                self.account.deduct(amount, NOTHING, now=self.now)
            assert self._snapshot() == before
            return
        entry = self.account.deduct(amount, NOTHING, now=self.now)
        assert entry.amount == -amount
        self.entries.append(entry)
        self.reversible.append(entry)

    @rule(amount=st.integers(1, 500))
    def take(self, amount: int) -> None:
        """A deducting trigger: what there is of `amount`."""
        self._settle()
        entry = self.account.take(amount, NOTHING, now=self.now)
        assert entry.amount == -min(amount, self.account.balance - entry.amount)
        self.entries.append(entry)

    @rule(seconds=st.integers(0, 1_800))
    def wait(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        lapsed = self.account.expire_lapsed(self.now)
        for entry in lapsed:
            assert entry.type is EntryType.EXPIRE
            assert entry.amount < 0
            assert entry.create_time <= self.now
        self.entries.extend(lapsed)

    @precondition(lambda self: bool(self.reversible))
    @rule(pick=st.integers(0, 10_000))
    def reverse(self, pick: int) -> None:
        self._settle()
        original = self.reversible.pop(pick % len(self.reversible))
        expected: type[Exception] | None = None
        if original.type is EntryType.AWARD:
            if original.amount == 0 or (
                original.expire_time is not None and original.expire_time <= self.now
            ):
                expected = NotReversible
            elif original.amount > self.account.balance:
                expected = InsufficientPoints
        if expected is not None:
            before = self._snapshot()
            with pytest.raises(expected):
                self.account.reverse(original, NOTHING, now=self.now)
            assert self._snapshot() == before
            return
        entry = self.account.reverse(original, NOTHING, now=self.now)
        assert entry.amount == -original.amount
        assert entry.reverses_entry_id == original.id
        self.entries.append(entry)

    @invariant()
    def balance_is_the_sum_of_the_ledger(self) -> None:
        assert self.account.balance == sum(e.amount for e in self.entries)

    @invariant()
    def totals_explain_the_balance(self) -> None:
        a = self.account
        assert a.balance == a.total_earned - a.total_spent - a.total_expired
        assert a.balance >= 0
        assert min(a.total_earned, a.total_spent, a.total_expired) >= 0

    @invariant()
    def expiring_credit_is_part_of_the_balance(self) -> None:
        live = [lot for lot in self.account.lots if lot.remaining > 0]
        assert all(lot.remaining >= 0 for lot in self.account.lots)
        assert sum(lot.remaining for lot in live) <= self.account.balance
        assert self.account.next_expire_time == min((lot.expire_time for lot in live), default=None)

    @invariant()
    def a_replay_of_the_entries_leaves_the_same_account(self) -> None:
        """What `tally-server verify` relies on: the entries alone, replayed in order,
        say what is left of every lot (no entry names the lots it consumed)."""
        replayed = audit.replay(
            "xp",
            "alice",
            (
                audit.Posted(e.id, e.type, e.amount, e.expire_time, e.reverses_entry_id)
                for e in self.entries
            ),
        )
        assert totals(replayed) == totals(self.account)
        assert lots_left(replayed) == lots_left(self.account)
        assert replayed.next_expire_time == self.account.next_expire_time
        assert replayed.entry_counts == {t: n for t, n in self.account.entry_counts.items() if n}

    @invariant()
    def each_entry_carries_the_running_balance(self) -> None:
        running = 0
        for entry in self.entries:
            running += entry.amount
            assert entry.balance_after == running


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase


def test_lot_bookkeeping_is_what_the_store_writes_back() -> None:
    """changed_lots is how the store learns which lots to upsert or delete."""
    account = Account("xp", "alice")
    entry = account.award(10, NOTHING, now=T0, expire_time=at(5))
    account.changed_lots.clear()
    account.expire_lapsed(at(5))
    assert account.changed_lots == {entry.id: CreditLot(entry.id, at(5), 0)}


ACCOUNT_FIELDS = {
    "system_key": st.text(max_size=5),
    "user_id": st.text(max_size=5),
    "balance": st.integers(0, 10**6),
    "total_earned": st.integers(0, 10**6),
    "total_spent": st.integers(0, 10**6),
    "total_expired": st.integers(0, 10**6),
    "last_earned_time": st.none() | st.datetimes(timezones=st.just(UTC)),
    "next_expire_time": st.none() | st.datetimes(timezones=st.just(UTC)),
    "entry_counts": st.dictionaries(st.sampled_from(list(EntryType)), st.integers(0, 9)),
    "create_time": st.none() | st.datetimes(timezones=st.just(UTC)),
    "interval_marks": st.dictionaries(st.text(max_size=3), st.datetimes(timezones=st.just(UTC))),
    "next_accrual_time": st.none() | st.datetimes(timezones=st.just(UTC)),
    "accrual_version": st.integers(0, 99),
    "lots": st.lists(
        st.builds(
            CreditLot, st.text(max_size=3), st.datetimes(timezones=st.just(UTC)), st.integers(0, 9)
        ),
        max_size=3,
        unique_by=lambda lot: lot.entry_id,
    ),
    "changed_lots": st.just({}),
}


def test_every_account_field_has_a_strategy_here() -> None:
    """Account.copy is written field by field (it is on the hot path): a new field must be
    added to it, and to ACCOUNT_FIELDS, so that the copy test below covers it."""
    assert {f.name for f in dataclasses.fields(Account)} == set(ACCOUNT_FIELDS)


@given(st.fixed_dictionaries(ACCOUNT_FIELDS))
def test_a_copy_equals_the_account_and_shares_nothing_mutable(values: dict[str, Any]) -> None:
    account = Account(**values)
    account.changed_lots = {lot.entry_id: lot for lot in account.lots[:1]}
    copied = account.copy()
    assert copied == account
    for name in ("entry_counts", "interval_marks", "lots", "changed_lots"):
        assert getattr(copied, name) is not getattr(account, name)
    assert all(a is not b for a, b in zip(copied.lots, account.lots, strict=True))
