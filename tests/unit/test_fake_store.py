"""The fake store keeps what the use cases rely on from a real one (tests/fakes.py):
writes are seen only once committed, a unit of work rolls back unless told to commit,
reads are snapshots that cannot write, the schema's unique constraints hold, and what
goes in and out is a copy."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from server.domain.ledger import Account, CreditLot
from server.domain.model import (
    EntryType,
    LedgerEntry,
    Level,
    LevelBasis,
    PointsSystem,
    User,
    UserProfile,
)
from server.services.ports import Store
from tests.conftest import T0
from tests.fakes import FakeStore, IntegrityError, ReadOnlyViolation

XP = PointsSystem("xp", "xp", "", "", 0, LevelBasis.BALANCE, T0, T0)


def entry(entry_id: str, amount: int = 10, *, reverses: str = "") -> LedgerEntry:
    return LedgerEntry(
        id=entry_id,
        system_key="xp",
        user_id="ann",
        type=EntryType.REVERSAL if reverses else EntryType.AWARD,
        amount=amount,
        base_amount=amount,
        multiplier=Decimal(1),
        capped=False,
        balance_after=amount,
        reason="",
        reverses_entry_id=reverses,
        create_time=T0,
    )


def systems_seen(store: Store) -> list[str]:
    with store.unit_of_work(write=False) as uow:
        return [s.key for s in uow.systems.all()]


class TestUnitOfWork:
    def test_writes_are_seen_only_once_committed(self) -> None:
        store = FakeStore()
        with store.unit_of_work(write=True) as uow:
            assert uow.systems.add(XP)
            assert [s.key for s in uow.systems.all()] == ["xp"]  # its own writes
            assert systems_seen(store) == []
            uow.commit()
            assert systems_seen(store) == ["xp"]

    def test_without_a_commit_nothing_is_written(self) -> None:
        store = FakeStore()
        with store.unit_of_work(write=True) as uow:
            uow.systems.add(XP)
            uow.systems.bump_version()
        assert systems_seen(store) == []
        with store.unit_of_work(write=False) as uow:
            assert uow.systems.version() == 1

    def test_an_error_rolls_back(self) -> None:
        store = FakeStore()

        def fail() -> None:
            with store.unit_of_work(write=True) as uow:
                uow.systems.add(XP)
                raise RuntimeError("a rule failed")

        with pytest.raises(RuntimeError):
            fail()
        assert systems_seen(store) == []
        assert store.commits == 0

    def test_rollback_discards_and_the_unit_of_work_goes_on(self) -> None:
        store = FakeStore()
        with store.unit_of_work(write=True) as uow:
            uow.systems.add(XP)
            uow.rollback()
            assert uow.systems.all() == []
            uow.systems.add(replace(XP, key="coins"))
            uow.commit()
        assert systems_seen(store) == ["coins"]

    def test_a_read_is_one_snapshot(self) -> None:
        store = FakeStore()
        with store.unit_of_work(write=False) as read:
            with store.unit_of_work(write=True) as uow:
                uow.systems.add(XP)
                uow.commit()
            assert read.systems.get("xp") is None
        assert systems_seen(store) == ["xp"]

    def test_a_read_refuses_writes_and_locks(self) -> None:
        store = FakeStore()
        with store.unit_of_work(write=False) as uow:
            with pytest.raises(ReadOnlyViolation, match="add in a read"):
                uow.systems.add(XP)
            with pytest.raises(ReadOnlyViolation, match="lock in a read"):
                uow.users.lock(["ann"], {})

    def test_a_unit_of_work_is_not_used_after_its_block(self) -> None:
        store = FakeStore()
        with store.unit_of_work(write=True) as uow:
            pass
        with pytest.raises(AssertionError, match="outside its `with` block"):
            uow.systems.all()


class TestConstraints:
    def test_an_entry_is_reversed_once_and_numbered_in_order(self) -> None:
        store = FakeStore()
        with store.unit_of_work(write=True) as uow:
            written = uow.ledger.add([entry("a"), entry("b"), entry("r", -10, reverses="a")])
            assert [e.sequence for e in written] == [1, 2, 3]
            assert uow.ledger.reversals_of(["ann"], ["a", "b"]) == {"a": "r"}
            with pytest.raises(IntegrityError, match="reversed already"):
                uow.ledger.add([entry("r2", -10, reverses="a")])
            with pytest.raises(IntegrityError, match="exists"):
                uow.ledger.add([entry("b")])

    def test_a_levels_key_and_threshold_are_unique_in_its_system(self) -> None:
        store = FakeStore()
        silver = Level("1", "xp", "silver", "Silver", "", "", 50)
        with store.unit_of_work(write=True) as uow:
            uow.levels.add(silver)
            uow.levels.add(replace(silver, id="2", system_key="coins"))
            for clash in (replace(silver, id="3", points=70), replace(silver, id="4", key="x")):
                with pytest.raises(IntegrityError):
                    uow.levels.add(clash)


class TestCopies:
    def test_changing_what_was_read_changes_nothing_stored(self) -> None:
        store = FakeStore()
        account = Account("xp", "ann", balance=10, next_expire_time=T0)
        account.changed_lots["a"] = CreditLot("a", T0, 10)
        with store.unit_of_work(write=True) as uow:
            uow.users.lock(
                ["ann"], {"ann": User.new(UserProfile("ann", attributes={"k": "v"}), T0)}
            )
            uow.accounts.save([account], T0)
            uow.commit()
        account.balance = 99
        with store.unit_of_work(write=False) as uow:
            read = uow.accounts.standing(["ann"], []).accounts[("ann", "xp")]
            read.balance = 50
            read.lots[0].remaining = 1
            user = uow.users.get("ann")
            assert user is not None
            user.attributes["k"] = "changed"
        with store.unit_of_work(write=False) as uow:
            again = uow.accounts.standing(["ann"], []).accounts[("ann", "xp")]
            assert (again.balance, [lot.remaining for lot in again.lots]) == (10, [10])
            assert again.create_time == T0
            stored_user = uow.users.get("ann")
            assert stored_user is not None
            assert stored_user.attributes == {"k": "v"}
