"""The rules of every use case, run on the fake store (tests/fakes.py): award, deduct,
reverse, events, levels, boosts and keys, each in milliseconds. Each test asserts what
a caller sees (values, and for a refusal its gRPC code and reason) and what was stored.
tests/integration/ proves the same use cases on the real stores."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import grpc
import pytest

from server.api.errors import status_code
from server.domain import commands
from server.domain.access import LEGACY_USER_SCOPE, Caller, Reach, Scope
from server.domain.boosts import MAX_LIVE_BOOSTS
from server.domain.errors import TallyError
from server.domain.model import (
    Boost,
    BoostStatus,
    EntryType,
    IntervalUnit,
    LedgerEntry,
    Trigger,
    TriggerStatus,
    TriggerType,
    UserProfile,
)
from server.services.held import callers
from server.services.held.key_ring import KeyRing
from server.services.held.limits import BY_KEY, RateLimiter
from server.services.operations import api_keys
from server.services.pipeline.results import EventResult, WriteResult
from server.services.tally import Tally
from server.services.use_cases import (
    boosts,
    events,
    levels,
    points_changes,
    reads,
    sweeps,
    systems,
)
from server.services.use_cases import triggers as trigger_cases
from tests.conftest import T0
from tests.fakes import FakeStore

T = TypeVar("T")
DAY = timedelta(days=1)
ACTIVE = TriggerStatus.ACTIVE


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def tally(store: FakeStore) -> Tally:
    """The use cases' context over the fake (overrides tests/conftest.py's, which runs on
    the real stores)."""
    return Tally(store, clock=lambda: T0)


# -- builders -------------------------------------------------------------------------------


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def system(tally: Tally, key: str = "xp", *, max_points: int = 0) -> None:
    systems.create_system(tally, commands.CreateSystem(key=key, max_points=max_points), T0)


def award(
    tally: Tally, user: str, amount: int, *, at: datetime = T0, system_key: str = "xp", **kw: Any
) -> WriteResult:
    cmd = commands.Award(system_key=system_key, user=UserProfile(user), amount=amount, **kw)
    return points_changes.award(tally, cmd, at)


def deduct(
    tally: Tally, user: str, amount: int, *, at: datetime = T0, system_key: str = "xp", **kw: Any
) -> WriteResult:
    cmd = commands.Deduct(system_key=system_key, user_id=user, amount=amount, **kw)
    return points_changes.deduct(tally, cmd, at)


def reverse(tally: Tally, entry_id: str, *, at: datetime = T0, **kw: Any) -> WriteResult:
    return points_changes.reverse(tally, commands.Reverse(entry_id, **kw), at)


def balance(tally: Tally, user: str, *, at: datetime = T0, system_key: str = "xp") -> int:
    view = reads.get_balance(tally, commands.GetBalance(system_key, user, 0), at)
    return view.balance.balance


def trigger(
    tally: Tally,
    type_: TriggerType,
    points: int,
    *,
    system_key: str = "xp",
    status: TriggerStatus | None = ACTIVE,
    **fields: Any,
) -> Trigger:
    made = commands.TriggerFields(type=type_, points=points, status=status, **fields)
    return trigger_cases.create_trigger(tally, commands.CreateTrigger(system_key, made), T0)


def event(
    tally: Tally, user: str, event_type: str = "lesson", value: str = "1", **kw: Any
) -> EventResult:
    cmd = commands.RecordEvent(UserProfile(user), event_type, Decimal(value), **kw)
    return events.record_event(tally, cmd, T0)


def ladder(tally: Tally, **thresholds: int) -> None:
    for key, points in thresholds.items():
        cmd = commands.CreateLevel("xp", commands.LevelFields(key=key, points=points))
        levels.create_level(tally, cmd, T0)


def boost_fields(
    multiplier: str, user: str = "", *, start: datetime = T0, end: datetime | None = None
) -> commands.BoostFields:
    return commands.BoostFields(user, f"x{multiplier}", Decimal(multiplier), None, start, end)


def boost(tally: Tally, multiplier: str, user: str = "", **kw: Any) -> Boost:
    (made,), issues = boosts.create_boosts(tally, "xp", [boost_fields(multiplier, user, **kw)], T0)
    assert issues == []
    return made


def as_caller(caller: Caller, work: Callable[[], T]) -> T:
    return callers.context_of(caller).run(work)


def refusal(work: Callable[[], object]) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """The code, reason and metadata a caller is refused with."""
    with pytest.raises(TallyError) as caught:
        work()
    return status_code(caught.value), caught.value.reason, caught.value.metadata


def stored_entries(store: FakeStore, user: str = "ann") -> list[LedgerEntry]:
    """The user's entries as stored (oldest first), read straight from the store."""
    with store.unit_of_work(write=False) as uow:
        return list(reversed(uow.ledger.page("xp", user, frozenset(), None, 1000)))


