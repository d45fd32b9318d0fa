"""Triggers and events on both stores: every rule of API.md's Triggers section."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from server.domain import commands
from server.domain.errors import (
    IdempotencyKeyReused,
    NoMatchingTrigger,
    TriggerNotFound,
    UserNotFound,
    ValidationFailed,
)
from server.domain.model import (
    EntryType,
    IntervalUnit,
    Trigger,
    TriggerStatus,
    TriggerType,
    UserProfile,
)
from server.services.pipeline.results import EventResult
from server.services.tally import Tally
from server.services.use_cases import events, points_changes, reads, sweeps, triggers
from server.store.database import SqlStore
from tests.conftest import T0
from tests.integration.helpers import award, balance, deduct, system

ACTIVE = TriggerStatus.ACTIVE


def trigger(
    tally: Tally,
    type_: TriggerType,
    points: int,
    *,
    system_key: str = "xp",
    status: TriggerStatus | None = ACTIVE,
    at: datetime = T0,
    **fields: Any,
) -> Trigger:
    cmd = commands.CreateTrigger(
        system_key, commands.TriggerFields(type=type_, points=points, status=status, **fields)
    )
    return triggers.create_trigger(tally, cmd, at)


def event(
    tally: Tally,
    user: str,
    event_type: str = "lesson",
    value: str | float = 1,
    *,
    at: datetime = T0,
    attributes: dict[str, str] | None = None,
    user_attributes: dict[str, str] | None = None,
    **fields: Any,
) -> EventResult:
    cmd = commands.RecordEvent(
        user=UserProfile(user, attributes=user_attributes),
        event_type=event_type,
        value=Decimal(str(value)),
        attributes=attributes or {},
        **fields,
    )
    return events.record_event(tally, cmd, at)


def ledger_of(
    tally: Tally, user: str, system_key: str = "xp", *, at: datetime = T0 + timedelta(days=1)
) -> list[Any]:
    """The user's entries oldest first, as a read at `at` sees them (it settles what is due)."""
    page = reads.list_transactions(
        tally, commands.ListTransactions(system_key, user, page_size=100), at
    )
    return list(reversed(page.entries))


def added(result: EventResult, system_key: str = "xp") -> int:
    return result.results[system_key].added


