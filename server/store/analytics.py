"""The analytics' aggregates (services/ports.py AnalyticsRepository), as SQL.

Every figure is a GROUP BY in the database; the server reads one row per period, user
of the top, or trigger. Periods arrive as UTC spans (the domain turned local dates into
instants with zoneinfo), so both stores bucket by the caller's time zone alike, DST
included. An entry's period: PostgreSQL finds it by binary search over the periods'
starts (`width_bucket` on an array); SQLite, which has no arrays, by a lookup in a
VALUES table of the spans.

"Earned" means awarded (the entry's amount: boosts and caps applied), less reversed
awards, each counted when it happened: AWARD entries, and REVERSAL entries with a
negative amount (a reversal of an award takes its points back; one of a deduction gives
points back, and is not earning). Deductions and expiry do not lower it.

These statements depend on each call's periods and filters, so they are built per call
and run through SQLAlchemy (with its statement cache), not the prebuilt hot-path ones.
All read one system's rows by the indexes of migration 0007: on Citus each is a query
over every shard, grouped on the coordinator.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    bindparam,
    case,
    column,
    func,
    literal,
    literal_column,
    or_,
    select,
    values,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from server.domain.model import EntryType
from server.services.ports import BalanceCounts, EarningsTotals, Span
from server.store.models import UTCDateTime
from server.store.statements.tables import accounts, ledger, users

AWARD = EntryType.AWARD.value
REVERSAL = EntryType.REVERSAL.value


class SqlAnalyticsRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.postgres = connection.dialect.name == "postgresql"

    def _rows(self, statement: Any) -> list[Any]:
        return list(self.connection.execute(statement).mappings())

    # -- GetPointsSummary ----------------------------------------------------------------

    def balance_counts(
        self, system_key: str, buckets: int, attributes: Sequence[tuple[str, str]]
    ) -> BalanceCounts:
        counted = select(accounts.c.balance).where(accounts.c.system_key == system_key)
        if attributes:
            counted = counted.join(users, users.c.id == accounts.c.user_id).where(
                *(users.c.attributes[key].as_string() == value for key, value in attributes)
            )
        balances = counted.cte("balances")
        top = select(func.max(balances.c.balance)).scalar_subquery()
        # ceil(top / buckets), at least 1, in integer arithmetic on both stores
        width = case((top <= buckets, 1), else_=(top + (buckets - 1)) // buckets)
        bucket = case(
            (balances.c.balance <= 0, 0), else_=(balances.c.balance - 1) // width + 1
        ).label("bucket")
        rows = self._rows(
            select(bucket, func.count().label("users"), top.label("top")).group_by(bucket)
        )
        counts = {int(r["bucket"]): int(r["users"]) for r in rows}
        return BalanceCounts(int(rows[0]["top"]) if rows else 0, counts)

    # -- GetUserPointsSummary ------------------------------------------------------------

    def user_changes(
        self, system_key: str, user_id: str, periods: Sequence[Span]
    ) -> tuple[int, list[int]]:
        of_account = (ledger.c.user_id == user_id, ledger.c.system_key == system_key)
        start, end = periods[0][0], periods[-1][1]
        period = self._period_of(ledger.c.create_time, periods).label("period")
        opening = (
            select(func.coalesce(func.sum(ledger.c.amount), 0))
            .where(*of_account, ledger.c.create_time < start)
            .scalar_subquery()
        )
        changes = (
            select(period, func.sum(ledger.c.amount).label("change"))
            .where(*of_account, ledger.c.create_time >= start, ledger.c.create_time < end)
            .group_by(period)
        )
        # the opening balance rides along as a row of its own (period -1): one snapshot
        statement = changes.union_all(select(literal(-1), opening))
        found = {int(r["period"]): int(r["change"]) for r in self._rows(statement)}
        return found.pop(-1), [found.get(i, 0) for i in range(len(periods))]

    # -- GetPointsAnalytics --------------------------------------------------------------

    def earnings(
        self, system_key: str, periods: Sequence[Span], top: int, first_days: int
    ) -> EarningsTotals:
        start, end = periods[0][0], periods[-1][1]
        in_window = (
            ledger.c.system_key == system_key,
            ledger.c.create_time >= start,
            ledger.c.create_time < end,
        )
        earning = or_(ledger.c.type == AWARD, and_(ledger.c.type == REVERSAL, ledger.c.amount < 0))
        is_award = case((ledger.c.type == AWARD, 1), else_=0)
        earner = case((ledger.c.type == AWARD, ledger.c.user_id))
        period = self._period_of(ledger.c.create_time, periods).label("period")

        per_period = self._rows(
            select(
                period,
                func.sum(ledger.c.amount).label("points"),
                func.count(func.distinct(earner)).label("users"),
            )
            .where(*in_window, earning)
            .group_by(period)
        )
        by_period = {int(r["period"]): (int(r["points"]), int(r["users"])) for r in per_period}

        points = func.sum(ledger.c.amount)
        top_earners = self._rows(
            select(ledger.c.user_id, points.label("points"))
            .where(*in_window, earning)
            .group_by(ledger.c.user_id)
            .having(points > 0)
            .order_by(points.desc(), ledger.c.user_id)
            .limit(top)
        )

        # New users: first entry in the system (of any type) inside the window. Only
        # users with an entry in the window can be; their first is found by user.
        active = select(ledger.c.user_id).where(*in_window).distinct()
        firsts = (
            select(ledger.c.user_id, func.min(ledger.c.create_time).label("first"))
            .where(ledger.c.system_key == system_key, ledger.c.user_id.in_(active))
            .group_by(ledger.c.user_id)
            .having(func.min(ledger.c.create_time) >= start)
            .cte("firsts")
        )
        earned_early = (
            select(func.coalesce(func.sum(ledger.c.amount), 0))
            .select_from(ledger.join(firsts, ledger.c.user_id == firsts.c.user_id))
            .where(
                ledger.c.system_key == system_key,
                earning,
                ledger.c.create_time < self._plus_days(firsts.c.first, first_days),
            )
            .scalar_subquery()
        )
        newcomers = select(func.count().label("users"), earned_early.label("points")).select_from(
            firsts
        )
        (new,) = self._rows(newcomers)  # one statement: `firsts` is computed once

        # Per trigger: a reversal counts against the trigger of the award it reverses.
        original = ledger.alias("original")
        trigger = func.coalesce(original.c.trigger_id, ledger.c.trigger_id).label("trigger_id")
        awards = func.sum(is_award)
        per_trigger = self._rows(
            select(trigger, awards.label("awards"), func.sum(ledger.c.amount).label("points"))
            .select_from(
                ledger.outerjoin(
                    original,
                    and_(
                        ledger.c.type == REVERSAL,
                        original.c.user_id == ledger.c.user_id,
                        original.c.id == ledger.c.reverses_entry_id,
                    ),
                )
            )
            .where(*in_window, earning)
            .group_by(trigger)
        )
        return EarningsTotals(
            per_period=[by_period.get(i, (0, 0)) for i in range(len(periods))],
            top_earners=[(r["user_id"], int(r["points"])) for r in top_earners],
            new_users=int(new["users"]),
            first_days_points=int(new["points"] or 0),
            per_trigger=[
                (r["trigger_id"], int(r["awards"]), int(r["points"])) for r in per_trigger
            ],
        )

    # -- periods -------------------------------------------------------------------------

    def _period_of(self, at: ColumnElement[datetime], periods: Sequence[Span]) -> Any:
        """The index of the period (of these contiguous spans) holding `at`, for a time
        known to be inside them."""
        starts = [lo for lo, _hi in periods]
        if self.postgres:
            bounds = bindparam(
                "period_starts", starts, type_=postgresql.ARRAY(postgresql.TIMESTAMP(timezone=True))
            )
            return func.width_bucket(at, bounds) - 1
        table = (
            values(column("idx", Integer), column("lo", UTCDateTime()), name="periods")
            .data(list(enumerate(starts)))
            .cte("periods")
        )
        return select(func.max(table.c.idx)).where(table.c.lo <= at).scalar_subquery()

    def _plus_days(self, at: Any, days: int) -> Any:
        """`at` plus whole days, exactly. SQLite keeps times as text
        'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) and its date functions keep milliseconds, so
        the last three digits are carried over as they are."""
        if self.postgres:
            return at + literal_column(f"interval '{int(days)} days'")
        moved = func.strftime("%Y-%m-%d %H:%M:%f", at, f"+{int(days)} days")
        return moved.op("||")(func.substr(at, 24, 3))
