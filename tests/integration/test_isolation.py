"""A key limited to some systems causes and learns nothing outside them (API.md, Auth):
its events count toward its systems' running totals only, its RecordEvent keys neither
replay nor block another key's, a user it names is welcomed in its systems only (and
still owed the others' welcome), its
previews replay its systems' events, and its answers do not reveal another system's
event types. Issue 21's rows M1, M2, M3, L1, L2, L3; both stores."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from server.domain import commands, validation
from server.domain.access import Caller, Scope
from server.domain.errors import (
    InsufficientPoints,
    NoMatchingTrigger,
    RateLimited,
    UserNotFound,
    ValidationFailed,
)
from server.domain.model import (
    TriggerStatus,
    TriggerType,
    UserProfile,
    Welcomed,
)
from server.services.held import callers
from server.services.held.limits import RateLimiter
from server.services.pipeline.results import EventResult
from server.services.tally import Tally
from server.services.use_cases import events, points_changes, reads
from server.store.database import SqlStore
from tests.conftest import T0
from tests.integration.helpers import award, deduct, system
from tests.integration.test_triggers import trigger

T = TypeVar("T")
WRITE_A = Caller("key-a", Scope.WRITE, frozenset({"a"}))
WRITE_B = Caller("key-b", Scope.WRITE, frozenset({"b"}))
READ_A = Caller("read-a", Scope.READ, frozenset({"a"}))
EVERY = Caller("key-all", Scope.WRITE)
INACTIVE = TriggerStatus.INACTIVE


def as_caller(caller: Caller, work: Callable[[], T]) -> T:
    return callers.context_of(caller).run(work)


def record(
    tally: Tally,
    caller: Caller,
    user: str,
    event_type: str,
    value: float = 1,
    *,
    at: datetime = T0,
    **fields: Any,
) -> EventResult:
    cmd = commands.RecordEvent(
        user=UserProfile(user), event_type=event_type, value=Decimal(str(value)), **fields
    )
    return as_caller(caller, lambda: events.record_event(tally, cmd, at))


def points(tally: Tally, user: str, system_key: str) -> int:
    view = reads.get_balance(tally, commands.GetBalance(system_key, user, 0), T0)
    return view.balance.balance


@pytest.fixture
def two(tally: Tally) -> Tally:
    system(tally, "a")
    system(tally, "b")
    return tally


class TestIdempotencyKeysOfEvents:
    """M1: RecordEvent's keys live in the caller's reach."""

    def test_another_systems_key_neither_replays_nor_blocks(self, two: Tally) -> None:
        trigger(two, TriggerType.EVENT, 5, system_key="a", event_type="order")
        trigger(two, TriggerType.EVENT, 7, system_key="b", event_type="order")
        award(two, "u", 1000, system_key="b")
        first = record(two, WRITE_A, "u", "order", idempotency_key="order-X")
        assert (first.replayed, set(first.results)) == (False, {"a"})
        other = record(two, WRITE_B, "u", "order", idempotency_key="order-X")
        assert (other.replayed, set(other.results), other.results["b"].added) == (
            False,
            {"b"},
            7,
        )
        assert points(two, "u", "b") == 1007
        again = record(two, WRITE_A, "u", "order", idempotency_key="order-X")
        assert (again.replayed, set(again.results), again.event_id) == (
            True,
            {"a"},
            first.event_id,
        )
        # Another request under b's key is b's own business: not blocked by a's use.
        different = record(two, WRITE_B, "u", "order", 2, idempotency_key="order-Y")
        assert not different.replayed
        assert (points(two, "u", "a"), points(two, "u", "b")) == (5, 1014)


class TestWelcome:
    """M2: a user a limited key creates is welcomed in its systems only."""

    def test_a_key_of_a_does_not_fire_bs_user_identified(self, two: Tally) -> None:
        trigger(two, TriggerType.USER_IDENTIFIED, 100, system_key="b")
        trigger(two, TriggerType.USER_IDENTIFIED, 3, system_key="a")
        trigger(two, TriggerType.EVENT, 1, system_key="a", event_type="visit")
        as_caller(WRITE_A, lambda: award(two, "new-1", 10, system_key="a"))
        assert (points(two, "new-1", "a"), points(two, "new-1", "b")) == (13, 0)
        result = record(two, WRITE_A, "new-2", "visit")
        assert set(result.results) == {"a"}
        assert result.results["a"].added == 4
        assert points(two, "new-2", "b") == 0
        # A key of every system welcomes in every system.
        as_caller(EVERY, lambda: award(two, "new-3", 10, system_key="a"))
        assert (points(two, "new-3", "a"), points(two, "new-3", "b")) == (13, 100)

    def test_a_user_bs_key_created_is_welcomed_in_a_by_the_first_call_that_may_use_a(
        self, two: Tally
    ) -> None:
        """Attacker probe: the welcome was decided once, when b's key created the user,
        so a's never came, and the event's `added` told a's key the user existed."""
        system(two, "c")
        trigger(two, TriggerType.USER_IDENTIFIED, 100, system_key="b")
        trigger(two, TriggerType.USER_IDENTIFIED, 3, system_key="a")
        trigger(two, TriggerType.USER_IDENTIFIED, 50, system_key="c")
        trigger(two, TriggerType.EVENT, 1, system_key="a", event_type="visit")
        as_caller(WRITE_B, lambda: award(two, "x", 10, system_key="b"))
        assert welcomed(two, "x") == Welcomed(frozenset({"b"}))
        seen_elsewhere = record(two, WRITE_A, "x", "visit")
        never_seen = record(two, WRITE_A, "fresh", "visit")
        assert seen_elsewhere.results["a"].added == never_seen.results["a"].added == 4
        assert welcomed(two, "x") == Welcomed(frozenset({"a", "b"}))
        # A key of every system welcomes in the one system left, once.
        for _ in range(2):
            as_caller(EVERY, lambda: award(two, "x", 1, system_key="a"))
        assert welcomed(two, "x") == Welcomed(through=T0)  # every system created by then
        assert [points(two, "x", key) for key in "abc"] == [3 + 1 + 1 + 1, 110, 50]
        assert [welcomes(two, "x", key) for key in "abc"] == [1, 1, 1]

    def test_a_deduct_welcomes_no_one_and_finds_no_user_seen_only_elsewhere(
        self, two: Tally
    ) -> None:
        trigger(two, TriggerType.USER_IDENTIFIED, 3, system_key="a")
        as_caller(WRITE_B, lambda: award(two, "x", 10, system_key="b"))
        with pytest.raises(UserNotFound):
            as_caller(WRITE_A, lambda: deduct(two, "x", 1, system_key="a"))
        with pytest.raises(InsufficientPoints):
            as_caller(EVERY, lambda: deduct(two, "x", 1, system_key="a"))
        assert welcomed(two, "x") == Welcomed(frozenset({"b"}))

    def test_racing_calls_of_another_system_welcome_once(self, two: Tally) -> None:
        """Calls of a's key and of every system, each its own process (its own writer, so
        its own transaction), race to welcome in a a user b's key created: one does."""
        trigger(two, TriggerType.USER_IDENTIFIED, 100, system_key="a")
        as_caller(WRITE_B, lambda: award(two, "x", 10, system_key="b"))
        processes = [Tally(two.store, clock=lambda: T0) for _ in range(8)]
        start = threading.Barrier(8)

        def call(i: int) -> None:
            start.wait()
            caller = WRITE_A if i % 2 else EVERY
            cmd = commands.Award("a", UserProfile("x"), 1, idempotency_key=f"k{i}")
            as_caller(caller, lambda: points_changes.award(processes[i], cmd, T0))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(call, range(8)))
        assert points(two, "x", "a") == 100 + 8
        assert welcomes(two, "x", "a") == 1


