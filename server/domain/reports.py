"""What analytics callers ask for (the live ledger feed, summaries, points analytics),
the rules their requests follow, and the calendar periods they are reported by.

Periods are counted in the caller's IANA time zone; the store aggregates by them as UTC
instants (`Period.start`, `Period.end`), computed here with zoneinfo, so that SQLite
(which has no time zone functions) and PostgreSQL bucket alike and DST is exact: a
period runs from local midnight of its first day to local midnight after its last, which
is 23 or 25 hours long across a DST change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.domain.validation import MAX_TRIGGER_FILTERS, Violations

DEFAULT_BUCKETS = 10
MAX_BUCKETS = 100
DEFAULT_TOP = 10
MAX_TOP = 100
MAX_PERIODS = 1000  # per call: about 2.7 years of days, 19 years of weeks
MAX_ZONE_CHARS = 64
FIRST_DAYS = timedelta(days=14)  # "points earned in a new user's first 14 days"


class Aggregation(Enum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"  # weeks start on Monday
    MONTHLY = "MONTHLY"


@dataclass(frozen=True)
class WatchLedger:
    system_key: str = ""  # empty = every system
    after_sequence: int = 0
    follow: bool = False


@dataclass(frozen=True)
class GetPointsSummary:
    system_key: str
    bucket_count: int = 0  # 0 = DEFAULT_BUCKETS
    user_attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Window:
    """Dates as the caller wrote them (`YYYY-MM-DD`), a period length and a time zone."""

    start_date: str
    end_date: str
    aggregation: Aggregation | None = None  # None = DAILY
    time_zone: str = ""  # empty = UTC


@dataclass(frozen=True)
class GetUserPointsSummary:
    system_key: str
    user_id: str
    window: Window


@dataclass(frozen=True)
class GetPointsAnalytics:
    system_key: str
    window: Window
    top: int = 0  # 0 = DEFAULT_TOP


@dataclass(frozen=True)
class Period:
    """One reported period: named by its calendar first day, covering [start, end)."""

    day: date
    start: datetime  # UTC
    end: datetime  # UTC


@dataclass(frozen=True)
class Periods:
    """A window's periods in order; they tile [first start, last end) without gaps."""

    items: list[Period] = field(default_factory=list)

    @property
    def start(self) -> datetime:
        return self.items[0].start

    @property
    def end(self) -> datetime:
        return self.items[-1].end


def period_start(day: date, aggregation: Aggregation) -> date:
    """The calendar first day of the period holding `day`."""
    if aggregation is Aggregation.WEEKLY:
        return day - timedelta(days=day.weekday())
    if aggregation is Aggregation.MONTHLY:
        return day.replace(day=1)
    return day


def _next_start(day: date, aggregation: Aggregation) -> date:
    if aggregation is Aggregation.WEEKLY:
        return day + timedelta(days=7)
    if aggregation is Aggregation.MONTHLY:
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day + timedelta(days=1)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which `day` begins in `zone`."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def periods(window: Window, v: Violations | None = None) -> Periods:
    """The window's periods, validated first (with the request's other violations in
    `v`): INVALID_ARGUMENT naming the field. The first and last may be cut by the
    window's dates; each keeps its calendar name."""
    start, end, zone = _checked(window, v or Violations())
    aggregation = window.aggregation or Aggregation.DAILY
    items: list[Period] = []
    day = start
    while day <= end:
        first = period_start(day, aggregation)
        after = min(_next_start(first, aggregation), end + timedelta(days=1))
        items.append(Period(first, local_midnight(day, zone), local_midnight(after, zone)))
        day = after
    return Periods(items)


def _checked(window: Window, v: Violations) -> tuple[date, date, ZoneInfo]:
    start = _date(v, "start_date", window.start_date)
    end = _date(v, "end_date", window.end_date)
    zone = _zone(v, "time_zone", window.time_zone or "UTC")
    if start is not None and end is not None:
        if end < start:
            v.add("end_date", "must not be before start_date")
        elif _count(start, end, window.aggregation or Aggregation.DAILY) > MAX_PERIODS:
            v.add("end_date", f"must leave at most {MAX_PERIODS} periods after start_date")
    v.raise_if_any()
    assert start is not None
    assert end is not None
    assert zone is not None
    return start, end, zone


def _count(start: date, end: date, aggregation: Aggregation) -> int:
    if aggregation is Aggregation.WEEKLY:
        return (period_start(end, aggregation) - period_start(start, aggregation)).days // 7 + 1
    if aggregation is Aggregation.MONTHLY:
        return (end.year - start.year) * 12 + end.month - start.month + 1
    return (end - start).days + 1


def _date(v: Violations, name: str, value: str) -> date | None:
    if not value:
        v.add(name, "is required (YYYY-MM-DD)")
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        parsed = date.fromisoformat(value)
    except ValueError:
        v.add(name, f"must be a date as YYYY-MM-DD, got {value[:20]!r}")
        return None
    if not date(1970, 1, 1) <= parsed <= date(9998, 12, 31):
        v.add(name, "must be between 1970-01-01 and 9998-12-31")
        return None
    return parsed


def _zone(v: Violations, name: str, value: str) -> ZoneInfo | None:
    try:
        if len(value) > MAX_ZONE_CHARS or "\x00" in value or value.startswith(("/", ".")):
            raise ValueError(value)
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        v.add(name, f"must be an IANA time zone such as 'Europe/Paris', got {value[:40]!r}")
        return None


def watch_ledger(cmd: WatchLedger) -> None:
    v = Violations()
    if cmd.system_key:
        v.system_key("system_key", cmd.system_key)
    if cmd.after_sequence < 0:
        v.add("after_sequence", f"must be 0 or more, got {cmd.after_sequence}")
    v.raise_if_any()


def points_summary(cmd: GetPointsSummary) -> None:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    if not 0 <= cmd.bucket_count <= MAX_BUCKETS:
        v.add("bucket_count", f"must be between 1 and {MAX_BUCKETS} (0 = {DEFAULT_BUCKETS})")
    # Each filter is a condition of the store's query (SQLite refuses past ~1000 of them).
    if len(cmd.user_attributes) > MAX_TRIGGER_FILTERS:
        v.add(
            "user_attributes",
            f"must have at most {MAX_TRIGGER_FILTERS} entries, got {len(cmd.user_attributes)}",
        )
    for index, (key, value) in enumerate(cmd.user_attributes[:MAX_TRIGGER_FILTERS]):
        v.attributes(f"user_attributes[{index}]", {key: value})
        if not key:
            v.add(f"user_attributes[{index}].key", "is required")
    v.raise_if_any()


def user_points_summary(cmd: GetUserPointsSummary) -> Periods:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    v.user_id("user_id", cmd.user_id)
    return periods(cmd.window, v)


def points_analytics(cmd: GetPointsAnalytics) -> Periods:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    if not 0 <= cmd.top <= MAX_TOP:
        v.add("top", f"must be between 1 and {MAX_TOP} (0 = {DEFAULT_TOP})")
    return periods(cmd.window, v)
