"""The coalescing of reads (services/held/view_reader.py), on the fake store: asks queued
while a read runs are read together in one unit of work; each is answered, and fails,
alone, and is resolved as its own caller; a lone ask reads at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from server.domain import commands
from server.domain.access import Caller, Scope
from server.domain.errors import StoreUnavailable, UserNotFound
from server.domain.model import EntryType, UserProfile
from server.services.held import callers
from server.services.held.view_reader import TOGETHER_MAX_ASKS, TOGETHER_MAX_ENTRIES, ViewReader
from server.services.ports import UnitOfWork, UserView, ViewAsk
from server.services.tally import Tally
from server.services.use_cases import points_changes, systems
from tests.conftest import T0
from tests.fakes import FakeStore

WAIT = 10.0
BOB_CAT = ("bob", "cat")


class CountingStore:
    """The fake store, counting the read units of work and the asks each one read."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.batches: list[list[str]] = []
        self.fail = False
        self.undecodable = ""  # a user whose rows cannot be decoded

    def unit_of_work(self, *, write: bool) -> Any:
        uow = self.store.unit_of_work(write=write)
        if not write:
            views = uow.users.views
            batches = self.batches

            def counted(asks: list[ViewAsk]) -> list[UserView | None]:
                batches.append([a.user_id for a in asks])
                if self.fail:
                    raise StoreUnavailable("the store failed")
                if any(a.user_id == self.undecodable for a in asks):
                    raise ValueError("a row cannot be decoded")
                return views(asks)

            uow.users.views = counted  # type: ignore[method-assign,assignment]
        return uow


@pytest.fixture
def counting() -> CountingStore:
    store = FakeStore()
    tally = Tally(store, clock=lambda: T0)
    systems.create_system(tally, commands.CreateSystem(key="xp"), T0)
    for user, amount in (("ann", 5), ("bob", 7), ("cat", 9)):
        cmd = commands.Award(system_key="xp", user=UserProfile(user), amount=amount)
        points_changes.award(tally, cmd, T0)
    return CountingStore(store)


def balance_of(_uow: UnitOfWork, ask: ViewAsk, view: UserView | None) -> int:
    if view is None:
        raise UserNotFound(ask.user_id, ask.system_key)
    assert view.account is not None
    return view.account.balance


def test_a_lone_ask_reads_at_once_in_a_unit_of_work_of_its_own(counting: CountingStore) -> None:
    reader = ViewReader(counting, together=True)
    assert reader.read(ViewAsk("ann", "xp", 10), balance_of) == 5
    assert reader.read(ViewAsk("bob", "xp", 10), balance_of) == 7
    assert counting.batches == [["ann"], ["bob"]]


def test_asks_queued_while_a_read_runs_are_read_together(counting: CountingStore) -> None:
    reader = ViewReader(counting, together=True)
    inside, release = threading.Event(), threading.Event()

    def held(uow: UnitOfWork, ask: ViewAsk, view: UserView | None) -> int:
        inside.set()
        assert release.wait(WAIT)
        return balance_of(uow, ask, view)

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(reader.read, ViewAsk("ann", "xp", 10), held)
        assert inside.wait(WAIT)
        queued = [
            pool.submit(reader.read, ViewAsk(user, "xp", 10), balance_of)
            for user in ("bob", "cat", "nobody")
        ]
        _wait_queued(reader, 3)
        release.set()
        assert first.result(WAIT) == 5
        assert [f.result(WAIT) for f in queued[:2]] == [7, 9]
        with pytest.raises(UserNotFound):  # that ask's error, and no one else's
            queued[2].result(WAIT)
    assert counting.batches[0] == ["ann"]
    assert sorted(counting.batches[1]) == ["bob", "cat", "nobody"]  # one unit of work
    assert len(counting.batches) == 2


