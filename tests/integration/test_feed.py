"""The live ledger feed: every entry exactly once, in sequence order, none skipped, also
when transactions commit out of the order of their sequence numbers (services/held/feed.py).

The out-of-order commit is forced on PostgreSQL, where it can happen; SQLite runs one
writer at a time, and the same API is shown to hold there under concurrent writers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select, text

from server.domain import reports
from server.domain.errors import StoreUnavailable, SystemNotFound, ValidationFailed
from server.domain.model import LedgerEntry
from server.services.held import feed
from server.services.pipeline import posting
from server.services.pipeline.results import WriteResult
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.use_cases import watch
from server.store.database import SqlStore
from server.store.models import LedgerEntryRow
from tests.conftest import PG_ADMIN_URL
from tests.integration.helpers import award, system
from tests.integration.test_concurrency import race
from tests.integration.test_writer import award_change


def entries(stream: Iterator[list[LedgerEntry]]) -> list[LedgerEntry]:
    return [entry for chunk in stream for entry in chunk]


def watch_all(tally: Tally, after: int = 0, system_key: str = "") -> list[LedgerEntry]:
    cmd = reports.WatchLedger(system_key, after, follow=False)
    return entries(watch.watch_ledger(tally, cmd))


class Follower:
    """A following WatchLedger on a thread of its own, collecting what it receives."""

    def __init__(self, tally: Tally, after: int = 0) -> None:
        self.received: list[LedgerEntry] = []
        self.error: BaseException | None = None
        self._arrived = threading.Condition()
        stream = watch.watch_ledger(tally, reports.WatchLedger("", after, follow=True))
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: Iterator[list[LedgerEntry]]) -> None:
        try:
            for chunk in stream:
                with self._arrived:
                    self.received.extend(chunk)
                    self._arrived.notify_all()
        except BaseException as error:  # noqa: BLE001 - the test reads it
            self.error = error
        finally:
            with self._arrived:
                self._arrived.notify_all()

    def wait_for(self, count: int) -> list[LedgerEntry]:
        """What arrived once `count` entries have (a test failing here hangs no longer
        than a generous bound, then shows what came)."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.received) >= count, timeout=30)
            return list(self.received)

    def stop(self, tally: Tally) -> None:
        tally.feeds.close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()


def committed_sequences(store: SqlStore) -> list[int]:
    with store.engine.connect() as connection:
        return list(connection.scalars(select(LedgerEntryRow.sequence)))