# -- award ----------------------------------------------------------------------------------


class TestAward:
    def test_an_award_creates_the_user_and_credits_them(
        self, tally: Tally, store: FakeStore
    ) -> None:
        system(tally)
        result = award(tally, "ann", 40, reason="signup", metadata={"campaign": "x"})
        entry = result.entry
        assert (entry.type, entry.amount, entry.balance_after, entry.sequence) == (
            EntryType.AWARD,
            40,
            40,
            1,
        )
        assert (entry.reason, entry.metadata) == ("signup", {"campaign": "x"})
        assert (result.balance.balance, result.balance.total_earned) == (40, 40)
        assert result.balance.last_earned_time == T0
        assert stored_entries(store) == [entry]
        assert balance(tally, "ann") == 40

    def test_boosts_multiply_an_award(self, tally: Tally) -> None:
        system(tally)
        global_boost = boost(tally, "2")
        own = boost(tally, "1.5", "ann")
        entry = award(tally, "ann", 10).entry
        assert (entry.amount, entry.base_amount, entry.multiplier) == (30, 10, Decimal("3.0"))
        assert sorted(entry.boost_ids) == sorted([global_boost.id, own.id])
        assert award(tally, "bob", 10).entry.amount == 20  # not ann's own boost
        assert award(tally, "ann", 10, skip_boosts=True).entry.amount == 10

    def test_max_points_caps_an_award(self, tally: Tally) -> None:
        system(tally, max_points=100)
        award(tally, "ann", 80)
        capped = award(tally, "ann", 50)
        assert (capped.entry.amount, capped.entry.base_amount, capped.entry.capped) == (
            20,
            50,
            True,
        )
        full = award(tally, "ann", 5)
        assert (full.entry.amount, full.entry.capped, full.balance.balance) == (0, True, 100)

    def test_a_replay_answers_the_first_response_and_writes_nothing(
        self, tally: Tally, store: FakeStore
    ) -> None:
        system(tally)
        first = award(tally, "ann", 10, idempotency_key="order-1")
        award(tally, "ann", 5)
        again = award(tally, "ann", 10, idempotency_key="order-1", at=later(60))
        assert (again.replayed, first.replayed) == (True, False)
        assert (again.entry, again.balance) == (first.entry, first.balance)
        assert [e.amount for e in stored_entries(store)] == [10, 5]

    def test_a_key_used_for_another_request_is_refused(
        self, tally: Tally, store: FakeStore
    ) -> None:
        system(tally)
        award(tally, "ann", 10, idempotency_key="order-1")
        assert refusal(lambda: award(tally, "ann", 11, idempotency_key="order-1")) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "IDEMPOTENCY_KEY_REUSED",
            {"idempotency_key": "order-1"},
        )
        code, reason, _ = refusal(lambda: deduct(tally, "ann", 10, idempotency_key="order-1"))
        assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
        assert [e.amount for e in stored_entries(store)] == [10]
        # keys are the user's own in each system
        assert not award(tally, "bob", 11, idempotency_key="order-1").replayed

    def test_an_unknown_system_creates_no_user(self, tally: Tally) -> None:
        assert refusal(lambda: award(tally, "ann", 10, system_key="nope")) == (
            grpc.StatusCode.NOT_FOUND,
            "SYSTEM_NOT_FOUND",
            {"system_key": "nope"},
        )
        system(tally)
        code, reason, _ = refusal(lambda: balance(tally, "ann"))
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")

    def test_a_dry_run_answers_and_writes_nothing(self, tally: Tally, store: FakeStore) -> None:
        system(tally)
        dry = award(tally, "ann", 25, validate_only=True, idempotency_key="k")
        assert (dry.entry.amount, dry.entry.id, dry.balance.balance) == (25, "", 25)
        assert refusal(lambda: balance(tally, "ann"))[1] == "USER_NOT_FOUND"
        assert not award(tally, "ann", 25, idempotency_key="k").replayed  # the key is unused

    def test_a_batch_item_fails_alone(self, tally: Tally) -> None:
        system(tally)
        items: list[commands.Award | TallyError] = [
            commands.Award("xp", UserProfile("ann"), 10),
            commands.Award("nope", UserProfile("bob"), 10),
            commands.Award("xp", UserProfile("cy"), 0),
            commands.Award("xp", UserProfile("ann"), 7, idempotency_key="k"),
            commands.Award("xp", UserProfile("ann"), 7, idempotency_key="k"),
        ]
        results = points_changes.award_batch(tally, items, T0)
        reasons = [r.reason if isinstance(r, TallyError) else r.replayed for r in results]
        assert reasons == [False, "SYSTEM_NOT_FOUND", "VALIDATION_FAILED", False, True]
        assert balance(tally, "ann") == 17

    def test_a_commit_that_fails_is_retried_and_writes_once(
        self, tally: Tally, store: FakeStore
    ) -> None:
        system(tally)
        store.fail_commits = 2
        assert award(tally, "ann", 10).balance.balance == 10
        assert [e.amount for e in stored_entries(store)] == [10]


