"""Summaries and points analytics: GetPointsSummary, GetUserPointsSummary and
GetPointsAnalytics. The domain turns dates and a time zone into UTC periods; the store
aggregates by them (store/analytics.py); this module shapes the answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from server.domain import reports
from server.domain.errors import SystemNotFound, UserNotFound
from server.domain.model import PointsSystem, Trigger
from server.services.held import callers
from server.services.ports import EarningsTotals, UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction


@dataclass(frozen=True)
class Bucket:
    low: int  # inclusive
    high: int  # inclusive
    users: int


@dataclass(frozen=True)
class PointsSummary:
    buckets: list[Bucket]
    total_users: int


@dataclass(frozen=True)
class PeriodPoints:
    day: date  # the period's calendar first day
    total: int  # the balance at the period's end
    change: int  # the net ledger change in the period


@dataclass(frozen=True)
class EarnedPeriod:
    day: date
    points: int
    users: int  # distinct users with an award in the period


@dataclass(frozen=True)
class TriggerEarnings:
    trigger_id: str  # "" for direct awards
    awards: int
    points: int
    trigger: Trigger | None = None  # None for the row of direct awards


@dataclass(frozen=True)
class PointsAnalytics:
    earned: list[EarnedPeriod]
    top_earners: list[tuple[str, int]]
    new_users: int
    average_first_14_days: float
    triggers: list[TriggerEarnings] = field(default_factory=list)


def triggers_by_id(tally: Tally, ids: Sequence[str]) -> dict[str, Trigger]:
    """The Triggers behind these ids (held in the configuration), for the trigger rows of
    GetPointsAnalytics; triggers are never deleted, so every id is found."""
    known = tally.config.snapshot.rules.triggers
    return {i: known[i] for i in ids if i in known}


def points_summary(tally: Tally, cmd: reports.GetPointsSummary) -> PointsSummary:
    """The balance histogram: a bucket {0, 0}, then `bucket_count` buckets of width
    ceil(max / bucket_count) (at least 1) from 1 upwards."""
    reports.points_summary(cmd)
    buckets = cmd.bucket_count or reports.DEFAULT_BUCKETS

    def work(uow: UnitOfWork) -> PointsSummary:
        _system(tally, uow, cmd.system_key)
        counts = uow.analytics.balance_counts(cmd.system_key, buckets, cmd.user_attributes)
        width = max(1, -(-counts.top // buckets))
        shaped = [Bucket(0, 0, counts.users.get(0, 0))]
        for i in range(1, buckets + 1):
            shaped.append(Bucket((i - 1) * width + 1, i * width, counts.users.get(i, 0)))
        return PointsSummary(shaped, sum(counts.users.values()))

    return in_transaction(tally.store, work, write=False)


def user_points_summary(tally: Tally, cmd: reports.GetUserPointsSummary) -> list[PeriodPoints]:
    """One item per period, empty ones included: its net change and the balance after."""
    periods = reports.user_points_summary(cmd)
    spans = [(p.start, p.end) for p in periods.items]

    def work(uow: UnitOfWork) -> list[PeriodPoints]:
        _system(tally, uow, cmd.system_key)
        if uow.users.get(cmd.user_id) is None or not callers.sees_user(uow, cmd.user_id):
            raise UserNotFound(cmd.user_id, cmd.system_key)
        total, changes = uow.analytics.user_changes(cmd.system_key, cmd.user_id, spans)
        points = []
        for period, change in zip(periods.items, changes, strict=True):
            total += change
            points.append(PeriodPoints(period.day, total, change))
        return points

    return in_transaction(tally.store, work, write=False)


def points_analytics(tally: Tally, cmd: reports.GetPointsAnalytics) -> PointsAnalytics:
    """Points earned in the window over every user of the system: per period, the top
    earners, new users and their first 14 days, and per trigger."""
    periods = reports.points_analytics(cmd)
    spans = [(p.start, p.end) for p in periods.items]
    top = cmd.top or reports.DEFAULT_TOP

    def work(uow: UnitOfWork) -> EarningsTotals:
        _system(tally, uow, cmd.system_key)
        return uow.analytics.earnings(cmd.system_key, spans, top, reports.FIRST_DAYS.days)

    totals = in_transaction(tally.store, work, write=False)
    earned = [
        EarnedPeriod(period.day, points, users)
        for period, (points, users) in zip(periods.items, totals.per_period, strict=True)
    ]
    average = totals.first_days_points / totals.new_users if totals.new_users else 0.0
    return PointsAnalytics(
        earned, totals.top_earners, totals.new_users, average, _trigger_rows(tally, totals)
    )


def _trigger_rows(tally: Tally, totals: EarningsTotals) -> list[TriggerEarnings]:
    """A row per trigger that awarded in the window, by awards descending (ties by id),
    then the row of direct awards (always there, zeros when there were none)."""
    by_trigger = [row for row in totals.per_trigger if row[0] and row[1] > 0]
    by_trigger.sort(key=lambda row: (-row[1], row[0]))
    found = triggers_by_id(tally, [row[0] for row in by_trigger])
    rows = [TriggerEarnings(i, awards, points, found.get(i)) for i, awards, points in by_trigger]
    direct = next((row for row in totals.per_trigger if not row[0]), ("", 0, 0))
    return [*rows, TriggerEarnings("", direct[1], direct[2])]


def _system(tally: Tally, uow: UnitOfWork, key: str) -> PointsSystem:
    callers.current().check_system(key)
    system = tally.config.read_system(uow, key)
    if system is None:
        raise SystemNotFound(key)
    return system
