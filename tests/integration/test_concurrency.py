"""Racing writers on one user: the ledger stays whole and keys award once.

These run on both stores; on PostgreSQL they exercise the per-user row lock, on SQLite the
single writer lock.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from server.domain import commands
from server.domain.errors import InsufficientPoints
from server.domain.ledger import Posting
from server.domain.model import LedgerEntry
from server.services.tally import Tally
from server.services.use_cases import points_changes, reads
from server.store.database import SqlStore
from server.store.models import AccountRow, LedgerEntryRow
from tests.conftest import T0
from tests.integration.helpers import award, balance, deduct, system


def race(threads: int, work: Callable[[int], object]) -> list[object]:
    """Run work(i) on `threads` threads released together; results in thread order."""
    barrier = threading.Barrier(threads)

    def run(i: int) -> object:
        barrier.wait()
        try:
            return work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            return exc

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(run, range(threads)))


def ledger_sum(store: SqlStore, user: str) -> int:
    with store.engine.connect() as connection:
        return connection.scalar(  # type: ignore[return-value]
            select(func.coalesce(func.sum(LedgerEntryRow.amount), 0)).where(
                LedgerEntryRow.user_id == user
            )
        )


def account_row(store: SqlStore, user: str) -> AccountRow:
    with store.engine.connect() as connection:
        row = connection.execute(select(AccountRow).where(AccountRow.user_id == user)).one()
    return row  # type: ignore[return-value]


def test_sixteen_threads_awarding_and_deducting_keep_the_ledger_whole(
    tally: Tally, store: SqlStore
) -> None:
    system(tally)
    award(tally, "hot", 100)
    rng = random.Random(7)
    plans = [[(rng.choice("ad"), rng.randint(1, 40)) for _ in range(15)] for _ in range(16)]

    def work(i: int) -> tuple[int, int]:
        awarded = deducted = 0
        for op, amount in plans[i]:
            if op == "a":
                award(tally, "hot", amount)
                awarded += amount
            else:
                try:
                    deduct(tally, "hot", amount)
                    deducted += amount
                except InsufficientPoints:
                    pass
        return awarded, deducted

    results = race(16, work)
    assert all(isinstance(r, tuple) for r in results), results
    awarded = 100 + sum(r[0] for r in results)  # type: ignore[index]
    deducted = sum(r[1] for r in results)  # type: ignore[index]
    row = account_row(store, "hot")
    assert row.balance == ledger_sum(store, "hot") == awarded - deducted
    assert (row.total_earned, row.total_spent) == (awarded, deducted)
    # balance_after along the ledger is a running sum that never goes below zero
    entries = reads.list_transactions(tally, commands.ListTransactions("xp", "hot", 100), T0)
    running = 0
    everything = []
    token = ""
    while True:
        page = reads.list_transactions(
            tally, commands.ListTransactions("xp", "hot", 100, token), T0
        )
        everything += page.entries
        token = page.next_page_token
        if not token:
            break
    for entry in reversed(everything):
        running += entry.amount
        assert entry.balance_after == running >= 0
    assert entries.total_size == len(everything)


def test_twenty_racing_repeats_of_one_key_award_once(tally: Tally, store: SqlStore) -> None:
    system(tally)
    results = race(20, lambda i: award(tally, "alice", 25, idempotency_key="launch-bonus"))
    assert all(not isinstance(r, Exception) for r in results), results
    fresh = [r for r in results if not r.replayed]  # type: ignore[attr-defined]
    assert len(fresh) == 1
    assert {r.entry.id for r in results} == {fresh[0].entry.id}  # type: ignore[attr-defined]
    assert balance(tally, "alice") == ledger_sum(store, "alice") == 25


def test_racing_first_awards_create_the_user_once(tally: Tally) -> None:
    system(tally)
    results = race(12, lambda i: award(tally, "newcomer", 1))
    assert all(not isinstance(r, Exception) for r in results), results
    assert balance(tally, "newcomer") == 12


def test_racing_reversals_reverse_once(tally: Tally) -> None:
    system(tally)
    first = award(tally, "alice", 40)
    award(tally, "alice", 100)
    results = race(8, lambda i: points_changes.reverse(tally, commands.Reverse(first.entry.id), T0))
    done = [r for r in results if not isinstance(r, Exception)]
    assert len(done) == 1
    assert all(type(r).__name__ == "AlreadyReversed" for r in results if r not in done)
    assert balance(tally, "alice") == 100


def test_keyset_pages_visit_every_entry_once_while_new_ones_arrive(tally: Tally) -> None:
    system(tally)
    for i in range(45):
        award(tally, "alice", i + 1)
    before = {e.id for e in _all_pages(tally, "alice", page_size=7)}
    seen: list[str] = []
    token = ""
    while True:
        page = reads.list_transactions(
            tally, commands.ListTransactions("xp", "alice", 7, token), T0
        )
        seen += [e.id for e in page.entries]
        award(tally, "alice", 1000)  # arrives between pages
        award(tally, "bob", 1)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert set(seen) == before


def _all_pages(tally: Tally, user: str, page_size: int) -> list[LedgerEntry]:
    out, token = [], ""
    while True:
        page = reads.list_transactions(
            tally, commands.ListTransactions("xp", user, page_size, token), T0
        )
        out += page.entries
        token = page.next_page_token
        if not token:
            return out


def test_a_change_that_waited_for_the_lock_sees_the_account_it_waited_on(
    tally: Tally, store: SqlStore
) -> None:
    """The account is read after the user's lock is held, never with it: a FOR UPDATE that
    waits re-reads only the locked row, so an account joined into it would be stale (a
    lost update). Hold the lock with an award in progress, start a second, then commit."""
    system(tally)
    award(tally, "alice", 10)
    holding = threading.Event()
    release = threading.Event()

    def first() -> None:
        with tally.store.unit_of_work(write=True) as uow:
            locked = uow.users.lock(["alice"], {})
            assert "alice" in locked.users
            account = uow.accounts.standing(["alice"], []).accounts[("alice", "xp")]
            entry = account.award(5, Posting(), now=T0)
            holding.set()
            release.wait(10)
            uow.ledger.add([entry])
            uow.accounts.save([account], T0)
            uow.commit()

    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(first)
        assert holding.wait(10)
        waiting = pool.submit(award, tally, "alice", 1)
        time.sleep(0.3)  # the second award is now waiting for alice's lock
        assert not waiting.done()
        release.set()
        held.result(10)
        second = waiting.result(10)
    assert second.balance.balance == 16
    assert balance(tally, "alice") == ledger_sum(store, "alice") == 16