def test_each_ask_is_resolved_as_its_own_caller(counting: CountingStore) -> None:
    """The leader resolves every ask of its batch, each in the context of the call that
    asked: what a caller may see is checked for that caller, never the leader."""
    reader = ViewReader(counting, together=True)
    inside, release = threading.Event(), threading.Event()

    def caller_of(_uow: UnitOfWork, _ask: ViewAsk, _view: UserView | None) -> str:
        if not inside.is_set():
            inside.set()
            assert release.wait(WAIT)
        return callers.current().key_id

    def as_(key_id: str, user: str) -> Any:
        caller = Caller(key_id, Scope.READ)
        return callers.context_of(caller).run(reader.read, ViewAsk(user, "xp", 10), caller_of)

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(as_, "leader", "ann")
        assert inside.wait(WAIT)
        others = [pool.submit(as_, f"key-{user}", user) for user in ("bob", "cat")]
        _wait_queued(reader, 2)
        release.set()
        assert first.result(WAIT) == "leader"
        assert [f.result(WAIT) for f in others] == ["key-bob", "key-cat"]
    assert len(counting.batches) == 2


def hold_lane(pool: ThreadPoolExecutor, reader: ViewReader, release: threading.Event) -> Any:
    """Ann's read, holding the reader's one lane until `release` (its future, once the
    read is inside its resolve)."""
    inside = threading.Event()

    def held(uow: UnitOfWork, ask: ViewAsk, view: UserView | None) -> int:
        inside.set()
        assert release.wait(WAIT)
        return balance_of(uow, ask, view)

    first = pool.submit(reader.read, ViewAsk("ann", "xp", 10), held)
    assert inside.wait(WAIT)
    return first


def test_a_store_failure_is_every_queued_asks_each_its_own(counting: CountingStore) -> None:
    reader = ViewReader(counting, together=True)
    release = threading.Event()
    with ThreadPoolExecutor(4) as pool:
        first = hold_lane(pool, reader, release)
        queued = [
            pool.submit(reader.read, ViewAsk(u, "xp", 10), balance_of) for u in ("bob", "cat")
        ]
        _wait_queued(reader, 2)
        counting.fail = True
        release.set()
        assert first.result(WAIT) == 5
        errors = [f.exception(WAIT) for f in queued]
    assert all(isinstance(e, StoreUnavailable) for e in errors)
    assert errors[0] is not errors[1]  # never one object raised in many threads
    counting.fail = False  # the lane was given back: the next ask reads
    assert reader.read(ViewAsk("ann", "xp", 10), balance_of) == 5


def test_an_ask_that_breaks_its_batch_fails_alone(counting: CountingStore) -> None:
    """A batch that fails but for the store (a row one ask's view cannot decode) is read
    again one ask at a time: only that ask fails."""
    reader = ViewReader(counting, together=True)
    release = threading.Event()
    with ThreadPoolExecutor(4) as pool:
        first = hold_lane(pool, reader, release)
        queued = {
            u: pool.submit(reader.read, ViewAsk(u, "xp", 10), balance_of) for u in ("bob", "cat")
        }
        _wait_queued(reader, 2)
        counting.undecodable = "bob"
        release.set()
        assert first.result(WAIT) == 5
        assert queued["cat"].result(WAIT) == 9
        assert isinstance(queued["bob"].exception(WAIT), ValueError)
    assert sorted(map(sorted, counting.batches[1:])) == [["bob"], ["bob", "cat"], ["cat"]]


