"""The write pipeline on both stores: many changes to one transaction, each failing alone.

These drive services/pipeline/writer.py and services/pipeline/posting.py (and through
it the decision, domain/batch.py) with real stores: batches in which one change fails,
repeats of a key inside a batch, database errors in the middle of a batch, batches of
separate writers (as of separate processes) racing on shared users.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select, text

from server.domain import changes, commands
from server.domain.balances import balance_in
from server.domain.batch import AwardPoints, Circumstances, CustomChange, DeductPoints
from server.domain.book import Book
from server.domain.errors import (
    IdempotencyKeyReused,
    InsufficientPoints,
    StoreUnavailable,
    TallyError,
    TransientStoreError,
)
from server.domain.model import UserProfile
from server.domain.results import WriteResult
from server.services import transactions
from server.services.pipeline import codec
from server.services.pipeline import writer as writer_module
from server.services.pipeline.posting import Change
from server.services.ports import Store, UnitOfWork, WriteGroups
from server.services.tally import Tally
from server.services.use_cases import points_changes
from server.store.database import SqlStore
from server.store.models import AccountRow, LedgerEntryRow
from tests.conftest import T0
from tests.integration.helpers import award, balance, system


class CountingStore:
    """A store that counts the write transactions it hands out."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.writes = 0

    def unit_of_work(self, *, write: bool) -> UnitOfWork:
        if write:
            self.writes += 1
        return self.store.unit_of_work(write=write)


def award_change(user: str, amount: int, *, key: str = "", **fields: Any) -> Change:
    cmd = commands.Award("xp", UserProfile(user), amount, idempotency_key=key, **fields)
    return AwardPoints(cmd, T0, request_hash=f"award {user} {amount}" if key else "")


def deduct_change(user: str, amount: int) -> Change:
    return DeductPoints(commands.Deduct("xp", user, amount), T0)


def awarded(book: Book, given: Circumstances, cmd: commands.Award) -> WriteResult:
    """How points_changes.award decides, for changes the tests build themselves."""
    system = given.system(cmd.system_key)
    entry = changes.award(book, given.rules, system, cmd, T0)
    return WriteResult(entry, balance_in(book, system, given.rules))


def ledger(store: SqlStore) -> tuple[int, int]:
    """(entries, sum of amounts) over the whole ledger."""
    with store.engine.connect() as connection:
        row = connection.execute(
            select(func.count(), func.coalesce(func.sum(LedgerEntryRow.amount), 0))
        ).one()
    return row[0], row[1]


def balances(store: SqlStore) -> int:
    with store.engine.connect() as connection:
        total = connection.scalar(select(func.coalesce(func.sum(AccountRow.balance), 0)))
    return int(total or 0)


def test_a_batch_posts_in_one_transaction_and_a_failing_change_fails_alone(
    store: SqlStore,
) -> None:
    counting = CountingStore(store)
    tally = Tally(counting)
    system(tally)
    award(tally, "bob", 5)
    counting.writes = 0
    outcomes = tally.writer.post(
        [
            award_change("alice", 10),
            deduct_change("bob", 1000),
            award_change("carol", 7),
            deduct_change("bob", 2),
            award_change("alice", 1),
        ]
    )
    assert counting.writes == 1
    assert isinstance(outcomes[1], InsufficientPoints)
    assert outcomes[1].metadata == {"available": "5", "requested": "1000"}
    results = [o for o in outcomes if isinstance(o, WriteResult)]
    assert [r.balance.balance for r in results] == [10, 7, 3, 11]  # chained per user
    assert [r.entry.balance_after for r in results] == [10, 7, 3, 11]
    sequences = [r.entry.sequence for r in results]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 4
    assert (balance(tally, "alice"), balance(tally, "bob"), balance(tally, "carol")) == (11, 3, 7)
    assert ledger(store) == (5, 21)
    assert balances(store) == 21


