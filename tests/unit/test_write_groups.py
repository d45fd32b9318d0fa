"""Group commit per write group (services/pipeline/writer.py), on the fake store: a batch
never spans two groups, a call whose changes span groups is posted a part per group with
its outcomes in the call's order, each change's error stays its own, and batches of two
groups commit concurrently."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from server.domain import changes, commands
from server.domain.balances import balance_in
from server.domain.batch import AwardPoints, Circumstances, CustomChange, DeductPoints
from server.domain.book import Book
from server.domain.errors import InsufficientPoints, StoreUnavailable
from server.domain.model import User, UserProfile
from server.domain.results import WriteResult
from server.services.pipeline.posting import Change
from server.services.ports import KeyScope, LockedUsers
from server.services.tally import Tally
from server.services.use_cases import systems
from tests.conftest import T0
from tests.fakes import FakeStore, FakeUnitOfWork

WAIT = 10.0


class GroupedStore(FakeStore):
    """The fake store with write groups (a user's is the first letter of its id, as a
    worker under Citus), recording the users each write transaction locked."""

    def __init__(self, *, serialized: bool = True) -> None:
        super().__init__()
        self.locked: list[list[str]] = []
        self.serialized = serialized

    def write_groups(self, user_ids: Sequence[str]) -> list[int]:
        return [ord(user_id[0]) for user_id in user_ids]

    def unit_of_work(self, *, write: bool) -> FakeUnitOfWork:
        uow = super().unit_of_work(write=write)
        lock = uow.users.lock

        def recording(
            user_ids: Sequence[str],
            create: Mapping[str, User],
            keys: Sequence[KeyScope] = (),
            metrics: Sequence[str] = (),
        ) -> LockedUsers:
            self.locked.append(sorted(set(user_ids)))
            return lock(user_ids, create, keys, metrics)

        uow.users.lock = recording  # type: ignore[method-assign]
        return uow

    def _begin_write(self) -> None:
        if self.serialized:
            super()._begin_write()

    def _end_write(self) -> None:
        if self.serialized:
            super()._end_write()


def award(user: str, amount: int) -> Change:
    return AwardPoints(commands.Award("xp", UserProfile(user), amount), T0)


def deduct(user: str, amount: int) -> Change:
    return DeductPoints(commands.Deduct("xp", user, amount), T0)


def award_rule(user: str) -> Callable[[Book, Circumstances], WriteResult]:
    """A rule that awards `user` 1 (which a test may wrap to stall it)."""

    def rule(book: Book, given: Circumstances) -> WriteResult:
        system = given.system("xp")
        cmd = commands.Award("xp", UserProfile(user), 1)
        entry = changes.award(book, given.rules, system, cmd, T0)
        return WriteResult(entry, balance_in(book, system, given.rules))

    return rule


def ready(store: GroupedStore) -> Tally:
    tally = Tally(store)
    systems.create_system(tally, commands.CreateSystem("xp", "XP"), T0)
    store.locked.clear()
    return tally


def test_a_call_spanning_groups_posts_a_batch_per_group_outcomes_in_its_order() -> None:
    store = GroupedStore()
    tally = ready(store)
    outcomes = tally.writer.post(
        [award("a1", 1), award("b1", 2), award("a2", 3), award("b2", 4), award("a1", 5)]
    )
    assert sorted(store.locked) == [["a1", "a2"], ["b1", "b2"]]  # a transaction per group
    results = [o for o in outcomes if isinstance(o, WriteResult)]
    assert len(results) == 5
    assert [r.entry.user_id for r in results] == ["a1", "b1", "a2", "b2", "a1"]
    assert [r.balance.balance for r in results] == [1, 2, 3, 4, 6]  # a1 chained in its part


def test_a_change_that_fails_fails_alone_in_its_part() -> None:
    store = GroupedStore()
    tally = ready(store)
    tally.writer.post([award("b1", 5)])
    store.locked.clear()

    def breaks(book: Book, given: Circumstances) -> WriteResult:
        raise RuntimeError("a database error in the middle of a batch")

    broken = CustomChange("xp", "b3", breaks, T0, profile=UserProfile("b3"))
    outcomes = tally.writer.post(
        [award("a1", 1), deduct("b1", 9), award("b2", 2), broken, award("a2", 3)]
    )
    assert isinstance(outcomes[1], InsufficientPoints)
    assert isinstance(outcomes[3], StoreUnavailable)  # its database error, and its only
    assert [type(o) for o in (outcomes[0], outcomes[2], outcomes[4])] == [WriteResult] * 3
    # b's batch failed, and each of its changes ran again alone; a's was not disturbed
    assert ["a1", "a2"] in store.locked
    assert ["b1"] in store.locked
    assert ["b2"] in store.locked
    assert all(
        set(users) <= {"a1", "a2"} or set(users) <= {"b1", "b2", "b3"} for users in store.locked
    )


def test_batches_of_two_groups_commit_concurrently() -> None:
    store = GroupedStore(serialized=False)  # (the fake otherwise runs one write at a time)
    tally = ready(store)
    inside, release = threading.Event(), threading.Event()
    awards = award_rule("a1")

    def stall(book: Book, given: Circumstances) -> WriteResult:
        inside.set()
        assert release.wait(WAIT)
        return awards(book, given)

    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(
            tally.writer.post, [CustomChange("xp", "a1", stall, T0, profile=UserProfile("a1"))]
        )
        assert inside.wait(WAIT)
        # a's batch is held open; b's commits beside it, not after it
        other = pool.submit(tally.writer.post, [award("b1", 1)])
        assert isinstance(other.result(WAIT)[0], WriteResult)
        assert not held.done()
        release.set()
        assert isinstance(held.result(WAIT)[0], WriteResult)


@pytest.mark.parametrize("users", [["a1", "a2"], ["b1"]])
def test_a_call_of_one_group_is_one_batch(users: list[str]) -> None:
    store = GroupedStore()
    tally = ready(store)
    outcomes = tally.writer.post([award(u, 1) for u in users])
    assert store.locked == [users]
    assert all(isinstance(o, WriteResult) for o in outcomes)


def test_a_stalled_group_does_not_stall_split_calls_of_other_groups() -> None:
    """Calls whose changes span groups, many of them waiting on a stalled group, leave a
    call of two idle groups unharmed: no shared pool of part threads to run out of
    (found in review, where eight such calls held every part thread)."""
    store = GroupedStore(serialized=False)
    tally = ready(store)
    inside, release = threading.Event(), threading.Event()
    awards = award_rule("b0")

    def stall(book: Book, given: Circumstances) -> WriteResult:
        inside.set()
        release.wait(WAIT * 3)
        return awards(book, given)

    stalled_calls = 16
    callers = ThreadPoolExecutor(stalled_calls + 2)
    try:
        held = callers.submit(
            tally.writer.post, [CustomChange("xp", "b0", stall, T0, profile=UserProfile("b0"))]
        )
        assert inside.wait(WAIT)
        busy = [  # each waits in b's queue with its b part
            callers.submit(tally.writer.post, [award(f"a{i}", 1), award(f"b{i + 1}", 1)])
            for i in range(stalled_calls)
        ]
        for _ in range(1000):
            if tally.writer.waiting() >= stalled_calls:
                break
            threading.Event().wait(0.01)
        assert tally.writer.waiting() >= stalled_calls
        innocent = callers.submit(tally.writer.post, [award("a100", 1), award("c1", 1)])
        try:
            outcomes = innocent.result(WAIT)
        finally:
            release.set()
        assert all(isinstance(o, WriteResult) for o in outcomes)
        held.result(WAIT)
        assert all(isinstance(o, WriteResult) for call in busy for o in call.result(WAIT))
    finally:
        release.set()
        callers.shutdown(wait=True)