def welcomed(tally: Tally, user_id: str) -> Welcomed:
    """The systems the user is welcomed in, as stored."""
    with tally.store.unit_of_work(write=False) as uow:
        user = uow.users.get(user_id)
    assert user is not None
    return user.welcomed


def welcomes(tally: Tally, user_id: str, system_key: str) -> int:
    """How many USER_IDENTIFIED entries the user has in the system."""
    page = reads.list_transactions(
        tally, commands.ListTransactions(system_key, user_id, page_size=100), T0
    )
    ids = {t.id for t in tally.config.snapshot.rules.identified}
    return sum(1 for entry in page.entries if entry.trigger_id in ids)


class TestRunningTotals:
    """M3: a limited key's events count toward its systems' totals only."""

    def test_a_key_of_a_does_not_move_bs_metric(self, two: Tally) -> None:
        trigger(two, TriggerType.EVENT, 1, system_key="a", event_type="steps")
        trigger(
            two,
            TriggerType.METRIC,
            50,
            system_key="b",
            event_type="steps",
            metric_threshold=Decimal(100),
        )
        award(two, "u", 1, system_key="b")
        seen_by_a = record(two, WRITE_A, "u", "steps", 99)
        assert seen_by_a.metric_total == 99
        seen_by_b = record(two, WRITE_B, "u", "steps", 1)
        assert (seen_by_b.metric_total, seen_by_b.results["b"].added) == (Decimal(1), 0)
        assert points(two, "u", "b") == 1
        crossing = record(two, WRITE_B, "u", "steps", 99)
        assert (crossing.metric_total, crossing.results["b"].added) == (Decimal(100), 50)
        # An event of a key of every system counts in every system, and such a key sees
        # every event: a's 99 and b's 100.
        everyone = record(two, EVERY, "u", "steps", 100)
        assert everyone.metric_total == 299
        assert everyone.results["b"].added == 50  # b: 100 -> 200
        assert record(two, WRITE_A, "u", "steps", 1).metric_total == 200  # a: 99 + 100 + 1