def test_a_batch_dying_mid_way_answers_every_ask(counting: CountingStore) -> None:
    """An ask's resolve that raises past Exception (an interrupt) ends the batch: the
    asks not yet resolved are told the outcome is unknown, never answered None, and the
    lane is given back."""
    reader = ViewReader(counting, together=True)
    release = threading.Event()

    def interrupted(_uow: UnitOfWork, _ask: ViewAsk, _view: UserView | None) -> int:
        raise KeyboardInterrupt

    with ThreadPoolExecutor(4) as pool:
        first = hold_lane(pool, reader, release)
        second = pool.submit(reader.read, ViewAsk("bob", "xp", 10), interrupted)
        _wait_queued(reader, 1)
        third = pool.submit(reader.read, ViewAsk("cat", "xp", 10), balance_of)
        _wait_queued(reader, 2)
        release.set()
        assert first.result(WAIT) == 5
        # bob, queued first, led the next batch (bob's, cat's) and died in its resolve
        assert isinstance(second.exception(WAIT), KeyboardInterrupt)
        assert isinstance(third.exception(WAIT), StoreUnavailable)
    assert reader.read(ViewAsk("cat", "xp", 10), balance_of) == 9
    assert reader._leading == 0


def test_a_follower_that_stops_waiting_leaves_the_lane_free(
    counting: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = ViewReader(counting, together=True)
    release = threading.Event()

    class Interrupted(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            if threading.current_thread().name == "interrupted":
                raise KeyboardInterrupt
            return super().wait(timeout)

    caught: list[BaseException] = []

    def follower() -> None:
        try:
            reader.read(ViewAsk("bob", "xp", 10), balance_of)
        except KeyboardInterrupt as error:
            caught.append(error)

    with ThreadPoolExecutor(1) as pool:
        first = hold_lane(pool, reader, release)
        monkeypatch.setattr(threading, "Event", Interrupted)
        thread = threading.Thread(target=follower, name="interrupted")
        thread.start()
        thread.join(WAIT)
        monkeypatch.undo()
        assert len(caught) == 1
        assert reader._queue == []  # off the queue: no leader reads for it, or hands it on
        release.set()
        assert first.result(WAIT) == 5
    assert reader._leading == 0
    assert reader.read(ViewAsk("cat", "xp", 10), balance_of) == 9


def test_a_batch_reads_at_most_sixteen_asks(counting: CountingStore) -> None:
    reader = ViewReader(counting, together=True)
    release = threading.Event()
    users = ["ann", "bob", "cat"] * 8
    balances = {"ann": 5, "bob": 7, "cat": 9}
    with ThreadPoolExecutor(30) as pool:
        first = hold_lane(pool, reader, release)
        queued = [pool.submit(reader.read, ViewAsk(u, "xp", 10), balance_of) for u in users]
        _wait_queued(reader, len(users))
        release.set()
        assert first.result(WAIT) == 5
        assert [f.result(WAIT) for f in queued] == [balances[u] for u in users]
    assert [len(b) for b in counting.batches] == [1, TOGETHER_MAX_ASKS, len(users) - 16]


def test_big_later_and_typed_pages_read_alone_beside_the_lane(counting: CountingStore) -> None:
    reader = ViewReader(counting, together=True)
    release = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        first = hold_lane(pool, reader, release)
        # the lane is held, and yet these read now
        assert reader.read(ViewAsk("bob", "xp", 10, before_sequence=100), balance_of) == 7
        assert reader.read(ViewAsk("bob", "xp", TOGETHER_MAX_ENTRIES + 1), balance_of) == 7
        types = frozenset({EntryType.AWARD})
        assert reader.read(ViewAsk("cat", "xp", 10, types=types), balance_of) == 9
        release.set()
        assert first.result(WAIT) == 5


def test_without_reading_together_every_ask_reads_alone(counting: CountingStore) -> None:
    reader = ViewReader(counting)  # the fake store does not say it reads views together
    assert not reader.together
    assert reader.read(ViewAsk("cat", "xp", 10), balance_of) == 9
    assert counting.batches == [["cat"]]


def _wait_queued(reader: ViewReader, count: int) -> None:
    """Until `count` asks wait in the reader's queue (its internals: the only way to
    know that a thread has queued rather than not yet arrived)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with reader._lock:
            if len(reader._queue) >= count:
                return
        time.sleep(0.01)
    raise AssertionError(f"fewer than {count} asks queued")