# -- deduct ---------------------------------------------------------------------------------


class TestDeduct:
    def test_a_deduction_spends(self, tally: Tally) -> None:
        system(tally)
        award(tally, "ann", 30)
        result = deduct(tally, "ann", 12, reason="shop")
        assert (result.entry.type, result.entry.amount) == (EntryType.DEDUCT, -12)
        assert (result.balance.balance, result.balance.total_spent) == (18, 12)

    def test_insufficient_points_writes_nothing(self, tally: Tally, store: FakeStore) -> None:
        system(tally)
        award(tally, "ann", 30)
        assert refusal(lambda: deduct(tally, "ann", 31, idempotency_key="d")) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "INSUFFICIENT_POINTS",
            {"available": "30", "requested": "31"},
        )
        assert [e.amount for e in stored_entries(store)] == [30]
        award(tally, "ann", 1)
        assert not deduct(tally, "ann", 31, idempotency_key="d").replayed  # the key is unused

    def test_expiring_credit_is_spent_first(self, tally: Tally) -> None:
        system(tally)
        award(tally, "ann", 100)  # never expires
        award(tally, "ann", 30, expire_time=later(200))
        award(tally, "ann", 20, expire_time=later(100))
        deduct(tally, "ann", 25, at=later(10))  # all of the 20-lot, then 5 of the 30-lot
        assert balance(tally, "ann", at=later(100)) == 125  # nothing left of the 20-lot
        assert balance(tally, "ann", at=later(200)) == 100  # the 25 left of the 30-lot lapse
        page = reads.list_transactions(
            tally, commands.ListTransactions("xp", "ann", types=frozenset({EntryType.EXPIRE})), T0
        )
        assert [(e.amount, e.create_time) for e in page.entries] == [(-25, later(200))]

    def test_credit_that_lapsed_cannot_be_spent(self, tally: Tally) -> None:
        system(tally)
        award(tally, "ann", 50, expire_time=later(60))
        assert refusal(lambda: deduct(tally, "ann", 10, at=later(61)))[2] == {
            "available": "0",
            "requested": "10",
        }

    def test_an_unknown_user(self, tally: Tally) -> None:
        system(tally)
        assert refusal(lambda: deduct(tally, "ghost", 1)) == (
            grpc.StatusCode.NOT_FOUND,
            "USER_NOT_FOUND",
            {"system_key": "xp", "user_id": "ghost"},
        )


# -- reverse --------------------------------------------------------------------------------


class TestReverse:
    def test_an_entry_is_reversed_once(self, tally: Tally, store: FakeStore) -> None:
        system(tally)
        first = award(tally, "ann", 40)
        award(tally, "ann", 5)
        reversal = reverse(tally, first.entry.id, reason="mistake")
        assert (reversal.entry.type, reversal.entry.amount) == (EntryType.REVERSAL, -40)
        assert reversal.entry.reverses_entry_id == first.entry.id
        assert (reversal.balance.balance, reversal.balance.total_earned) == (5, 5)
        assert refusal(lambda: reverse(tally, first.entry.id)) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "ALREADY_REVERSED",
            {"entry_id": first.entry.id, "reversal_entry_id": reversal.entry.id},
        )
        assert [e.amount for e in stored_entries(store)] == [40, 5, -40]

    def test_a_reversal_with_a_key_replays(self, tally: Tally) -> None:
        system(tally)
        first = award(tally, "ann", 40)
        once = reverse(tally, first.entry.id, idempotency_key="r")
        twice = reverse(tally, first.entry.id, idempotency_key="r")
        assert (twice.replayed, twice.entry) == (True, once.entry)
        assert balance(tally, "ann") == 0

    def test_reversing_a_deduction_gives_the_points_back(self, tally: Tally) -> None:
        system(tally)
        award(tally, "ann", 40)
        spent = deduct(tally, "ann", 15)
        back = reverse(tally, spent.entry.id)
        assert back.entry.amount == 15
        assert (back.balance.balance, back.balance.total_spent) == (40, 0)

    def test_reversals_are_not_reversible_and_unknown_entries_not_found(self, tally: Tally) -> None:
        system(tally)
        reversal = reverse(tally, award(tally, "ann", 40).entry.id)
        code, reason, _ = refusal(lambda: reverse(tally, reversal.entry.id))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_REVERSIBLE")
        ghost = "6f1c2a7e-0000-4000-8000-000000000000"
        assert refusal(lambda: reverse(tally, ghost)) == (
            grpc.StatusCode.NOT_FOUND,
            "ENTRY_NOT_FOUND",
            {"entry_id": ghost},
        )


