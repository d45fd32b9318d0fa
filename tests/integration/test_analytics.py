"""Summaries and points analytics against brute-force computations over random ledgers,
on both stores, with time zones (DST included) and empty periods."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.domain import commands, reports
from server.domain.balances import balance_in
from server.domain.batch import Circumstances, CustomChange
from server.domain.book import Book
from server.domain.errors import SystemNotFound, TallyError, UserNotFound, ValidationFailed
from server.domain.ledger import Posting
from server.domain.model import EntryType, LedgerEntry, UserProfile
from server.services.pipeline.results import WriteResult
from server.services.tally import Tally
from server.services.use_cases import analytics, points_changes, watch
from server.store.database import SqlStore
from tests.conftest import _empty
from tests.integration.helpers import award, deduct, system

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
BASE = datetime(2026, 3, 20, tzinfo=UTC)  # Europe's and America's spring DST in reach
USERS = ["ann", "bob", "cy", "dee"]
TRIGGERS = ["", "", "t-login", "t-buy"]


@dataclass(frozen=True)
class Op:
    kind: str  # award, deduct, reverse
    user: int
    amount: int
    minutes: int  # after BASE
    trigger: int  # index into TRIGGERS (awards)


ops = st.lists(
    st.builds(
        Op,
        st.sampled_from(["award", "award", "award", "deduct", "reverse"]),
        st.integers(0, len(USERS) - 1),
        st.integers(1, 50),
        st.integers(0, 60 * 24 * 45),  # 45 days, whole minutes
        st.integers(0, len(TRIGGERS) - 1),
    ),
    max_size=14,
)


def post_award(tally: Tally, user: str, amount: int, at: datetime, trigger_id: str) -> str:
    """An award as a trigger would make it (issue 9 brings the real ones); its entry id."""
    if not trigger_id:
        return award(tally, user, amount, at=at).entry.id

    def decide(book: Book, given: Circumstances) -> WriteResult:
        system = given.system("xp")
        account = book.account(system, given.rules, at)
        entry = book.post(account.award(amount, Posting(trigger_id=trigger_id), now=at))
        return WriteResult(entry, balance_in(book, system, given.rules))

    (outcome,) = tally.writer.post(
        [CustomChange("xp", user, decide, at, profile=UserProfile(user))]
    )
    assert isinstance(outcome, WriteResult)
    return outcome.entry.id


def play(tally: Tally, store: SqlStore, steps: Sequence[Op]) -> list[LedgerEntry]:
    """Write the steps (those the rules refuse are skipped) and return the ledger."""
    _empty(store)
    system(tally)
    awarded: list[str] = []
    for step in sorted(steps, key=lambda s: s.minutes):
        at = BASE + timedelta(minutes=step.minutes)
        user = USERS[step.user]
        try:
            if step.kind == "award":
                awarded.append(post_award(tally, user, step.amount, at, TRIGGERS[step.trigger]))
            elif step.kind == "deduct":
                deduct(tally, user, step.amount, at=at)
            elif awarded:
                entry_id = awarded[step.amount % len(awarded)]
                points_changes.reverse(tally, commands.Reverse(entry_id), at)
        except TallyError:  # refused by the rules (insufficient points...): not written
            continue
    return ledger_of(tally)


def ledger_of(tally: Tally) -> list[LedgerEntry]:
    """The whole ledger, read as WatchLedger reads it."""
    stream = watch.watch_ledger(tally, reports.WatchLedger())
    return [entry for chunk in stream for entry in chunk]


def window(start: date, days: int, aggregation: reports.Aggregation, zone: str) -> reports.Window:
    end = start + timedelta(days=days)
    return reports.Window(start.isoformat(), end.isoformat(), aggregation, zone)


def local_day(entry: LedgerEntry, zone: str) -> date:
    return entry.create_time.astimezone(ZoneInfo(zone)).date()


def period_days(w: reports.Window) -> list[date]:
    aggregation = w.aggregation or reports.Aggregation.DAILY
    first, last = date.fromisoformat(w.start_date), date.fromisoformat(w.end_date)
    days: list[date] = []
    day = first
    while day <= last:
        start = reports.period_start(day, aggregation)
        if start not in days:
            days.append(start)
        day += timedelta(days=1)
    return days


def earned_by(entry: LedgerEntry) -> int:
    if entry.type is EntryType.AWARD or (entry.type is EntryType.REVERSAL and entry.amount < 0):
        return entry.amount
    return 0


windows = st.builds(
    window,
    st.dates(date(2026, 3, 15), date(2026, 4, 20)),
    st.integers(0, 40),
    st.sampled_from(list(reports.Aggregation)),
    st.sampled_from(ZONES),
)
examples = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@examples
@given(steps=ops, w=windows, user=st.sampled_from(USERS))
def test_user_summary_matches_the_ledger(
    tally: Tally, store: SqlStore, steps: list[Op], w: reports.Window, user: str
) -> None:
    ledger = [e for e in play(tally, store, steps) if e.user_id == user]
    cmd = reports.GetUserPointsSummary("xp", user, w)
    if not ledger:
        with pytest.raises(UserNotFound):
            analytics.user_points_summary(tally, cmd)
        return
    zone = w.time_zone
    first, last = date.fromisoformat(w.start_date), date.fromisoformat(w.end_date)
    aggregation = w.aggregation or reports.Aggregation.DAILY
    change: dict[date, int] = defaultdict(int)
    opening = 0
    for entry in ledger:
        day = local_day(entry, zone)
        if day < first:
            opening += entry.amount
        elif day <= last:
            change[reports.period_start(day, aggregation)] += entry.amount
    expected, total = [], opening
    for day in period_days(w):
        total += change[day]
        expected.append(analytics.PeriodPoints(day, total, change[day]))
    assert analytics.user_points_summary(tally, cmd) == expected


@examples
@given(steps=ops, buckets=st.integers(1, 7))
def test_points_summary_matches_the_balances(
    tally: Tally, store: SqlStore, steps: list[Op], buckets: int
) -> None:
    ledger = play(tally, store, steps)
    balances: dict[str, int] = defaultdict(int)
    for entry in ledger:
        balances[entry.user_id] += entry.amount
    top = max(balances.values(), default=0)
    width = max(1, -(-top // buckets))
    users = [0] * (buckets + 1)
    for balance in balances.values():
        users[0 if balance <= 0 else (balance - 1) // width + 1] += 1
    summary = analytics.points_summary(tally, reports.GetPointsSummary("xp", buckets))
    assert [b.users for b in summary.buckets] == users
    assert summary.buckets[0] == analytics.Bucket(0, 0, users[0])
    assert summary.buckets[-1].high == buckets * width
    assert summary.total_users == len(balances)


@examples
@given(steps=ops, w=windows, top=st.integers(1, 3))
def test_points_analytics_match_the_ledger(
    tally: Tally, store: SqlStore, steps: list[Op], w: reports.Window, top: int
) -> None:
    ledger = play(tally, store, steps)
    zone = w.time_zone
    first, last = date.fromisoformat(w.start_date), date.fromisoformat(w.end_date)
    aggregation = w.aggregation or reports.Aggregation.DAILY
    inside = [e for e in ledger if first <= local_day(e, zone) <= last]
    by_id = {e.id: e for e in ledger}

    points: dict[date, int] = defaultdict(int)
    earners: dict[date, set[str]] = defaultdict(set)
    per_user: dict[str, int] = defaultdict(int)
    per_trigger: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in inside:
        day = reports.period_start(local_day(e, zone), aggregation)
        points[day] += earned_by(e)
        per_user[e.user_id] += earned_by(e)
        if e.type is EntryType.AWARD:
            earners[day].add(e.user_id)
            per_trigger[e.trigger_id][0] += 1
        if earned_by(e):
            origin = by_id[e.reverses_entry_id] if e.type is EntryType.REVERSAL else e
            per_trigger[origin.trigger_id][1] += earned_by(e)
    firsts: dict[str, datetime] = {}
    for e in ledger:
        firsts[e.user_id] = min(firsts.get(e.user_id, e.create_time), e.create_time)
    new = [u for u, t in firsts.items() if first <= t.astimezone(ZoneInfo(zone)).date() <= last]
    first_days = sum(
        earned_by(e)
        for e in ledger
        if e.user_id in new and e.create_time < firsts[e.user_id] + timedelta(days=14)
    )
    ranked = sorted(((u, p) for u, p in per_user.items() if p > 0), key=lambda x: (-x[1], x[0]))
    triggers = sorted(
        ((t, a, p) for t, (a, p) in per_trigger.items() if t and a > 0),
        key=lambda x: (-x[1], x[0]),
    )
    direct = per_trigger.get("", [0, 0])

    cmd = reports.GetPointsAnalytics("xp", w, top)
    got = analytics.points_analytics(tally, cmd)
    assert got.earned == [
        analytics.EarnedPeriod(day, points[day], len(earners[day])) for day in period_days(w)
    ]
    assert got.top_earners == ranked[:top]
    assert got.new_users == len(new)
    assert got.average_first_14_days == pytest.approx(first_days / len(new) if new else 0.0)
    assert got.triggers == [
        *(analytics.TriggerEarnings(t, a, p) for t, a, p in triggers),
        analytics.TriggerEarnings("", direct[0], direct[1]),
    ]


PARIS = "Europe/Paris"


def test_days_across_dst_changes_are_local_days(tally: Tally) -> None:
    """Paris: 2026-03-29 has 23 hours (02:00 -> 03:00), 2026-10-25 has 25. An entry at
    22:30 UTC on the 28th is on the 28th in Paris (23:30, UTC+1), one at 22:30 UTC on
    the 29th is on the 30th (00:30, UTC+2); the last hour of the 25-hour day is its."""
    system(tally)
    award(tally, "u", 1, at=datetime(2026, 3, 28, 22, 30, tzinfo=UTC))
    award(tally, "u", 10, at=datetime(2026, 3, 29, 21, 59, tzinfo=UTC))  # 23:59 local
    award(tally, "u", 100, at=datetime(2026, 3, 29, 22, 30, tzinfo=UTC))
    award(tally, "u", 1000, at=datetime(2026, 10, 25, 22, 59, tzinfo=UTC))  # 23:59 CET
    award(tally, "u", 10000, at=datetime(2026, 10, 25, 23, 0, tzinfo=UTC))  # next day
    spring = reports.Window("2026-03-28", "2026-03-30", None, PARIS)
    got = analytics.user_points_summary(tally, reports.GetUserPointsSummary("xp", "u", spring))
    assert [(p.day.isoformat(), p.change, p.total) for p in got] == [
        ("2026-03-28", 1, 1),
        ("2026-03-29", 10, 11),
        ("2026-03-30", 100, 111),
    ]
    autumn = reports.Window("2026-10-25", "2026-10-26", reports.Aggregation.DAILY, PARIS)
    got = analytics.user_points_summary(tally, reports.GetUserPointsSummary("xp", "u", autumn))
    assert [(p.change, p.total) for p in got] == [(1000, 1111), (10000, 11111)]
    utc = reports.Window("2026-03-29", "2026-03-29", None, "")
    got = analytics.user_points_summary(tally, reports.GetUserPointsSummary("xp", "u", utc))
    assert [(p.change, p.total) for p in got] == [(110, 111)]  # 21:59 and 22:30 UTC


def test_weeks_start_on_monday_and_months_on_the_first_even_when_cut(tally: Tally) -> None:
    system(tally)
    award(tally, "u", 5, at=datetime(2026, 2, 25, 12, tzinfo=UTC))
    weekly = reports.Window("2026-02-26", "2026-03-09", reports.Aggregation.WEEKLY, "")
    got = analytics.user_points_summary(tally, reports.GetUserPointsSummary("xp", "u", weekly))
    assert [(p.day.isoformat(), p.total) for p in got] == [
        ("2026-02-23", 5),  # the window's Thursday is in the week of Monday the 23rd
        ("2026-03-02", 5),
        ("2026-03-09", 5),
    ]
    assert got[0].change == 0  # the award on the 25th is before the window
    monthly = reports.Window("2026-01-31", "2026-03-01", reports.Aggregation.MONTHLY, "")
    got = analytics.user_points_summary(tally, reports.GetUserPointsSummary("xp", "u", monthly))
    assert [(p.day.isoformat(), p.change) for p in got] == [
        ("2026-01-01", 0),
        ("2026-02-01", 5),
        ("2026-03-01", 0),
    ]


def test_the_cohort_filter_counts_users_with_every_attribute(tally: Tally) -> None:
    system(tally)
    for user, amount, attributes in [
        ("a", 10, {"plan": "pro", "country": "fr"}),
        ("b", 20, {"plan": "pro"}),
        ("c", 30, {"plan": "free", "country": "fr"}),
    ]:
        cmd = commands.Award("xp", UserProfile(user, attributes=attributes), amount)
        points_changes.award(tally, cmd, BASE)
    pro = analytics.points_summary(tally, reports.GetPointsSummary("xp", 2, (("plan", "pro"),)))
    assert [(b.low, b.high, b.users) for b in pro.buckets] == [(0, 0, 0), (1, 10, 1), (11, 20, 1)]
    both = (("plan", "pro"), ("country", "fr"))
    assert analytics.points_summary(tally, reports.GetPointsSummary("xp", 1, both)).total_users == 1
    empty = analytics.points_summary(tally, reports.GetPointsSummary("xp", 3, (("x", "y"),)))
    assert [(b.low, b.high, b.users) for b in empty.buckets] == [
        (0, 0, 0),
        (1, 1, 0),
        (2, 2, 0),
        (3, 3, 0),
    ]


@pytest.mark.parametrize(
    ("window_fields", "field"),
    [
        (("2026-13-01", "2026-12-01", None, ""), "start_date"),
        (("2026-01-01", "", None, ""), "end_date"),
        (("2026-02-01", "2026-01-01", None, ""), "end_date"),
        (("2026-01-01", "2026-01-02", None, "Mars/Olympus"), "time_zone"),
        (("2026-01-01", "2026-01-02", None, "../etc/passwd"), "time_zone"),
        (("2020-01-01", "2026-01-01", None, ""), "end_date"),  # more than 1000 days
        (("2026-1-01", "2026-01-02", None, ""), "start_date"),
    ],
)
def test_bad_windows_name_their_field(
    tally: Tally, window_fields: tuple[str, str, None, str], field: str
) -> None:
    system(tally)
    w = reports.Window(*window_fields)
    with pytest.raises(ValidationFailed) as failed:
        analytics.points_analytics(tally, reports.GetPointsAnalytics("xp", w))
    assert [v.field for v in failed.value.violations] == [field]


def test_bad_counts_and_unknown_systems(tally: Tally) -> None:
    w = reports.Window("2026-01-01", "2026-01-02")
    with pytest.raises(ValidationFailed) as failed:
        analytics.points_analytics(tally, reports.GetPointsAnalytics("xp", w, top=101))
    assert failed.value.violations[0].field == "top"
    with pytest.raises(ValidationFailed) as failed:
        analytics.points_summary(tally, reports.GetPointsSummary("xp", bucket_count=-1))
    assert failed.value.violations[0].field == "bucket_count"
    with pytest.raises(SystemNotFound):
        analytics.points_analytics(tally, reports.GetPointsAnalytics("nope", w))
    with pytest.raises(SystemNotFound):
        analytics.points_summary(tally, reports.GetPointsSummary("nope"))
