"""Live feeds: a store's numbered items in order after a cursor, then as they commit.

WatchLedger streams ledger entries by `sequence`, and WatchLevelChanges level changes by
theirs; both are a `Feed` followed by `Feeds.watch`. A caller
that resumes with the last number it saw gets every later item exactly once.

Why `sequence > cursor` alone would skip: on PostgreSQL an item takes its number from a
sequence when its transaction inserts it, not when that commits. Transaction A takes 7,
B takes 8 and commits first; a reader that then delivers 8 and stores cursor 8 never
sees 7. So a feed streams only up to a *watermark*: a number at or below which nothing
can still commit.

How a watermark is made on PostgreSQL (no schema, no lock on the write path):
1. Read the highest number handed out so far, L (the sequence's last value).
2. Then list the transactions of this database that hold a transaction id (from
   pg_stat_activity: pid and backend_xid). A writer has its transaction id before it
   numbers items (posting locks the batch's users first, and a row lock gives a
   transaction its id), so every transaction holding a number <= L that has not ended
   is on this list. Other databases of the cluster cannot write here: they are not on
   it (waiting for the cluster's oldest transaction, pg_snapshot_xmin, would let any
   long write transaction of another database hold the feed back).
3. Once none of them is still running, every number <= L is final (committed or rolled
   back), and L is the watermark. Reads after that see all of them.
(pg_stat_activity shows backend_xid for every session whatever its role; prepared
two-phase transactions are not in it, and Tally does not make any.)
An open transaction holding a low number holds the feed back (its neighbours wait; none
is skipped) for as long as it stays open: Tally's writes are short, but any long write
transaction in Tally's own database delays, never breaks, the feed. A process's
followers share one watermark, refreshed at most once for all who want it at once: one
statement when nothing is new, three when something is.

SQLite runs one writer at a time (BEGIN IMMEDIATE) and numbers from the highest
committed number, so numbers commit in order: the highest committed number is the
watermark, and a reader's snapshot holds every item below it.

On Citus the sequence lives on the coordinator (one order while every write goes
through it), but the rows are written on the workers, and a writer's coordinator session
may hold no transaction id at all. There step 2 lists instead every client session of this
database that is not idle: in a transaction, or running a statement (COMMIT included,
and with it the workers' commits, which Citus makes before the COMMIT returns), each as
its pid and the start of its transaction. A writer that took a number <= L is one of them
until its COMMIT has returned; it has ended once its session is idle or has begun
another transaction. Reads in a transaction (verify, export) are waited for too: they
delay the feed, never break it. (A worker that fails between the two phases of a commit
leaves a prepared transaction that Citus's recovery commits later: an entry of it could
then come after the watermark passed it. The fault is a worker crash mid-commit; not
handled here.)

Followers are woken when their own process's writer commits (`Feeds.committed`, hooked
to the writer) and otherwise look again every POLL_SECONDS (writes of other processes),
never by polling the database in a tight loop; LISTEN/NOTIFY is not used (a NOTIFY per
commit takes a database-wide lock at commit). At shutdown (`Feeds.close`) every follower
ends with STORE_UNAVAILABLE: the caller resumes, elsewhere or later, from its cursor.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from server import metrics
from server.domain.errors import StoreUnavailable
from server.services.ports import Store, UnitOfWork
from server.services.transactions import in_transaction

T = TypeVar("T")
R = TypeVar("R")

CHUNK = 1000  # items a follower reads at a time; it reads the next once these are sent
# How often a follower looks for items committed by other processes (its own process's
# commits wake it at once): the bound on their delivery lag is about twice this. A
# follower whose looks find nothing looks less often, down to once per MAX_POLL_SECONDS
# (50 idle followers then cost 250 small reads a second, not 1,000).
POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 0.2
# A follower reads at most this often, however often its process commits: under a
# stream of commits each read carries several of them.
MIN_READ_SECONDS = 0.005
# How long a call without `follow` waits for transactions open when it began to end
# before it ends at the watermark it has (what came after is left for the next call).
SETTLE_SECONDS = 5.0
SETTLE_POLL_SECONDS = 0.002


@dataclass(frozen=True)
class Feed(Generic[T]):
    """One feed: the store's name for its numbering (store/statements/feeds.py: feed_last),
    how to read items after a cursor, an item's number, and the system it is filtered
    to ("" = every system), so that only commits of that system wake its followers.

    `read(uow, after, through, limit)` returns up to `limit` items numbered in
    (after, through], in order (filters such as a system are bound in the function)."""

    name: str
    read: Callable[[UnitOfWork, int, int, int], list[T]]
    number: Callable[[T], int]
    system_key: str = ""


class Watermark:
    """A feed's watermark, shared by the followers of one process: refreshed on demand,
    at most once for all the followers that want one at the same time."""

    def __init__(self, store: Store, feed: str) -> None:
        self.store = store
        self.feed = feed
        self._final = 0  # every number <= this is final
        self._issued = 0  # the highest number known to be handed out
        # (L, the transactions that may hold numbers <= L), oldest first
        self._marks: deque[tuple[int, frozenset[str]]] = deque()
        self._refreshed = float("-inf")  # when the last refresh began (monotonic)
        self._mutex = threading.Lock()

    def bound(self, fresher_than: float) -> tuple[int, int]:
        """(final, issued) as a refresh that began after `fresher_than` saw them."""
        with self._mutex:
            if self._refreshed < fresher_than:
                began = time.monotonic()
                self._refresh()
                self._refreshed = began
            return self._final, self._issued

    def _refresh(self) -> None:
        last = self._read(lambda uow: uow.feeds.last_issued(self.feed))
        if last > self._issued:
            writers = self._read(lambda uow: uow.feeds.writers())
            if writers is None:  # numbers commit in order
                self._final = self._issued = last
                return
            self._issued = last
            self._marks.append((last, writers))
        waiting = frozenset().union(*(writers for _last, writers in self._marks))
        running = self._read(lambda uow: uow.feeds.running(waiting)) if waiting else waiting
        # A mark is final once its writers have ended; so is every older one (a holder of
        # a lower number still running would be on the newer list too).
        marks = [(last, writers & running) for last, writers in self._marks]
        final = [i for i, (_last, writers) in enumerate(marks) if not writers]
        if final:
            self._final = max(self._final, marks[final[-1]][0])
            marks = marks[final[-1] + 1 :]
        self._marks = deque(marks)

    def _read(self, work: Callable[[UnitOfWork], R]) -> R:
        return in_transaction(self.store, work, write=False)


class _Lag:
    """One follower's share of tally_feed_lag_items: the numbers handed out beyond its
    cursor, added to the feed's sum as they change (and taken out when it ends)."""

    __slots__ = ("_gauge", "_reported")

    def __init__(self, gauge: Any) -> None:
        self._gauge = gauge
        self._reported = 0

    def report(self, lag: int) -> None:
        lag = max(0, lag)
        if lag != self._reported:
            self._gauge.inc(lag - self._reported)
            self._reported = lag