class TestLookUpsByEntryId:
    """A Reverse naming the entry alone looks it up on every shard of a sharded store
    (FakeStore(sharded=True) says so, as Citus does): each takes a token of its caller's
    look-ups first, found or not."""

    GHOST = "6f1c2a7e-0000-4000-8000-000000000000"
    KEY_1 = Caller("k1", Scope.WRITE)
    KEY_2 = Caller("k2", Scope.WRITE)

    @staticmethod
    def bounded(store: FakeStore, burst: int) -> Tally:
        """Look-ups by id alone limited to `burst` per key (the clock stands still, so no
        token comes back)."""
        lookups = RateLimiter(rate=1, burst=burst, clock=lambda: 0.0, names=BY_KEY)
        return Tally(store, clock=lambda: T0, entry_lookups=lookups)

    @staticmethod
    def reverse_as(caller: Caller, tally: Tally, entry_id: str, **kw: Any) -> WriteResult:
        return as_caller(caller, lambda: reverse(tally, entry_id, **kw))

    def refused(
        self, caller: Caller, tally: Tally, entry_id: str, **kw: Any
    ) -> tuple[grpc.StatusCode, str, dict[str, str]]:
        return refusal(lambda: self.reverse_as(caller, tally, entry_id, **kw))

    def test_beyond_the_burst_they_are_rate_limited_before_the_look_up_and_write_nothing(
        self,
    ) -> None:
        store = FakeStore(sharded=True)
        tally = self.bounded(store, burst=2)
        system(tally)
        first, second = award(tally, "ann", 40).entry, award(tally, "ann", 5).entry
        self.reverse_as(self.KEY_1, tally, first.id)
        # an id that names nothing is charged too
        assert self.refused(self.KEY_1, tally, self.GHOST)[1] == "ENTRY_NOT_FOUND"
        looked_up = store.reads_by_entry_id
        assert self.refused(self.KEY_1, tally, second.id, idempotency_key="r") == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
            {"limit": "1/s", "burst": "2", "key_id": "k1"},
        )
        assert store.reads_by_entry_id == looked_up  # refused before any look-up
        assert [e.amount for e in stored_entries(store)] == [40, 5, -40]
        # Nothing was written, the idempotency key included: naming the user, it reverses.
        named = self.reverse_as(self.KEY_1, tally, second.id, idempotency_key="r", user_id="ann")
        assert (named.replayed, named.entry.amount) == (False, -5)
        # Where a look-up by id is one index probe (one database), nothing is charged.
        plain = FakeStore()
        unsharded = self.bounded(plain, burst=2)
        system(unsharded)
        entries = [award(unsharded, "ann", 1).entry for _ in range(3)]
        for entry in entries:
            assert self.reverse_as(self.KEY_1, unsharded, entry.id).entry.amount == -1
        for _ in range(3):
            assert self.refused(self.KEY_1, unsharded, self.GHOST)[1] == "ENTRY_NOT_FOUND"

    def test_a_reverse_naming_its_user_is_never_charged(self) -> None:
        store = FakeStore(sharded=True)
        tally = self.bounded(store, burst=1)
        system(tally)
        entries = [award(tally, "ann", 1).entry for _ in range(4)]
        for entry in entries:
            assert self.reverse_as(self.KEY_1, tally, entry.id, user_id="ann").entry.amount == -1
        # Not found among the named user's entries: charged nothing either.
        for entry_id, user in ((self.GHOST, "ann"), (self.GHOST, "bob"), (entries[0].id, "bob")):
            assert self.refused(self.KEY_1, tally, entry_id, user_id=user)[1] == ("ENTRY_NOT_FOUND")
        assert store.reads_by_entry_id == 0
        # The key's one look-up by id alone is still there, and only one.
        assert self.refused(self.KEY_1, tally, entries[0].id)[1] == "ALREADY_REVERSED"
        assert self.refused(self.KEY_1, tally, self.GHOST)[1] == "RATE_LIMITED"

    def test_each_key_has_its_own_bucket(self) -> None:
        store = FakeStore(sharded=True)
        tally = self.bounded(store, burst=1)
        system(tally)
        for key in (self.KEY_1, self.KEY_2):
            assert self.refused(key, tally, self.GHOST)[1] == "ENTRY_NOT_FOUND"
        for key in (self.KEY_1, self.KEY_2):
            code, reason, metadata = self.refused(key, tally, self.GHOST)
            assert (code, reason, metadata["key_id"]) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "RATE_LIMITED",
                key.key_id,
            )
        assert store.reads_by_entry_id == 2