class TestEventTriggers:
    def test_an_event_trigger_awards_once_per_event_whatever_its_value(self, tally: Tally) -> None:
        system(tally)
        fired = trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        result = event(tally, "ann", value=7.5)
        assert added(result) == 10
        assert result.results["xp"].balance.balance == 10
        ((entry, by),) = result.results["xp"].awards
        assert by.id == fired.id
        assert (entry.type, entry.amount, entry.trigger_id, entry.event_type) == (
            EntryType.AWARD,
            10,
            fired.id,
            "lesson",
        )
        assert entry.sequence > 0
        assert result.event_id
        assert result.metric_total == Decimal("7.5")

    def test_new_triggers_are_inactive_and_do_not_fire(self, tally: Tally) -> None:
        system(tally)
        draft = trigger(tally, TriggerType.EVENT, 10, event_type="lesson", status=None)
        assert draft.status is TriggerStatus.INACTIVE
        result = event(tally, "ann")
        assert result.results == {}  # named by a trigger, so recorded, but nothing fired
        assert result.metric_total == 1

    def test_an_event_type_no_trigger_names_is_not_found_and_records_nothing(
        self, tally: Tally
    ) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        with pytest.raises(NoMatchingTrigger):
            event(tally, "ann", "unknown.type")
        assert event(tally, "bob").metric_total == 1
        with pytest.raises(Exception, match="ann"):  # the user was never created
            balance(tally, "ann")

    def test_negative_triggers_take_what_is_there_and_never_go_below_zero(
        self, tally: Tally
    ) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, -30, event_type="miss")
        award(tally, "ann", 20)
        result = event(tally, "ann", "miss")
        ((entry, _),) = result.results["xp"].awards
        assert (entry.type, entry.amount, entry.base_amount, entry.capped) == (
            EntryType.DEDUCT,
            -20,
            -30,
            True,
        )
        assert added(result) == -20
        assert result.results["xp"].balance.balance == 0
        assert added(event(tally, "ann", "miss")) == 0
        assert balance(tally, "ann") == 0

    def test_max_points_caps_trigger_awards(self, tally: Tally) -> None:
        system(tally, max_points=25)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        amounts = [added(event(tally, "ann")) for _ in range(4)]
        assert amounts == [10, 10, 5, 0]
        assert balance(tally, "ann") == 25

    def test_event_and_user_attribute_filters_must_all_match(self, tally: Tally) -> None:
        system(tally)
        trigger(
            tally,
            TriggerType.EVENT,
            5,
            event_type="lesson",
            event_attributes=(("level", "hard"), ("lang", "fr")),
            user_attributes=(("plan", "pro"),),
        )
        hard_fr = {"level": "hard", "lang": "fr"}
        assert event(tally, "ann", attributes=hard_fr).results == {}  # user is not pro
        pro = {"plan": "pro"}
        assert event(tally, "ann", attributes={"level": "hard"}, user_attributes=pro).results == {}
        assert added(event(tally, "ann", attributes=hard_fr, user_attributes=pro)) == 5
        # the attribute given on an earlier call is kept on the user
        assert added(event(tally, "ann", attributes={**hard_fr, "extra": "x"})) == 5

    def test_one_event_fires_triggers_in_two_systems(self, tally: Tally) -> None:
        system(tally)
        system(tally, "coins")
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        trigger(tally, TriggerType.EVENT, 3, event_type="lesson", system_key="coins")
        trigger(tally, TriggerType.EVENT, 1, event_type="lesson", system_key="coins")
        result = event(tally, "ann")
        assert sorted(result.results) == ["coins", "xp"]
        assert added(result) == 10
        assert added(result, "coins") == 4
        assert len(result.results["coins"].awards) == 2
        assert balance(tally, "ann", system_key="coins") == 4

    def test_events_are_idempotent_with_keys_scoped_to_the_user(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        first = event(tally, "ann", idempotency_key="e-1")
        again = event(tally, "ann", idempotency_key="e-1")
        assert again.replayed
        assert not first.replayed
        assert again.event_id == first.event_id
        assert again.results["xp"].awards == first.results["xp"].awards
        assert balance(tally, "ann") == 10
        with pytest.raises(IdempotencyKeyReused):
            event(tally, "ann", value=2, idempotency_key="e-1")
        # the same key is another user's own
        assert added(event(tally, "bob", idempotency_key="e-1")) == 10

    def test_a_dry_run_shows_the_result_and_writes_nothing(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        award(tally, "ann", 1)
        dry = event(tally, "ann", validate_only=True, idempotency_key="k")
        assert dry.event_id == ""
        assert added(dry) == 10
        assert dry.results["xp"].balance.balance == 11
        assert balance(tally, "ann") == 1
        assert not event(tally, "ann", idempotency_key="k").replayed  # the key was not used


class TestMetricTriggers:
    def test_values_1_1_1_5_with_threshold_3_fire_once_then_twice(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.METRIC, 7, event_type="km", metric_threshold=Decimal(3))
        amounts = [added(event(tally, "ann", "km", v)) if v else 0 for v in (1, 1, 1, 5)]
        assert amounts == [0, 0, 7, 7]  # thresholds 3 and 6: once, then twice in all
        crossing = event(tally, "ann", "km", 9)  # 8 -> 17 crosses 9, 12 and 15
        assert added(crossing) == 21
        entries = ledger_of(tally, "ann")
        assert [e.amount for e in entries] == [7, 7, 21]  # one entry for three firings

    def test_a_matched_metric_that_crosses_nothing_still_reports_its_system(
        self, tally: Tally
    ) -> None:
        system(tally)
        trigger(tally, TriggerType.METRIC, 7, event_type="km", metric_threshold=Decimal(3))
        result = event(tally, "ann", "km", 1)
        assert result.results["xp"].awards == ()
        assert added(result) == 0

    def test_fractional_values_add_up_exactly(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.METRIC, 1, event_type="min", metric_threshold=Decimal(3))
        totals = [event(tally, "ann", "min", 0.1).metric_total for _ in range(30)]
        assert totals[-1] == Decimal("3.0")  # floats would give 2.9999999999999996
        assert balance(tally, "ann") == 1

    def test_an_entry_over_10_to_the_12_points_is_refused_naming_value(self, tally: Tally) -> None:
        system(tally)
        trigger(
            tally,
            TriggerType.METRIC,
            1_000_000_000,
            event_type="km",
            metric_threshold=Decimal("0.001"),
        )
        with pytest.raises(ValidationFailed) as caught:
            event(tally, "ann", "km", 2)
        assert [v.field for v in caught.value.violations] == ["value"]
        assert event(tally, "ann", "km", "0.001").metric_total == Decimal("0.001")  # none kept


class TestUserIdentified:
    def test_a_failed_first_call_creates_no_user_and_the_next_one_welcomes_it(
        self, tally: Tally
    ) -> None:
        """A failed call writes nothing, its user included: the user's first call that
        succeeds creates it, and so fires USER_IDENTIFIED (the user was created and never
        welcomed)."""
        system(tally)
        trigger(tally, TriggerType.USER_IDENTIFIED, 100)
        trigger(
            tally,
            TriggerType.METRIC,
            1_000_000_000,
            event_type="km",
            metric_threshold=Decimal("0.001"),
        )
        with pytest.raises(ValidationFailed):
            event(tally, "ann", "km", 2)
        with pytest.raises(UserNotFound):
            balance(tally, "ann")
        assert award(tally, "ann", 5).balance.balance == 105

    def test_fires_once_when_the_first_call_creates_the_user(self, tally: Tally) -> None:
        system(tally)
        system(tally, "coins")
        welcome = trigger(tally, TriggerType.USER_IDENTIFIED, 100, system_key="coins")
        first = award(tally, "ann", 5)
        assert first.balance.balance == 5
        assert balance(tally, "ann", system_key="coins") == 100
        award(tally, "ann", 5)
        assert balance(tally, "ann", system_key="coins") == 100
        (entry,) = ledger_of(tally, "ann", "coins")
        assert entry.trigger_id == welcome.id

    def test_an_event_that_creates_the_user_reports_the_welcome(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.USER_IDENTIFIED, 50)
        trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        result = event(tally, "ann")
        assert [e.amount for e, _ in result.results["xp"].awards] == [50, 10]
        assert added(result) == 60
        assert added(event(tally, "ann")) == 10

    def test_ten_racing_first_calls_welcome_the_user_once(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.USER_IDENTIFIED, 100)
        start = threading.Barrier(10)

        def first_call(i: int) -> None:
            start.wait()
            award(tally, "new-user", 1, idempotency_key=f"k{i}")

        with ThreadPoolExecutor(10) as pool:
            list(pool.map(first_call, range(10)))
        assert balance(tally, "new-user") == 110
        welcomes = [e for e in ledger_of(tally, "new-user") if e.trigger_id]
        assert len(welcomes) == 1

    def test_user_attribute_filters_apply_to_the_new_user(self, tally: Tally) -> None:
        system(tally)
        trigger(tally, TriggerType.USER_IDENTIFIED, 100, user_attributes=(("ref", "friend"),))
        award(tally, "plain", 1)
        points_changes.award(
            tally,
            commands.Award("xp", UserProfile("referred", attributes={"ref": "friend"}), 1),
            T0,
        )
        assert (balance(tally, "plain"), balance(tally, "referred")) == (1, 101)


HOUR = timedelta(hours=1)


class TestTimeInterval:
    def test_a_week_of_hourly_energy_capped_by_max_points(self, tally: Tally) -> None:
        system(tally, max_points=5)
        refill = trigger(
            tally, TriggerType.TIME_INTERVAL, 1, interval_unit=IntervalUnit.HOURS, interval_count=1
        )
        award(tally, "ann", 2)  # opens the account at T0
        deduct(tally, "ann", 2, at=T0 + 30 * timedelta(minutes=1))
        week = T0 + timedelta(days=7)
        assert balance(tally, "ann", at=week) == 5
        accruals = [e for e in ledger_of(tally, "ann") if e.trigger_id == refill.id]
        assert [e.create_time for e in accruals] == [T0 + i * HOUR for i in range(1, 6)]
        assert all(e.amount == 1 for e in accruals)
        # spending makes room again: the next firing is on the hour
        deduct(tally, "ann", 3, at=week)
        assert balance(tally, "ann", at=week + HOUR) == 3
        assert ledger_of(tally, "ann")[-1].create_time == T0 + timedelta(days=7, hours=1)

    def test_accrual_counts_from_the_later_of_activation_and_first_entry(
        self, tally: Tally
    ) -> None:
        system(tally)
        award(tally, "early", 1)
        refill = trigger(
            tally,
            TriggerType.TIME_INTERVAL,
            10,
            status=None,
            interval_unit=IntervalUnit.DAYS,
            interval_count=1,
        )
        activated = T0 + timedelta(days=3)
        activate(tally, refill, activated)
        award(tally, "late", 1, at=activated + 12 * HOUR)
        later = activated + timedelta(days=2, hours=1)
        assert balance(tally, "early", at=later) == 1 + 20  # days 4 and 5
        assert balance(tally, "late", at=later) == 1 + 10  # a day after its first entry
        deactivate(tally, refill, later)
        assert balance(tally, "early", at=later + timedelta(days=5)) == 21

    def test_the_sweep_accrues_idle_users(self, tally: Tally, store: SqlStore) -> None:
        system(tally)
        award(tally, "idle", 1)
        trigger(
            tally,
            TriggerType.TIME_INTERVAL,
            2,
            interval_unit=IntervalUnit.MINUTES,
            interval_count=30,
        )
        assert sweeps.accrue_due(tally, T0 + 2 * HOUR) == 1
        assert sweeps.accrue_due(tally, T0 + 2 * HOUR) == 0  # nothing more is due
        entries = ledger_of(tally, "idle", at=T0 + 2 * HOUR)
        assert [e.amount for e in entries] == [1, 2, 2, 2, 2]
        assert [e.create_time - T0 for e in entries[1:]] == [HOUR / 2 * i for i in range(1, 5)]
        assert sweeps.accrue_due(tally, T0 + 2 * HOUR + 30 * timedelta(minutes=1)) == 1


def activate(tally: Tally, t: Trigger, at: datetime) -> Trigger:
    return set_status(tally, t, TriggerStatus.ACTIVE, at)


def deactivate(tally: Tally, t: Trigger, at: datetime) -> Trigger:
    return set_status(tally, t, TriggerStatus.INACTIVE, at)


def set_status(tally: Tally, t: Trigger, status: TriggerStatus, at: datetime) -> Trigger:
    cmd = commands.UpdateTrigger(t.id, frozenset({"status"}), commands.TriggerFields(status=status))
    return triggers.update_trigger(tally, cmd, at)


class TestTriggerConfiguration:
    def test_update_activates_archives_and_edits(self, tally: Tally) -> None:
        system(tally)
        t = trigger(tally, TriggerType.EVENT, 10, event_type="lesson", status=None)
        assert event(tally, "ann").results == {}
        activate(tally, t, T0)
        assert added(event(tally, "ann")) == 10
        edit = commands.UpdateTrigger(
            t.id, frozenset({"points"}), commands.TriggerFields(points=25)
        )
        assert triggers.update_trigger(tally, edit, T0).points == 25
        assert added(event(tally, "ann")) == 25
        set_status(tally, t, TriggerStatus.ARCHIVED, T0)
        assert event(tally, "ann").results == {}
        listed = triggers.list_triggers(tally, "xp")
        assert [(x.id, x.status, x.points) for x in listed] == [(t.id, TriggerStatus.ARCHIVED, 25)]

    def test_an_update_must_leave_a_valid_trigger_and_cannot_change_its_type(
        self, tally: Tally
    ) -> None:
        system(tally)
        t = trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        blank = commands.UpdateTrigger(
            t.id, frozenset({"event_type"}), commands.TriggerFields(event_type="")
        )
        with pytest.raises(ValidationFailed) as caught:
            triggers.update_trigger(tally, blank, T0)
        assert [v.field for v in caught.value.violations] == ["trigger.event_type"]
        retype = commands.UpdateTrigger(t.id, frozenset({"type"}), commands.TriggerFields())
        with pytest.raises(ValidationFailed):
            triggers.update_trigger(tally, retype, T0)
        missing = commands.UpdateTrigger(
            "00000000-0000-0000-0000-000000000000",
            frozenset({"points"}),
            commands.TriggerFields(points=1),
        )
        with pytest.raises(TriggerNotFound):
            triggers.update_trigger(tally, missing, T0)

    def test_invalid_triggers_name_every_bad_field(self, tally: Tally) -> None:
        system(tally)
        with pytest.raises(ValidationFailed) as caught:
            trigger(tally, TriggerType.METRIC, 0, event_type="", metric_threshold=Decimal(0))
        assert sorted(v.field for v in caught.value.violations) == [
            "trigger.event_type",
            "trigger.metric_threshold",
            "trigger.points",
        ]
        with pytest.raises(ValidationFailed) as caught:
            trigger(tally, TriggerType.TIME_INTERVAL, 1, event_type="x")
        assert sorted(v.field for v in caught.value.violations) == [
            "trigger.event_type",
            "trigger.interval_count",
            "trigger.interval_unit",
        ]

    def test_get_balance_names_the_trigger_behind_each_recent_entry(self, tally: Tally) -> None:
        system(tally)
        t = trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
        event(tally, "ann")
        event(tally, "ann")
        award(tally, "ann", 1)
        view = reads.get_balance(tally, commands.GetBalance("xp", "ann"), T0)
        assert [x.id for x in view.triggers] == [t.id]
        assert [e.trigger_id for e in view.recent] == ["", t.id, t.id]

    def test_a_trigger_made_by_another_process_is_used_at_once(
        self, tally: Tally, store: SqlStore
    ) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, 1, event_type="warmup")
        event(tally, "ann", "warmup")  # this process holds the configuration
        other = Tally(store)
        trigger(other, TriggerType.EVENT, 10, event_type="lesson")
        assert added(event(tally, "ann")) == 10


class TestListTriggersPages:
    """ListTriggers in pages: oldest first (create_time, then id), each trigger once."""

    def pages(self, tally: Tally, size: int, system_key: str = "xp") -> list[list[Trigger]]:
        found: list[list[Trigger]] = []
        token = ""
        while True:
            page = triggers.list_triggers_page(tally, system_key, size, token)
            found.append(page.items)
            token = page.next_page_token
            if not token:
                return found

    def test_paging_lists_each_trigger_once_oldest_first(self, tally: Tally) -> None:
        system(tally)
        system(tally, "coins")
        # Made out of time order, several at one instant (ordered by id among themselves).
        offsets = [5, 0, 3, 3, 3, 1, 7, 0, 2, 5, 6, 4, 3]
        made = [
            trigger(tally, TriggerType.EVENT, 1, event_type="lesson", at=T0 + timedelta(hours=h))
            for h in offsets
        ]
        trigger(tally, TriggerType.EVENT, 1, system_key="coins", event_type="lesson")
        expected = [t.id for t in sorted(made, key=lambda t: (t.create_time, t.id))]
        assert [t.id for t in triggers.list_triggers(tally, "xp")] == expected
        for size in (1, 2, 4, 5, 13):
            pages = self.pages(tally, size)
            assert [t.id for page in pages for t in page] == expected, size
            assert [len(page) for page in pages[:-1]] == [size] * (len(pages) - 1)
        everything = triggers.list_triggers_page(tally, "xp", 0, "")
        assert ([t.id for t in everything.items], everything.next_page_token) == (expected, "")

    def test_changes_between_pages_neither_repeat_nor_skip(self, tally: Tally) -> None:
        system(tally)
        made = [
            trigger(tally, TriggerType.EVENT, 1, event_type="lesson", at=T0 + timedelta(minutes=m))
            for m in range(6)
        ]
        first = triggers.list_triggers_page(tally, "xp", 3, "")
        set_status(tally, made[1], TriggerStatus.ARCHIVED, T0 + timedelta(hours=1))
        set_status(tally, made[4], TriggerStatus.ARCHIVED, T0 + timedelta(hours=1))
        later = trigger(
            tally, TriggerType.EVENT, 1, event_type="lesson", at=T0 + timedelta(hours=1)
        )
        rest = triggers.list_triggers_page(tally, "xp", 3, first.next_page_token)
        listed = [t.id for t in first.items + rest.items]
        assert listed == [t.id for t in made]
        last = triggers.list_triggers_page(tally, "xp", 3, rest.next_page_token)
        assert ([t.id for t in last.items], last.next_page_token) == ([later.id], "")

    @pytest.mark.parametrize("size", [-1, 1001, 2**31 - 1])
    def test_a_bad_page_size_names_the_field(self, tally: Tally, size: int) -> None:
        system(tally)
        with pytest.raises(ValidationFailed) as caught:
            triggers.list_triggers_page(tally, "xp", size, "")
        assert caught.value.reason == "VALIDATION_FAILED"
        assert [v.field for v in caught.value.violations] == ["page_size"]

    def test_a_token_of_another_list_or_forged_names_the_field(self, tally: Tally) -> None:
        from server.services import page_tokens

        system(tally)
        system(tally, "coins")
        for minute in range(3):
            for key in ("xp", "coins"):
                trigger(
                    tally,
                    TriggerType.EVENT,
                    1,
                    system_key=key,
                    event_type="lesson",
                    at=T0 + timedelta(minutes=minute),
                )
        coins = triggers.list_triggers_page(tally, "coins", 1, "").next_page_token
        query = page_tokens.query_id("ListTriggers", "xp")
        forged = [
            page_tokens.encode(position, query)
            for position in ("", "no bar", "2026-01-01T00:00:00|x", "yesterday|x")
        ]
        for token in [coins, "garbage", "e30", *forged]:
            with pytest.raises(ValidationFailed) as caught:
                triggers.list_triggers_page(tally, "xp", 1, token)
            assert caught.value.reason == "VALIDATION_FAILED", token
            assert [v.field for v in caught.value.violations] == ["page_token"], token


# -- preview ------------------------------------------------------------------------------

EVENT_TYPES = ("km", "lesson")
EXAMPLES = itertools.count()


def preview(
    tally: Tally, drafts: Sequence[commands.TriggerFields] = (), ids: Sequence[str] = (), **kw: Any
) -> Any:
    cmd = commands.PreviewTriggers(
        "xp",
        tuple(drafts),
        tuple(ids),
        start_time=kw.pop("start", T0 - timedelta(days=1)),
        end_time=kw.pop("end", T0 + timedelta(days=1)),
    )
    return events.preview_triggers(tally, cmd, T0 + timedelta(days=1), **kw)


class TestPreview:
    def test_a_replayed_metric_starts_from_the_total_at_the_window_start(
        self, tally: Tally
    ) -> None:
        system(tally)
        trigger(tally, TriggerType.EVENT, 1, event_type="km")
        event(tally, "ann", "km", 2, at=T0)
        event(tally, "ann", "km", 2, at=T0 + HOUR)  # total 2 -> 4 crosses 3
        draft = commands.TriggerFields(
            type=TriggerType.METRIC, points=5, event_type="km", metric_threshold=Decimal(3)
        )
        result, buckets = preview(tally, [draft], start=T0 + timedelta(minutes=1))
        assert (result.events, result.awards, result.points, result.users) == (1, 1, 5, 1)
        assert buckets[0].users == 0
        assert sum(b.users for b in buckets) == 1
        whole, _ = preview(tally, [draft])
        assert (whole.events, whole.points) == (2, 5)

    def test_saved_triggers_of_any_status_and_unknown_ids(self, tally: Tally) -> None:
        system(tally)
        off = trigger(tally, TriggerType.EVENT, 3, event_type="lesson", status=None)
        trigger(tally, TriggerType.EVENT, 1, event_type="lesson")
        event(tally, "ann")
        result, _ = preview(tally, ids=[off.id])
        assert [(t.label, t.awards, t.points) for t in result.per_trigger] == [(off.id, 1, 3)]
        with pytest.raises(TriggerNotFound):
            preview(tally, ids=["00000000-0000-0000-0000-000000000000"])

    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        history=st.lists(
            st.tuples(
                st.sampled_from(["u1", "u2", "u3"]),
                st.sampled_from(EVENT_TYPES),
                st.decimals(min_value="0.5", max_value=5, places=1),
                st.sampled_from([{}, {"mode": "hard"}]),
            ),
            min_size=1,
            max_size=25,
        ),
        points=st.integers(-20, 30).filter(bool),
        metric=st.booleans(),
        cap=st.sampled_from([0, 40]),
    )
    def test_a_draft_previews_what_the_same_trigger_awards_live(
        self,
        tally: Tally,
        history: list[tuple[str, str, Decimal, dict[str, str]]],
        points: int,
        metric: bool,
        cap: int,
    ) -> None:
        """Brute force: record the history with the trigger ACTIVE in a fresh system, then
        preview it as a draft of another fresh system over the same events."""
        tally.config.changed()
        key = f"s{next(EXAMPLES)}"
        fields = commands.TriggerFields(
            type=TriggerType.METRIC if metric else TriggerType.EVENT,
            points=points,
            event_type="km",
            metric_threshold=Decimal(2) if metric else Decimal(0),
            event_attributes=(("mode", "hard"),) if points % 2 else (),
        )
        system(tally, key, max_points=cap)
        triggers.create_trigger(
            tally, commands.CreateTrigger(key, dataclasses.replace(fields, status=ACTIVE)), T0
        )
        noise = commands.TriggerFields(type=TriggerType.EVENT, points=1, event_type="lesson")
        triggers.create_trigger(tally, commands.CreateTrigger(key, noise), T0)  # INACTIVE
        start = T0 + timedelta(seconds=1)
        prefix = f"{key}-"
        for i, (user, kind, value, attrs) in enumerate(history):
            cmd = commands.RecordEvent(UserProfile(prefix + user), kind, value, attrs)
            events.record_event(tally, cmd, start + i * timedelta(seconds=1))
        live: dict[str, int] = {}
        for user in {prefix + u for u, *_ in history}:
            entries = [e for e in ledger_of(tally, user, key) if e.trigger_id]
            live[user] = sum(e.amount for e in entries)
        window = commands.PreviewTriggers(
            key, (fields,), (), start, start + len(history) * timedelta(seconds=1)
        )
        result, _ = events.preview_triggers(tally, window, T0 + timedelta(days=1))
        previewed = {u: p for u, p in result.points_by_user.items() if u.startswith(prefix)}
        assert {u: live.get(u, 0) for u in previewed} == previewed
        assert sum(previewed.values()) == sum(live.values())