def test_repeats_of_a_key_within_a_batch_apply_once(tally: Tally, store: SqlStore) -> None:
    system(tally)
    outcomes = points_changes.award_batch(
        tally,
        [
            commands.Award("xp", UserProfile("alice"), 10, idempotency_key="k"),
            commands.Award("xp", UserProfile("alice"), 10, idempotency_key="k"),
            commands.Award("xp", UserProfile("alice"), 11, idempotency_key="k"),
            commands.Award("xp", UserProfile("bob"), 10, idempotency_key="k"),
        ],
        T0,
    )
    first, repeat, reused, other_user = outcomes
    assert isinstance(first, WriteResult)
    assert isinstance(repeat, WriteResult)
    assert (first.replayed, repeat.replayed) == (False, True)
    assert repeat.entry == first.entry
    assert repeat.balance == first.balance
    assert isinstance(reused, IdempotencyKeyReused)
    assert isinstance(other_user, WriteResult)
    assert not other_user.replayed
    again = award(tally, "alice", 10, idempotency_key="k")
    assert again.replayed
    assert again.entry == first.entry
    assert (balance(tally, "alice"), balance(tally, "bob")) == (10, 10)
    assert ledger(store) == (2, 20)


def test_a_change_decided_after_a_failed_one_with_its_key_applies(tally: Tally) -> None:
    system(tally)
    outcomes = tally.writer.post(
        [
            deduct_change("alice", 5),
            award_change("alice", 3, key="k"),
            award_change("alice", 3, key="k"),
        ]
    )
    assert isinstance(outcomes[0], TallyError)  # alice does not exist yet: USER_NOT_FOUND
    assert isinstance(outcomes[1], WriteResult)
    assert not outcomes[1].replayed
    assert isinstance(outcomes[2], WriteResult)
    assert outcomes[2].replayed
    assert balance(tally, "alice") == 3


def test_a_database_error_in_a_batch_posts_each_change_alone(tally: Tally, store: SqlStore) -> None:
    """A change whose entry cannot be written (its id is taken) fails alone; its
    neighbours are each applied once, none doubled."""
    system(tally)
    taken = award(tally, "bob", 1).entry.id

    def clashing(book: Book, given: Circumstances) -> WriteResult:
        result = awarded(book, given, commands.Award("xp", UserProfile("bob"), 4))
        book.entries[-1] = replace(result.entry, id=taken)
        return replace(result, entry=book.entries[-1])

    bad = CustomChange("xp", "bob", clashing, T0, profile=UserProfile("bob"))
    outcomes = tally.writer.post([award_change("alice", 10), bad, award_change("carol", 5)])
    assert isinstance(outcomes[0], WriteResult)
    assert isinstance(outcomes[2], WriteResult)
    assert isinstance(outcomes[1], StoreUnavailable)
    assert (balance(tally, "alice"), balance(tally, "bob"), balance(tally, "carol")) == (10, 1, 5)
    assert ledger(store) == (3, 16)
    assert balances(store) == 16