# -- events ---------------------------------------------------------------------------------


class TestEvents:
    def test_an_event_trigger_awards_once_per_event(self, tally: Tally, store: FakeStore) -> None:
        system(tally)
        fired = trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        result = event(tally, "ann", value="7.5")
        ((entry, by),) = result.results["xp"].awards
        assert by.id == fired.id
        assert (entry.type, entry.amount, entry.trigger_id, entry.event_type) == (
            EntryType.AWARD,
            10,
            fired.id,
            "lesson",
        )
        assert (result.results["xp"].added, result.metric_total) == (10, Decimal("7.5"))
        assert stored_entries(store) == [entry]

    def test_a_metric_trigger_fires_at_each_multiple_of_its_threshold(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.METRIC, 7, event_type="km", metric_threshold=Decimal(3))
        added = [event(tally, "ann", "km", v).results["xp"].added for v in ("1", "1", "1", "5")]
        assert added == [0, 0, 7, 7]  # 3 crosses 3; 8 crosses 6
        crossing = event(tally, "ann", "km", "9")  # 8 -> 17 crosses 9, 12 and 15
        assert (crossing.results["xp"].added, crossing.metric_total) == (21, Decimal(17))

    def test_an_event_type_no_trigger_names_records_nothing(
        self, tally: Tally, store: FakeStore
    ) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        assert refusal(lambda: event(tally, "ann", "unknown.type")) == (
            grpc.StatusCode.NOT_FOUND,
            "NO_MATCHING_TRIGGER",
            {"event_type": "unknown.type"},
        )
        with store.unit_of_work(write=False) as uow:
            assert uow.users.get("ann") is None
            assert uow.events.window(["unknown.type"], T0, later(1), None, 10) == []

    def test_an_inactive_trigger_records_the_event_and_fires_nothing(
        self, tally: Tally, store: FakeStore
    ) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson", status=None)
        result = event(tally, "ann")
        assert result.results == {}
        assert result.metric_total == 1
        with store.unit_of_work(write=False) as uow:
            ((recorded, _),) = uow.events.window(["lesson"], T0, later(1), None, 10)
        assert (recorded.id, recorded.user_id) == (result.event_id, "ann")

    def test_events_replay_by_key_and_refuse_a_reused_one(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        first = event(tally, "ann", idempotency_key="e-1")
        again = event(tally, "ann", idempotency_key="e-1")
        assert (again.replayed, again.event_id) == (True, first.event_id)
        assert again.results["xp"].awards == first.results["xp"].awards
        assert balance(tally, "ann") == 10
        code, reason, _ = refusal(lambda: event(tally, "ann", value="2", idempotency_key="e-1"))
        assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")

    def test_a_new_user_is_welcomed_once(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.USER_IDENTIFIED, 50)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        first = event(tally, "ann")
        assert [e.amount for e, _ in first.results["xp"].awards] == [50, 10]
        assert event(tally, "ann").results["xp"].added == 10
        assert balance(tally, "ann") == 70

    def test_a_limited_key_reaches_its_own_systems_alone(
        self, tally: Tally, store: FakeStore
    ) -> None:
        system(tally)
        system(tally, "coins")
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        trigger(tally, TriggerType.EVENT, 3, event_type="lesson", system_key="coins")
        trigger(tally, TriggerType.EVENT, 1, event_type="coin.only", system_key="coins")
        xp_only = Caller("xpkey", Scope.WRITE, frozenset({"xp"}))
        result = as_caller(xp_only, lambda: event(tally, "ann", idempotency_key="k"))
        assert sorted(result.results) == ["xp"]
        assert refusal(lambda: as_caller(xp_only, lambda: event(tally, "ann", "coin.only"))) == (
            grpc.StatusCode.NOT_FOUND,
            "NO_MATCHING_TRIGGER",
            {"event_type": "coin.only"},
        )
        # the same key of a caller of every system is another key: it fires in both
        both = event(tally, "ann", idempotency_key="k")
        assert (both.replayed, sorted(both.results)) == (False, ["coins", "xp"])
        with store.unit_of_work(write=False) as uow:
            totals = uow.events.totals(["ann"], ["lesson"])
        assert totals == {
            ("ann", "lesson", Reach(frozenset({"xp"})).name): Decimal(1),
            ("ann", "lesson", ""): Decimal(1),
        }
        assert (balance(tally, "ann"), balance(tally, "ann", system_key="coins")) == (20, 3)

    def test_a_dry_run_shows_the_result_and_writes_nothing(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        award(tally, "ann", 1)
        dry = event(tally, "ann", validate_only=True, idempotency_key="k")
        assert (dry.event_id, dry.results["xp"].added, dry.results["xp"].balance.balance) == (
            "",
            10,
            11,
        )
        assert balance(tally, "ann") == 1
        assert not event(tally, "ann", idempotency_key="k").replayed


class TestTriggerChanges:
    def test_an_update_is_used_by_the_next_event(self, tally: Tally) -> None:
        system(tally)
        made = trigger(tally, TriggerType.EVENT, 10, event_type="lesson", status=None)
        assert event(tally, "ann").results == {}
        edit = commands.UpdateTrigger(
            made.id,
            frozenset({"status", "points"}),
            commands.TriggerFields(status=ACTIVE, points=25),
        )
        updated = trigger_cases.update_trigger(tally, edit, later(1))
        assert (updated.status, updated.points, updated.activate_time) == (ACTIVE, 25, later(1))
        assert event(tally, "ann").results["xp"].added == 25
        ghost = "6f1c2a7e-0000-4000-8000-000000000000"
        ghost_edit = commands.UpdateTrigger(ghost, frozenset({"points"}), edit.trigger)
        assert refusal(lambda: trigger_cases.update_trigger(tally, ghost_edit, T0)) == (
            grpc.StatusCode.NOT_FOUND,
            "TRIGGER_NOT_FOUND",
            {"trigger_id": ghost},
        )


class TestSweeps:
    def test_the_expiry_sweep_writes_off_idle_accounts_once(
        self, tally: Tally, store: FakeStore
    ) -> None:
        system(tally)
        award(tally, "ann", 10, expire_time=later(60))
        award(tally, "bob", 7, expire_time=later(30))
        award(tally, "cy", 5, expire_time=later(600))
        assert sweeps.expire_due(tally, later(100)) == 2
        assert sweeps.expire_due(tally, later(100)) == 0  # nothing left to do
        expired = [(e.amount, e.create_time) for e in stored_entries(store, "bob")[1:]]
        assert expired == [(-7, later(30))]
        with store.unit_of_work(write=False) as uow:
            accounts = uow.accounts.standing(["ann", "cy"], []).accounts
        assert (accounts[("ann", "xp")].balance, accounts[("cy", "xp")].balance) == (0, 5)

    def test_the_accrual_sweep_fires_due_intervals_of_idle_users(
        self, tally: Tally, store: FakeStore
    ) -> None:
        system(tally)
        award(tally, "idle", 1)
        trigger(
            tally,
            TriggerType.TIME_INTERVAL,
            2,
            interval_unit=IntervalUnit.MINUTES,
            interval_count=30,
        )
        two_hours = T0 + timedelta(hours=2)
        assert sweeps.accrue_due(tally, two_hours) == 1  # worked out before the trigger
        assert sweeps.accrue_due(tally, two_hours) == 0  # nothing more is due
        entries = stored_entries(store, "idle")
        assert [e.amount for e in entries] == [1, 2, 2, 2, 2]
        assert [e.create_time for e in entries[1:]] == [later(1800 * i) for i in range(1, 5)]
        assert sweeps.accrue_due(tally, two_hours + timedelta(minutes=30)) == 1


# -- levels ---------------------------------------------------------------------------------


def level_keys(change: object) -> tuple[str | None, str | None]:
    previous = getattr(change, "previous_level", None)
    new = getattr(change, "new_level", None)
    return (previous.key if previous else None, new.key if new else None)


class TestLevels:
    def test_a_points_change_reports_its_level_change(self, tally: Tally, store: FakeStore) -> None:
        system(tally)
        ladder(tally, bronze=0, silver=50, gold=200)
        first = award(tally, "ann", 10)
        assert first.level_change is None  # bronze from the start (threshold 0)
        assert first.balance.level is not None
        assert first.balance.level.key == "bronze"
        up = award(tally, "ann", 45)
        assert level_keys(up.level_change) == ("bronze", "silver")
        assert up.level_change is not None
        assert (up.level_change.entry_id, up.level_change.sequence) == (up.entry.id, 1)
        down = deduct(tally, "ann", 20)
        assert level_keys(down.level_change) == ("silver", "bronze")
        assert deduct(tally, "ann", 1).level_change is None
        with store.unit_of_work(write=False) as uow:
            recorded = uow.levels.changes_after("xp", 0, 100, 10)
        assert [level_keys(c) for c in recorded] == [("bronze", "silver"), ("silver", "bronze")]

    def test_where_a_user_stands_and_who_is_where(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, silver=50, gold=150)
        award(tally, "ann", 100)
        award(tally, "bob", 10)
        award(tally, "cy", 150)
        standing = levels.get_user_level(tally, "xp", "ann", T0)
        assert standing.level is not None
        assert standing.next_level is not None
        assert (standing.level.key, standing.next_level.key) == ("silver", "gold")
        assert (standing.points, standing.points_to_next, standing.progress) == (100, 50, 0.5)
        summary = levels.get_level_summary(tally, "xp")
        assert [(lv.key, n) for lv, n in summary.levels] == [("silver", 1), ("gold", 1)]
        assert summary.users_without_level == 1

    def test_keys_and_thresholds_are_unique_in_a_system(self, tally: Tally) -> None:
        system(tally)
        ladder(tally, silver=50)
        assert refusal(lambda: ladder(tally, silver=70)) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "LEVEL_EXISTS",
            {"system_key": "xp", "key": "silver"},
        )
        assert refusal(lambda: ladder(tally, other=50))[2] == {"system_key": "xp", "points": "50"}
        assert refusal(lambda: levels.delete_level(tally, "xp", "gold")) == (
            grpc.StatusCode.NOT_FOUND,
            "LEVEL_NOT_FOUND",
            {"level_key": "gold"},
        )
        assert [(lv.key, lv.points) for lv in levels.list_levels(tally, "xp")] == [("silver", 50)]


# -- boosts ---------------------------------------------------------------------------------


class TestBoosts:
    def test_create_list_and_archive(self, tally: Tally) -> None:
        system(tally)
        for i in range(4):
            fields = boost_fields("2", "ann" if i % 2 else "", start=T0 + i * DAY)
            boosts.create_boosts(tally, "xp", [fields], later(i))
        names: list[str] = []
        token = ""
        while True:
            page = boosts.list_boosts(tally, "xp", "", frozenset(), 3, token, T0)
            names += [f"{b.user_id or '*'}@{b.start_time.day}" for b in page.items]
            token = page.next_page_token
            if not token:
                break
        assert names == ["ann@4", "*@3", "ann@2", "*@1"]  # newest first, in two pages
        mine = boosts.list_boosts(tally, "xp", "ann", frozenset(), 0, "", T0).items
        assert [b.start_time for b in mine] == [T0 + 3 * DAY, T0 + DAY]
        active = boosts.list_boosts(tally, "xp", "", frozenset({BoostStatus.ACTIVE}), 0, "", T0)
        (live,) = active.items
        assert award(tally, "bob", 10).entry.amount == 20
        archived = boosts.archive_boost(tally, live.id, later(5))
        assert archived.archive_time == later(5)
        assert award(tally, "bob", 10).entry.amount == 10  # stopped at once
        assert boosts.archive_boost(tally, live.id, later(9)).archive_time == later(5)
        listed = boosts.list_boosts(tally, "xp", "", frozenset({BoostStatus.ARCHIVED}), 0, "", T0)
        assert [b.id for b in listed.items] == [live.id]

    def test_a_user_has_at_most_the_bound_of_live_boosts(self, tally: Tally) -> None:
        system(tally)
        items = [boost_fields("2", "ann") for _ in range(MAX_LIVE_BOOSTS + 1)]
        created, issues = boosts.create_boosts(tally, "xp", items, T0)
        assert len(created) == MAX_LIVE_BOOSTS
        assert [(i.index, i.user_id, i.error) for i in issues] == [(MAX_LIVE_BOOSTS, "ann", True)]
        assert f"already has {MAX_LIVE_BOOSTS} live boosts" in issues[0].message
        ended = boost_fields("2", "ann", start=T0 - 2 * DAY, end=T0 - DAY)  # not live
        created, issues = boosts.create_boosts(tally, "xp", [boost_fields("2", "ann"), ended], T0)
        assert [b.end_time for b in created] == [T0 - DAY]
        assert [(i.index, i.error) for i in issues] == [(0, True), (1, False)]
        boosts.archive_boost(tally, boost(tally, "2", "bob").id, T0)
        assert boosts.get_multiplier(tally, "xp", "ann", T0)[0] == Decimal(2**MAX_LIVE_BOOSTS)

    def test_a_global_boost_needs_an_admin_key(self, tally: Tally, store: FakeStore) -> None:
        system(tally)
        writer = Caller("w", Scope.WRITE)
        create = [boost_fields("2")]
        code, reason, _ = refusal(
            lambda: as_caller(writer, lambda: boosts.create_boosts(tally, "xp", create, T0))
        )
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")
        with store.unit_of_work(write=False) as uow:
            assert uow.boosts.live(T0) == []
        assert refusal(lambda: boosts.archive_boost(tally, "not-an-id", T0)) == (
            grpc.StatusCode.NOT_FOUND,
            "BOOST_NOT_FOUND",
            {"boost_id": "not-an-id"},
        )


# -- keys -----------------------------------------------------------------------------------


class TestKeys:
    def test_create_list_and_revoke(self, store: FakeStore) -> None:
        one = api_keys.create_key(store, "one", Scope.WRITE, ["xp"], T0)
        two = api_keys.create_key(store, "two", Scope.READ, [], later(1))
        assert one.text.startswith("tally_")
        assert one.text != two.text
        assert [k.id for k in api_keys.list_keys(store)] == [one.key.id, two.key.id]
        assert api_keys.revoke_key(store, one.key.id, later(2))
        assert not api_keys.revoke_key(store, one.key.id, later(3))  # once
        assert not api_keys.revoke_key(store, "nosuchkey", later(3))
        assert [k.revoke_time for k in api_keys.list_keys(store)] == [later(2), None]

    def test_a_name_and_systems_are_checked(self, store: FakeStore) -> None:
        code, reason, _ = refusal(
            lambda: api_keys.create_key(store, "", Scope.READ, ["xp", "Not A Key"], T0)
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED")
        assert api_keys.list_keys(store) == []

    def test_the_first_key_is_made_on_an_empty_store_alone(self, store: FakeStore) -> None:
        first = api_keys.create_first_key(store, T0)
        assert first is not None
        assert first.key.scope is Scope.ADMIN
        api_keys.revoke_key(store, first.key.id, T0)
        assert api_keys.create_first_key(store, T0) is None

    def test_the_key_ring_authenticates_made_keys_and_refuses_revoked_ones(
        self, store: FakeStore
    ) -> None:
        now = [100.0]
        ring = KeyRing(store, max_age=5.0, clock=lambda: now[0])
        made = api_keys.create_key(store, "app", Scope.READ, ["xp", "coins"], T0)
        assert ring.authenticate_key(made.text) == Caller(
            made.key.id, Scope.READ, frozenset({"xp", "coins"})
        )
        api_keys.revoke_key(store, made.key.id, T0)
        assert ring.authenticate_key(made.text).key_id == made.key.id  # within the bound
        now[0] += 5.01
        assert refusal(lambda: ring.authenticate_key(made.text)) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "API_KEY_REVOKED",
            {"key_id": made.key.id},
        )
        code, reason, _ = refusal(lambda: ring.authenticate_key("tally_" + "x" * 43))
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")


class TestChangesCarryTheCallersReach:
    """What a change may affect beyond its own system (a new user's welcome) is bounded
    by the caller's systems, for every kind of change a use case queues."""

    @pytest.mark.parametrize("kind", ["award", "deduct", "reverse"])
    def test_the_queued_change_has_the_callers_reach(
        self, tally: Tally, monkeypatch: pytest.MonkeyPatch, kind: str
    ) -> None:
        system(tally)
        entry = award(tally, "ann", 10).entry
        queued: list[Any] = []
        real_post = tally.writer.post

        def post(changes: Any) -> Any:
            queued.extend(changes)
            return real_post(changes)

        monkeypatch.setattr(tally.writer, "post", post)
        limited = Caller("k", Scope.WRITE, frozenset({"xp"}))

        def call() -> Any:
            if kind == "award":
                return award(tally, "ann", 1)
            if kind == "deduct":
                return deduct(tally, "ann", 1)
            return points_changes.reverse(tally, commands.Reverse(entry.id), T0)

        callers.context_of(limited).run(call)
        assert [c.reach for c in queued] == [Reach(frozenset({"xp"}))]


def test_an_event_key_kept_before_keys_had_reaches_still_replays(
    tally: Tally, store: FakeStore
) -> None:
    """The fake store reads keys where they live, as the SQL stores do: a user-wide key
    kept in scope '' (before keys had reaches) is read there too, and replays."""
    system(tally)
    trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
    assert not event(tally, "ann", idempotency_key="e-1").replayed
    keys = store.committed.keys
    (scope,) = [s for s in keys if s[2] == "e-1"]
    keys[("ann", LEGACY_USER_SCOPE, "e-1")] = keys.pop(scope)
    assert event(tally, "ann", idempotency_key="e-1").replayed
    assert balance(tally, "ann") == 10