def test_two_interval_triggers_interleave_as_a_step_by_step_replay_says(tally: Tally) -> None:
    """Energy that refills 1 an hour up to 5 and drains 2 every 3 hours: skipping the
    firings of a full (or empty) account must stop at the other trigger's next firing."""
    system(tally, max_points=5)
    award(tally, "ann", 5)  # full at T0
    for points, hours, at in ((1, 1, T0), (-2, 3, T0 + timedelta(seconds=1))):
        trigger(
            tally,
            TriggerType.TIME_INTERVAL,
            points,
            interval_unit=IntervalUnit.HOURS,
            interval_count=hours,
            at=at,
        )
    expected, balance_now = [], 5
    for hour in range(1, 25):  # the drain, activated a second later, fires after the refill
        if balance_now < 5:
            balance_now += 1
            expected.append((hour, 1))
        if hour % 3 == 0:
            taken = min(2, balance_now)
            balance_now -= taken
            expected.append((hour, -taken))
    end = T0 + 24 * HOUR + timedelta(seconds=1)  # the 24th hour's drain included
    assert balance(tally, "ann", at=end) == balance_now
    fired = [e for e in ledger_of(tally, "ann", at=end) if e.trigger_id]
    assert [((e.create_time - T0) // HOUR, e.amount) for e in fired] == expected


def test_an_event_key_kept_before_keys_had_reaches_still_replays(
    tally: Tally, store: SqlStore
) -> None:
    """A RecordEvent key stored before keys had reaches lives in scope '' (access.py:
    LEGACY_USER_SCOPE); the batch must read it there too, or a retry across the upgrade
    would record the event again and its triggers award again."""
    system(tally)
    trigger(tally, TriggerType.EVENT, 10, event_type="lesson")
    assert not event(tally, "ann", idempotency_key="e-1").replayed
    with store.engine.begin() as connection:  # as migration 0014 found it
        connection.execute(text("UPDATE idempotency_keys SET scope = '' WHERE key = 'e-1'"))
    assert event(tally, "ann", idempotency_key="e-1").replayed
    assert balance(tally, "ann") == 10