def test_a_late_commit_of_a_lower_sequence_is_neither_skipped_nor_repeated(
    pg_tally: Tally, pg_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A takes its sequence first, B takes a higher one and commits first: the feed holds
    B back until A commits, then delivers A and B once each, in order."""
    monkeypatch.setattr(feed, "SETTLE_SECONDS", 0.1)
    tally = pg_tally
    system(tally)
    award(tally, "zero", 1)
    follower = Follower(tally)
    assert [e.user_id for e in follower.wait_for(1)] == ["zero"]

    with pg_store.unit_of_work(write=True) as held:
        (first,) = posting.post(held, [award_change("a", 10)], tally.config)
        assert isinstance(first, WriteResult)
        (second,) = tally.writer.post([award_change("b", 20)])  # commits at once
        assert isinstance(second, WriteResult)
        assert first.entry.sequence < second.entry.sequence
        # The out-of-order state a `sequence > cursor` reader would skip A in: B is
        # committed, A is not.
        assert second.entry.sequence in committed_sequences(pg_store)
        assert first.entry.sequence not in committed_sequences(pg_store)
        # The watermark stays below A for as long as A is open, so B is not delivered...
        final, _issued = tally.feeds.watermark("ledger").bound(float("inf"))
        assert final < first.entry.sequence
        # ...and a call without follow ends before A (it waits for A a bounded time).
        assert [e.user_id for e in watch_all(tally, after=final)] == []
        held.commit()

    tally.feeds.committed()  # A was committed outside the writer: wake the follower
    received = follower.wait_for(3)
    assert [e.user_id for e in received] == ["zero", "a", "b"]
    assert [e.sequence for e in received[1:]] == [first.entry.sequence, second.entry.sequence]
    assert [e.user_id for e in watch_all(tally)] == ["zero", "a", "b"]
    follower.stop(tally)
    assert follower.received == received  # nothing more, nothing twice


def test_a_rolled_back_sequence_leaves_a_gap_the_feed_passes(
    pg_tally: Tally, pg_store: SqlStore
) -> None:
    system(pg_tally)
    with pg_store.unit_of_work(write=True) as abandoned:
        posting.post(abandoned, [award_change("gone", 1)], pg_tally.config)
    award(pg_tally, "kept", 2)
    assert [e.user_id for e in watch_all(pg_tally)] == ["kept"]


def test_eight_writers_and_a_follower_see_every_entry_once_in_order(tally: Tally) -> None:
    system(tally)
    follower = Follower(tally)
    per_thread = 25

    def write(i: int) -> None:
        for n in range(per_thread):
            award(tally, f"u{i}-{n % 3}", n + 1)

    race(8, write)
    received = follower.wait_for(8 * per_thread)
    everything = watch_all(tally)
    follower.stop(tally)
    assert follower.received == received  # nothing after the last, nothing twice
    assert len(received) == 8 * per_thread
    sequences = [e.sequence for e in received]
    assert sequences == sorted(set(sequences))
    assert [e.id for e in received] == [e.id for e in everything]


def test_resuming_from_the_last_sequence_seen_yields_the_rest_once(
    tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed, "CHUNK", 4)  # several reads
    system(tally)
    system(tally, "coins")
    for n in range(15):
        award(tally, f"u{n % 4}", n + 1, system_key="coins" if n % 3 == 0 else "xp")
    stream = watch.watch_ledger(tally, reports.WatchLedger("", 0, follow=False))
    seen = next(stream) + next(stream)  # the client drops after two messages
    del stream
    rest = watch_all(tally, after=seen[-1].sequence)
    everything = watch_all(tally)
    assert [e.id for e in seen + rest] == [e.id for e in everything]
    assert len(everything) == 15
    coins = watch_all(tally, system_key="coins")
    assert [e.id for e in coins] == [e.id for e in everything if e.system_key == "coins"]
    assert watch_all(tally, after=everything[-1].sequence) == []


def test_a_watch_checks_its_request_before_it_streams(tally: Tally) -> None:
    with pytest.raises(SystemNotFound):
        watch.watch_ledger(tally, reports.WatchLedger("nope"))
    with pytest.raises(ValidationFailed) as failed:
        watch.watch_ledger(tally, reports.WatchLedger("", -1))
    assert failed.value.violations[0].field == "after_sequence"


def test_followers_end_with_store_unavailable_when_the_process_stops(tally: Tally) -> None:
    system(tally)
    award(tally, "u", 1)
    follower = Follower(tally)
    follower.wait_for(1)
    follower.stop(tally)
    assert isinstance(follower.error, StoreUnavailable)


def test_a_slow_consumer_holds_back_the_reads(
    tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed reads a chunk only once the consumer has taken the one before it, so a
    stream's memory is one chunk, however long the ledger and however slow the reader."""
    monkeypatch.setattr(feed, "CHUNK", 3)
    system(tally)
    for n in range(10):
        award(tally, f"u{n}", 1)
    reads: list[int] = []
    ledger = watch.ledger_feed("")

    def counted(uow: UnitOfWork, after: int, through: int, limit: int) -> list[LedgerEntry]:
        reads.append(after)
        return ledger.read(uow, after, through, limit)

    stream = tally.feeds.watch(feed.Feed("ledger", counted, ledger.number), 0, follow=False)
    first = next(stream)
    assert (len(first), len(reads)) == (3, 1)  # nothing read ahead
    second = next(stream)
    assert (len(second), len(reads)) == (3, 2)
    rest = [e for chunk in stream for e in chunk]
    assert len(first + second + rest) == 10
    assert reads == [0, first[-1].sequence, second[-1].sequence, rest[2].sequence]


def test_a_long_transaction_in_another_database_does_not_hold_the_feed_back(
    pg_tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only this database's transactions can hold ledger numbers: one elsewhere in the
    cluster (which would hold back pg_snapshot_xmin) is not waited for."""
    monkeypatch.setattr(feed, "SETTLE_SECONDS", 0.2)
    system(pg_tally)
    elsewhere = create_engine(PG_ADMIN_URL)
    try:
        with elsewhere.connect() as other:
            other.execute(text("SELECT pg_current_xact_id()"))  # holds a transaction id
            award(pg_tally, "u", 1)
            assert [e.user_id for e in watch_all(pg_tally)] == ["u"]
            other.rollback()
    finally:
        elsewhere.dispose()
