"""Boosts on both stores: stacking, rounding, windows, cohorts, archiving, and the
arithmetic against a reference decimal computation."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain import boosts as boosting
from server.domain import commands
from server.domain.errors import BoostNotFound, ValidationFailed
from server.domain.model import (
    Boost,
    BoostStatus,
    EntryType,
    Rounding,
    TriggerStatus,
    TriggerType,
    UserProfile,
)
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction
from server.services.use_cases import boosts, events, points_changes, triggers
from server.store.database import SqlStore
from tests.conftest import T0
from tests.integration.helpers import award, balance, deduct, system

DAY = timedelta(days=1)


def boost(
    tally: Tally,
    multiplier: str,
    *,
    user: str = "",
    rounding: Rounding | None = None,
    start: datetime | None = T0,
    end: datetime | None = None,
    cohort: tuple[tuple[str, str], ...] = (),
    system_key: str = "xp",
) -> Boost:
    fields = commands.BoostFields(user, "b", Decimal(multiplier), rounding, start, end, cohort)
    created, issues = boosts.create_boosts(tally, system_key, [fields], T0)
    assert [i for i in issues if i.error] == []
    return created[0]


class TestApplication:
    def test_boosts_stack_by_multiplication(self, tally: Tally) -> None:
        system(tally)
        ids = [boost(tally, "2").id, boost(tally, "1.5", user="ann").id, boost(tally, "3").id]
        result = award(tally, "ann", 10)
        entry = result.entry
        assert (entry.amount, entry.base_amount, entry.multiplier) == (90, 10, Decimal("9.0"))
        assert sorted(entry.boost_ids) == sorted(ids)
        assert award(tally, "bob", 10).entry.amount == 60  # not ann's own boost

    @pytest.mark.parametrize(
        ("roundings", "expected"),
        [
            ((Rounding.DOWN, Rounding.DOWN), 7),
            ((Rounding.UP, Rounding.UP), 8),
            ((Rounding.NEAREST, Rounding.UP), 8),
            ((Rounding.UP, Rounding.DOWN), 7),
        ],
    )
    def test_rounding_of_5_x_1_5(
        self, tally: Tally, roundings: tuple[Rounding, Rounding], expected: int
    ) -> None:
        system(tally)
        boost(tally, "1.5", rounding=roundings[0])
        boost(tally, "1", rounding=roundings[1])
        assert award(tally, "ann", 5).entry.amount == expected

    def test_nearest_rounds_halves_up(self, tally: Tally) -> None:
        system(tally)
        boost(tally, "1.5", rounding=Rounding.NEAREST)
        assert [award(tally, f"u{n}", n).entry.amount for n in (1, 3, 5)] == [2, 5, 8]

    def test_only_boosts_whose_window_holds_the_award_apply(self, tally: Tally) -> None:
        system(tally)
        boost(tally, "2", start=T0 + DAY)  # scheduled
        boost(tally, "3", start=T0 - 2 * DAY, end=T0 - DAY)  # ended
        boost(tally, "5", start=T0 - DAY, end=T0 + DAY)
        assert award(tally, "ann", 1).entry.amount == 5
        assert award(tally, "ann", 1, at=T0 + DAY).entry.amount == 2  # 5 ended, 2 began

    def test_cohorts_by_user_attribute(self, tally: Tally) -> None:
        system(tally)
        boost(tally, "2", cohort=(("plan", "pro"),))
        pro = commands.Award("xp", UserProfile("ann", attributes={"plan": "pro"}), 10)
        assert points_changes.award(tally, pro, T0).entry.amount == 20
        assert award(tally, "bob", 10).entry.amount == 10

    def test_skip_boosts_deductions_and_max_points(self, tally: Tally) -> None:
        system(tally, max_points=25)
        boost(tally, "2")
        assert award(tally, "ann", 10, skip_boosts=True).entry.amount == 10
        capped = award(tally, "ann", 10).entry
        assert (capped.amount, capped.base_amount, capped.capped) == (15, 10, True)
        spent = deduct(tally, "ann", 5).entry
        assert (spent.amount, spent.multiplier) == (-5, Decimal(1))

    def test_trigger_awards_are_boosted(self, tally: Tally) -> None:
        system(tally)
        boost(tally, "2")
        fields = commands.TriggerFields(
            type=TriggerType.EVENT, points=7, event_type="lesson", status=TriggerStatus.ACTIVE
        )
        triggers.create_trigger(tally, commands.CreateTrigger("xp", fields), T0)
        result = events.record_event(tally, commands.RecordEvent(UserProfile("ann"), "lesson"), T0)
        ((entry, _),) = result.results["xp"].awards
        assert (entry.type, entry.amount, entry.base_amount) == (EntryType.AWARD, 14, 7)


class TestLifecycle:
    def test_archive_stops_a_boost_at_once_in_every_process(
        self, tally: Tally, store: SqlStore
    ) -> None:
        system(tally)
        other = Tally(store, clock=lambda: T0)
        made = boost(tally, "2")
        assert award(other, "ann", 10).entry.amount == 20  # the other process holds it
        archived = boosts.archive_boost(tally, made.id, T0)
        assert archived.status(T0) is BoostStatus.ARCHIVED
        assert award(other, "ann", 10).entry.amount == 10
        assert boosts.archive_boost(tally, made.id, T0 + DAY).archive_time == T0  # unchanged
        with pytest.raises(BoostNotFound):
            boosts.archive_boost(tally, "00000000-0000-0000-0000-000000000000", T0)

    def test_invalid_items_are_issues_and_valid_ones_are_created(self, tally: Tally) -> None:
        system(tally)
        items = [
            commands.BoostFields("ann", "ok", Decimal(2)),
            commands.BoostFields("", "zero", Decimal(0)),
            commands.BoostFields("", "nan", Decimal("NaN")),
            commands.BoostFields("", "backwards", Decimal(2), None, T0, T0 - DAY),
            commands.BoostFields("", "past", Decimal(2), None, T0 - 2 * DAY, T0 - DAY),
        ]
        created, issues = boosts.create_boosts(tally, "xp", items, T0)
        assert [b.name for b in created] == ["ok", "past"]
        assert [(i.index, i.error) for i in issues] == [(1, True), (2, True), (3, True), (4, False)]
        assert "multiplier" in issues[0].message
        assert "end_time" in issues[2].message
        with pytest.raises(ValidationFailed):
            boosts.create_boosts(tally, "xp", [], T0)

    def test_list_by_user_and_status_in_keyset_pages(self, tally: Tally) -> None:
        system(tally)
        for i in range(5):
            boosts.create_boosts(
                tally,
                "xp",
                [
                    commands.BoostFields(
                        "ann" if i % 2 else "", f"b{i}", Decimal(2), None, T0 + i * DAY
                    )
                ],
                T0 + i * timedelta(seconds=1),
            )
        names: list[str] = []
        token = ""
        while True:
            page = boosts.list_boosts(tally, "xp", "", frozenset(), 2, token, T0)
            names += [b.name for b in page.items]
            token = page.next_page_token
            if not token:
                break
        assert names == ["b4", "b3", "b2", "b1", "b0"]
        mine = boosts.list_boosts(tally, "xp", "ann", frozenset(), 0, "", T0)
        assert [b.name for b in mine.items] == ["b3", "b1"]
        active = boosts.list_boosts(tally, "xp", "", frozenset({BoostStatus.ACTIVE}), 0, "", T0)
        assert [b.name for b in active.items] == ["b0"]
        scheduled = frozenset({BoostStatus.SCHEDULED})
        later = boosts.list_boosts(tally, "xp", "", scheduled, 0, "", T0)
        assert [b.name for b in later.items] == ["b4", "b3", "b2", "b1"]
        with pytest.raises(ValidationFailed):
            boosts.list_boosts(tally, "xp", "ann", frozenset(), 2, page.next_page_token or "x", T0)

    def test_get_multiplier(self, tally: Tally) -> None:
        system(tally)
        boost(tally, "2")
        boost(tally, "1.5", user="ann")
        boost(tally, "4", cohort=(("plan", "pro"),))
        factor, applied = boosts.get_multiplier(tally, "xp", "ann", T0)
        assert factor == Decimal("3.0")
        assert len(applied) == 2
        assert boosts.get_multiplier(tally, "xp", "never-seen", T0)[0] == 2
        assert boosts.get_multiplier(tally, "xp", "ann", T0 - DAY)[0] == 1


def reference(amount: int, multipliers: list[float], roundings: list[Rounding]) -> int:
    """The rule of API.md, computed independently: exact decimals from repr(), one rounding."""
    with localcontext() as ctx:
        ctx.prec = 200
        product = Decimal(1)
        for m in multipliers:
            product *= Decimal(repr(m))
        exact = Decimal(amount) * product
        if Rounding.DOWN in roundings:
            return int(exact.to_integral_value(ROUND_FLOOR))
        if Rounding.NEAREST in roundings:
            return int(exact.to_integral_value(ROUND_HALF_UP))
        return int(exact.to_integral_value(ROUND_CEILING))


@given(
    amount=st.integers(1, 10**9),
    picks=st.lists(
        st.tuples(
            st.floats(0.01, 10, allow_nan=False).filter(math.isfinite),
            st.sampled_from(list(Rounding)),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_applied_amount_equals_the_reference_computation(
    amount: int, picks: list[tuple[float, Rounding]]
) -> None:
    applied = [
        Boost(f"b{i}", "xp", "", "", Decimal(repr(m)), r, T0, None, (), T0)
        for i, (m, r) in enumerate(picks)
    ]
    expected = reference(amount, [m for m, _ in picks], [r for _, r in picks])
    assert boosting.multiply(amount, applied).amount == min(expected, 10**12)


_: Any = balance


def test_many_stacked_boosts_award_exactly_and_record_a_bounded_multiplier(
    tally: Tally,
) -> None:
    """Forty 17-digit multipliers: the amount is the exact product's, rounded once, and the
    entry records the product in 34 digits (PostgreSQL refused the 680-digit text)."""
    system(tally)
    for _ in range(40):
        boost(tally, "1.0000000000000002", rounding=Rounding.UP)
    entry = award(tally, "ann", 10**9).entry
    assert entry.amount == reference(10**9, [1.0000000000000002] * 40, [Rounding.UP])
    assert len(str(entry.multiplier)) <= 45
    assert entry.multiplier == Decimal("1.000000000000008000000000000031200")
    assert balance(tally, "ann") == entry.amount


class TestLiveBound:
    """M7 of issue 21: at most MAX_LIVE_BOOSTS live boosts per user per system (the
    system's global ones as one more user); items beyond it are issues naming their index."""

    def items(self, user: str, n: int, **times: datetime) -> list[commands.BoostFields]:
        start, end = times.get("start", T0), times.get("end")
        return [
            commands.BoostFields(user, f"{user}-{i}", Decimal(2), None, start, end)
            for i in range(n)
        ]

    def test_items_beyond_the_bound_are_issues_and_the_rest_are_created(self, tally: Tally) -> None:
        system(tally)
        bound = boosting.MAX_LIVE_BOOSTS
        assert bound == 100
        first, issues = boosts.create_boosts(tally, "xp", self.items("ann", bound + 1), T0)
        assert len(first) == bound
        assert [(i.index, i.user_id, i.error) for i in issues] == [(bound, "ann", True)]
        assert "already has 100 live boosts" in issues[0].message
        mixed = [
            *self.items("ann", 1),
            *self.items("bob", 1),
            *self.items("ann", 1, start=T0 + DAY),  # scheduled: live too
            *self.items("ann", 1, start=T0 - 2 * DAY, end=T0 - DAY),  # ended: not live
        ]
        created, issues = boosts.create_boosts(tally, "xp", mixed, T0)
        assert [b.user_id for b in created] == ["bob", "ann"]
        assert [(i.index, i.user_id, i.error) for i in issues] == [
            (0, "ann", True),
            (2, "ann", True),
            (3, "ann", False),  # the warning that it never applies
        ]
        boosts.archive_boost(tally, first[0].id, T0)
        created, issues = boosts.create_boosts(tally, "xp", self.items("ann", 2), T0)
        assert ([b.user_id for b in created], [i.index for i in issues]) == (["ann"], [1])
        factor, applied = boosts.get_multiplier(tally, "xp", "ann", T0)
        assert (len(applied), factor) == (bound, Decimal(2**bound))

    def test_two_requests_racing_stay_within_the_bound(self, store: SqlStore) -> None:
        tally = Tally(store, clock=lambda: T0)
        system(tally)
        start = threading.Barrier(2)
        results: list[tuple[list[Boost], list[boosts.Issue]]] = []

        def create() -> None:
            start.wait()
            results.append(boosts.create_boosts(tally, "xp", self.items("cy", 60), T0))

        threads = [threading.Thread(target=create) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(len(made) for made, _ in results) == [40, 60]
        assert sorted(len(issues) for _, issues in results) == [0, 20]

        def live(uow: UnitOfWork) -> dict[str, int]:
            return uow.boosts.live_counts("xp", ["cy"], T0)

        assert in_transaction(store, live, write=False) == {"cy": 100}