class Feeds:
    """The feeds of one process: their watermarks, and the wake-up of their followers."""

    def __init__(self, store: Store, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._watermarks: dict[str, Watermark] = {}
        # One lock; a condition per system followed ("" = every system), so that a
        # commit wakes only the followers of the systems it changed.
        self._lock = threading.Lock()
        self._wakes: dict[str, threading.Condition] = {}
        self._last_commit = float("-inf")  # of any system
        self._last_commit_of: dict[str, float] = {}  # per system
        self._closed = False

    def committed(self, systems: Collection[str] = ()) -> None:
        """This process's writer committed changes of these systems (of any, when none
        are named): wake their followers. The writer's hook."""
        with self._lock:
            now = time.monotonic()
            self._last_commit = now
            for key in systems or ("",):
                self._last_commit_of[key] = now
            woken = (
                self._wakes.values()
                if not systems
                else (self._wakes[key] for key in ("", *systems) if key in self._wakes)
            )
            for wake in woken:
                wake.notify_all()

    def _last_commit_for(self, system_key: str) -> float:
        if not system_key:
            return self._last_commit
        unknown = self._last_commit_of.get("", float("-inf"))
        return max(self._last_commit_of.get(system_key, float("-inf")), unknown)

    def _wake_for(self, system_key: str) -> threading.Condition:
        """The condition a follower of the system waits on (called holding the lock)."""
        wake = self._wakes.get(system_key)
        if wake is None:
            wake = self._wakes[system_key] = threading.Condition(self._lock)
        return wake

    def close(self) -> None:
        """Shutdown: every follower ends (STORE_UNAVAILABLE), as does every new watch."""
        with self._lock:
            self._closed = True
            for wake in self._wakes.values():
                wake.notify_all()

    def watermark(self, name: str) -> Watermark:
        with self._lock:
            found = self._watermarks.get(name)
            if found is None:
                found = self._watermarks[name] = Watermark(self.store, name)
            return found

    def watch(
        self,
        feed: Feed[T],
        after: int,
        *,
        follow: bool,
        alive: Callable[[], bool] = lambda: True,
        still_allowed: Callable[[], None] = lambda: None,
    ) -> Iterator[list[T]]:
        """Chunks of the feed's items numbered above `after`, in order. Without `follow`,
        up to the last item committed when the call began; with it, then on as items
        commit, until the process stops (STORE_UNAVAILABLE) or `alive` says the caller
        has gone (checked at every wake-up). `still_allowed` runs at every wake-up and
        before every read, and ends the watch with what it raises (a revoked key). Each
        chunk is read once the one before it has been taken, so a slow consumer holds
        back reads and memory stays flat."""
        if not follow:
            yield from self._watch(
                feed, after, follow=False, alive=alive, still_allowed=still_allowed, lag=None
            )
            return
        recorded = metrics.instruments()
        followers = recorded.followers.labels(feed.name)
        lag = _Lag(recorded.feed_lag.labels(feed.name))
        followers.inc()
        try:
            yield from self._watch(
                feed, after, follow=True, alive=alive, still_allowed=still_allowed, lag=lag
            )
        finally:
            followers.dec()
            lag.report(0)

    def _watch(
        self,
        feed: Feed[T],
        after: int,
        *,
        follow: bool,
        alive: Callable[[], bool],
        still_allowed: Callable[[], None],
        lag: _Lag | None,
    ) -> Iterator[list[T]]:
        watermark = self.watermark(feed.name)
        cursor = after
        began = time.monotonic()
        final, issued = watermark.bound(began)
        target = issued  # what a call without `follow` must reach
        fresher_than = began
        poll = self.poll_seconds
        receiving = False  # items came lately: look again soon while numbers are held
        while True:
            found = False
            if lag is not None:
                lag.report(issued - cursor)
            while cursor < final:
                self._check_open()
                still_allowed()
                through = final
                items = self._read(feed, cursor, through)
                if items:
                    found = True
                    cursor = feed.number(items[-1])
                    yield items
                if len(items) < CHUNK:
                    cursor = max(cursor, through)
                if lag is not None:
                    lag.report(issued - cursor)
            poll = self.poll_seconds if found else min(2 * poll, MAX_POLL_SECONDS)
            receiving = found or (receiving and final < issued)
            if not follow:
                if final >= target or time.monotonic() - began > SETTLE_SECONDS:
                    return
                time.sleep(SETTLE_POLL_SECONDS)  # open transactions are ending: look again
                final, _issued = watermark.bound(time.monotonic())
                continue
            if receiving and final < issued:
                # Numbers are held by transactions about to end: a follower that is
                # receiving looks again shortly rather than at the next commit or poll
                # (one refresh serves every follower that looks within MIN_READ_SECONDS).
                time.sleep(MIN_READ_SECONDS)
                self._check_open()
                fresher_than = time.monotonic() - MIN_READ_SECONDS
            else:
                fresher_than = self._wait(fresher_than, feed.system_key, poll)
            if not alive():
                return
            still_allowed()
            final, issued = watermark.bound(fresher_than)

    def _read(self, feed: Feed[T], after: int, through: int) -> list[T]:
        return in_transaction(
            self.store, lambda uow: feed.read(uow, after, through, CHUNK), write=False
        )

    def _wait(self, since: float, system_key: str, poll: float) -> float:
        """Sleep until this process commits changes of the system (after `since`) or
        `poll` seconds pass; returns how fresh the watermark must then be: newer than
        the commit, or than one poll."""
        time.sleep(MIN_READ_SECONDS)
        with self._lock:
            wake = self._wake_for(system_key)
            deadline = time.monotonic() + poll
            while self._last_commit_for(system_key) <= since and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wake.wait(left)
            self._check_open()
            return max(self._last_commit_for(system_key), time.monotonic() - poll)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the server is stopping; resume with the last sequence received")