class TestWriteLimit:
    """L1: every RecordEvent takes the write limit, whether or not a trigger fires."""

    def test_events_of_inactive_triggers_are_limited(self, store: SqlStore) -> None:
        tally = Tally(store, limits=RateLimiter(rate=1, burst=2, clock=lambda: 0.0))
        system(tally, "a")
        trigger(tally, TriggerType.EVENT, 5, system_key="a", event_type="ping", status=INACTIVE)
        record(tally, EVERY, "u", "ping")
        record(tally, EVERY, "u", "ping")
        with pytest.raises(RateLimited):
            record(tally, EVERY, "u", "ping")
        assert record(tally, EVERY, "u2", "ping").metric_total == 1  # another user's own


class TestPreview:
    """L2: previews replay only the events that reached the system, of the caller's
    event types, in a bounded window."""

    def preview(self, tally: Tally, caller: Caller, event_type: str, **kw: Any) -> Any:
        draft = commands.TriggerFields(type=TriggerType.EVENT, points=1, event_type=event_type)
        cmd = commands.PreviewTriggers(
            "a",
            (draft,),
            (),
            start_time=kw.pop("start", T0 - timedelta(days=1)),
            end_time=T0 + timedelta(days=1),
        )
        result, _ = as_caller(
            caller, lambda: events.preview_triggers(tally, cmd, T0 + timedelta(days=1))
        )
        return result

    def test_bs_event_types_reveal_nothing_to_a_key_of_a(self, two: Tally) -> None:
        trigger(two, TriggerType.EVENT, 1, system_key="b", event_type="b.secret-purchase")
        record(two, EVERY, "vip", "b.secret-purchase", attributes={"sku": "ring-9000"})
        assert self.preview(two, READ_A, "b.secret-purchase").users == 0
        assert self.preview(two, READ_A, "b.nonexistent").users == 0
        assert self.preview(two, EVERY, "b.secret-purchase").users == 1

    def test_events_of_a_key_of_b_do_not_reach_as_preview(self, two: Tally) -> None:
        trigger(two, TriggerType.EVENT, 1, system_key="a", event_type="order", status=INACTIVE)
        trigger(two, TriggerType.EVENT, 1, system_key="b", event_type="order")
        record(two, WRITE_B, "b-only", "order")
        record(two, EVERY, "both", "order")
        record(two, WRITE_A, "a-only", "order")
        result = self.preview(two, EVERY, "order")
        assert (result.events, sorted(result.points_by_user)) == (2, ["a-only", "both"])

    def test_the_window_and_the_events_replayed_are_bounded(
        self, two: Tally, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        trigger(two, TriggerType.EVENT, 1, system_key="a", event_type="order")
        with pytest.raises(ValidationFailed) as refused:
            self.preview(two, EVERY, "order", start=datetime(1970, 1, 1, tzinfo=T0.tzinfo))
        assert [v.field for v in refused.value.violations] == ["start_time"]
        for i in range(4):
            record(two, EVERY, f"u{i}", "order")
        monkeypatch.setattr(validation, "PREVIEW_MAX_EVENTS", 3)
        with pytest.raises(ValidationFailed) as too_many:
            self.preview(two, EVERY, "order")
        assert [v.field for v in too_many.value.violations] == ["start_time"]


class TestEventTypeOracle:
    """L3: a limited key cannot tell another system's event types from made-up ones."""

    def test_bs_event_type_is_no_matching_trigger_for_a_key_of_a(self, two: Tally) -> None:
        trigger(two, TriggerType.EVENT, 1, system_key="b", event_type="b.secret-purchase")
        for event_type in ("b.secret-purchase", "b.nonexistent"):
            with pytest.raises(NoMatchingTrigger):
                record(two, WRITE_A, "u", event_type, validate_only=True)
            with pytest.raises(NoMatchingTrigger):
                record(two, WRITE_A, "u", event_type)
        assert record(two, WRITE_B, "u", "b.secret-purchase").results["b"].added == 1