def test_a_transient_error_mid_batch_reruns_the_batch_once_applied(
    tally: Tally, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    system(tally)
    failures = iter([True])
    original = type(store.unit_of_work(write=True).__enter__().ledger).add

    def flaky_add(self: Any, entries: Any) -> Any:
        written = original(self, entries)
        if next(failures, False):
            raise TransientStoreError("connection lost mid-batch")
        return written

    monkeypatch.setattr(type(store.unit_of_work(write=True).__enter__().ledger), "add", flaky_add)
    outcomes = tally.writer.post([award_change(u, 3, key=f"k-{u}") for u in ("a", "b", "c")])
    assert all(isinstance(o, WriteResult) and not o.replayed for o in outcomes)
    assert ledger(store) == (3, 9)
    assert balances(store) == 9


@pytest.mark.parametrize(("max_batch", "transactions"), [(256, 2), (3, 3), (1, 6)])
def test_calls_queued_behind_a_commit_share_the_next_transaction(
    store: SqlStore, max_batch: int, transactions: int
) -> None:
    """While one batch is being posted, the calls that arrive wait and are then posted
    together: 1 + 1 transactions for 6 calls (more when a batch may carry fewer)."""
    counting = CountingStore(store)
    tally = Tally(counting, max_batch=max_batch)
    system(tally)
    counting.writes = 0
    inside, release = threading.Event(), threading.Event()

    def slow(book: Book, given: Circumstances) -> WriteResult:
        inside.set()
        assert release.wait(10)
        return awarded(book, given, commands.Award("xp", UserProfile("u0"), 1))

    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(
            tally.writer.post, [CustomChange("xp", "u0", slow, T0, profile=UserProfile("u0"))]
        )
        assert inside.wait(10)
        rest = [pool.submit(tally.writer.post, [award_change(f"u{i}", 1)]) for i in range(1, 6)]
        deadline = time.monotonic() + 10
        while tally.writer.waiting() < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        outcomes = [first.result(10)[0]] + [f.result(10)[0] for f in rest]
    assert all(isinstance(o, WriteResult) for o in outcomes)
    assert counting.writes == transactions
    assert ledger(store) == (6, 6)


def test_separate_writers_racing_on_shared_users_never_deadlock(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four writers (as four server processes would) post batches over the same users in
    random orders, adding them as they go; batches lock users in one sorted order (a user
    another writer adds meanwhile runs the batch again), so every batch commits, and none
    is ever a deadlock's victim."""
    retried: list[str] = []
    count = transactions._count_write_retry

    def record(state: Any) -> None:
        retried.append(str(state.outcome.exception()))
        count(state)

    monkeypatch.setattr(transactions, "_count_write_retry", record)
    writers = [Tally(store) for _ in range(4)]
    system(writers[0])
    users = [f"user-{i}" for i in range(8)]
    rounds = 15

    def run(w: int) -> int:
        rng = random.Random(w)
        posted = 0
        for _ in range(rounds):
            batch = rng.sample(users, k=6)
            outcomes = writers[w].writer.post([award_change(u, 1) for u in batch])
            assert all(isinstance(o, WriteResult) for o in outcomes), outcomes
            posted += len(batch)
        return posted

    with ThreadPoolExecutor(4) as pool:
        total = sum(pool.map(run, range(4)))
    assert total == 4 * rounds * 6
    assert ledger(store) == (total, total)
    assert balances(store) == total
    assert not [r for r in retried if "deadlock" in r], retried


def test_a_crash_in_a_lone_change_reaches_its_caller(tally: Tally) -> None:
    system(tally)

    def broken(book: Book, given: Circumstances) -> WriteResult:
        raise ZeroDivisionError("a bug in a rule")

    with pytest.raises(ZeroDivisionError):
        tally.writer.post([CustomChange("xp", "alice", broken, T0, profile=UserProfile("alice"))])
    # the writer is not wedged: the next call leads and posts
    assert isinstance(tally.writer.post([award_change("alice", 2)])[0], WriteResult)


_: Callable[..., Store] = CountingStore  # CountingStore is a Store


def test_profile_fields_of_a_batch_are_each_kept_and_replays_change_none(
    tally: Tally, store: SqlStore
) -> None:
    system(tally)

    def named(key: str, **profile: Any) -> Change:
        cmd = commands.Award("xp", UserProfile("u", **profile), 1, idempotency_key=key)
        return AwardPoints(cmd, T0, request_hash=codec.fingerprint("Award", cmd))

    tally.writer.post([named("k1", display_name="Ann"), named("k2", email="ann@example.com")])
    tally.writer.post([named("k3", display_name="Bea")])
    replayed = tally.writer.post([named("k1", display_name="Ann")])  # a retry of k1
    reused = tally.writer.post([named("k3", display_name="Cat", email="x@example.com")])
    assert isinstance(replayed[0], WriteResult)
    assert replayed[0].replayed
    assert isinstance(reused[0], IdempotencyKeyReused)
    with store.unit_of_work(write=False) as uow:
        user = uow.users.get("u")
    assert user is not None
    assert (user.display_name, user.email) == ("Bea", "ann@example.com")


def test_a_change_queued_before_the_one_that_creates_its_user_finds_no_user(
    tally: Tally,
) -> None:
    system(tally)
    outcomes = tally.writer.post([deduct_change("newcomer", 1), award_change("newcomer", 5)])
    assert isinstance(outcomes[0], TallyError)
    assert outcomes[0].reason == "USER_NOT_FOUND"
    assert isinstance(outcomes[1], WriteResult)


def test_store_unavailable_is_a_fresh_error_for_every_change(
    tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    system(tally)

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("down")

    monkeypatch.setattr(writer_module, "in_transaction", down)
    outcomes = tally.writer.post([award_change("a", 1), award_change("b", 1)])
    assert all(isinstance(o, StoreUnavailable) for o in outcomes)
    assert outcomes[0] is not outcomes[1]


class Boom(BaseException):
    """Not an Exception: what the writer must survive without stranding a waiter."""


def one_group(tally: Tally, count: int) -> list[str]:
    """`count` user ids of one write group (under Citus, one worker's), so that their
    calls queue behind one another."""
    candidates = [f"user-{i}" for i in range(64)]
    if not isinstance(tally.store, WriteGroups):
        return candidates[:count]
    groups = tally.store.write_groups(candidates)
    return [u for u, g in zip(candidates, groups, strict=True) if g == groups[0]][:count]


def test_calls_of_a_batch_whose_leader_dies_are_answered(tally: Tally) -> None:
    system(tally)
    a, b, c = one_group(tally, 3)
    inside, release = threading.Event(), threading.Event()

    def slow(book: Book, given: Circumstances) -> WriteResult:
        inside.set()
        assert release.wait(10)
        return awarded(book, given, commands.Award("xp", UserProfile(a), 1))

    def dies(book: Book, given: Circumstances) -> WriteResult:
        raise Boom()

    def call(change: Change) -> object:
        try:
            return tally.writer.post([change])[0]
        except BaseException as error:  # noqa: BLE001 - the test looks at what each call got
            return error

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(call, CustomChange("xp", a, slow, T0, profile=UserProfile(a)))
        assert inside.wait(10)
        dying = pool.submit(call, CustomChange("xp", b, dies, T0, profile=UserProfile(b)))
        deadline = time.monotonic() + 10
        while tally.writer.waiting() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        bystander = pool.submit(call, award_change(c, 1))
        while tally.writer.waiting() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        results = [f.result(10) for f in (first, dying, bystander)]
    assert isinstance(results[0], WriteResult)
    assert isinstance(results[1], Boom)  # the leader of the second batch
    assert isinstance(results[2], StoreUnavailable)  # in that batch: answered, not stranded
    assert isinstance(tally.writer.post([award_change("d", 1)])[0], WriteResult)  # not wedged


def test_a_batch_waiting_on_a_user_held_elsewhere_gives_up_and_the_rest_go_on(
    pg_store: SqlStore, postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's row held by something else (an operator's open transaction) fails the
    batch that waits on it after the lock timeout, STORE_UNAVAILABLE, instead of holding
    up every write of the process; changes of other users then post as usual."""
    monkeypatch.setattr(transactions, "MAX_ATTEMPTS", 2)
    store = SqlStore.from_url(postgresql_url, lock_timeout=0.2)
    tally = Tally(store)
    try:
        system(tally)
        award(tally, "held", 1)
        with pg_store.engine.connect() as operator:
            operator.execute(text("SELECT * FROM users WHERE id = 'held' FOR UPDATE"))
            started = time.monotonic()
            outcomes = tally.writer.post([award_change("held", 1), award_change("free", 1)])
            waited = time.monotonic() - started
            assert all(isinstance(o, StoreUnavailable) for o in outcomes)
            assert waited < 3
            assert isinstance(tally.writer.post([award_change("free", 2)])[0], WriteResult)
            operator.rollback()
        assert balance(tally, "held") == 1
        assert balance(tally, "free") == 2
    finally:
        store.dispose()


def test_users_made_by_changes_that_all_failed_are_not_kept(tally: Tally) -> None:
    """One batch, several new users whose every change fails: none is kept (under Citus
    each is removed on its own shard), and one with a change that succeeds is."""
    system(tally)
    nowhere = [
        AwardPoints(commands.Award("nosuch", UserProfile(u), 1), T0) for u in ("n1", "n2", "n3")
    ]
    outcomes = tally.writer.post([*nowhere, award_change("kept", 4)])
    assert [type(o).__name__ for o in outcomes] == [
        "SystemNotFound",
        "SystemNotFound",
        "SystemNotFound",
        "WriteResult",
    ]
    with tally.store.unit_of_work(write=False) as uow:
        assert [u for u in ("n1", "n2", "n3", "kept") if uow.users.get(u)] == ["kept"]
