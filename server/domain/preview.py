"""Trigger preview: what draft or saved triggers would have given, replayed over recorded
events, so that points can be balanced before the triggers go live. Pure: the events come
in, in the order they were recorded; figures come out.

Each user starts the window at zero preview points and with their running totals as they
stood when the window opened (the total before their first event of each type in it, in
each reach: see access.Reach; a reach with no event in the window adds nothing).
Triggers fire by the same rules as live ones (domain/triggers.py): attribute filters,
METRIC thresholds crossed, `max_points` cutting awards, deductions taking what is there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from server.domain import triggers
from server.domain.model import Event, Trigger


@dataclass(frozen=True)
class Bucket:
    low: int
    high: int
    users: int


@dataclass
class TriggerFigures:
    label: str  # "triggers[i]" for a draft, the id of a saved trigger
    awards: int = 0
    points: int = 0


@dataclass
class Preview:
    per_trigger: list[TriggerFigures]
    events: int = 0
    points_by_user: dict[str, int] = field(default_factory=dict)

    @property
    def users(self) -> int:
        """Users who would have earned something."""
        return sum(1 for points in self.points_by_user.values() if points > 0)

    @property
    def awards(self) -> int:
        return sum(t.awards for t in self.per_trigger)

    @property
    def points(self) -> int:
        return sum(t.points for t in self.per_trigger)

    def distribution(self, bucket_count: int) -> list[Bucket]:
        return histogram(list(self.points_by_user.values()), bucket_count)


def histogram(values: Sequence[int], bucket_count: int) -> list[Bucket]:
    """{0..0}, then `bucket_count` buckets of width ceil(max / bucket_count) (at least 1)
    from 1 upwards, as GetPointsSummary shapes them."""
    top = max(values, default=0)
    width = max(1, -(-top // bucket_count))
    counts = [0] * (bucket_count + 1)
    for value in values:
        index = 0 if value <= 0 else min(bucket_count, (value - 1) // width + 1)
        counts[index] += 1
    buckets = [Bucket(0, 0, counts[0])]
    for i in range(1, bucket_count + 1):
        buckets.append(Bucket((i - 1) * width + 1, i * width, counts[i]))
    return buckets


class Replay:
    """Replays events one by one through a fixed set of triggers."""

    def __init__(self, labelled: Sequence[tuple[str, Trigger]], max_points: int) -> None:
        self.labelled = labelled
        self.max_points = max_points
        self.preview = Preview([TriggerFigures(label) for label, _ in labelled])
        # (user, event type) -> reach -> running total: the system's total is their sum.
        self._totals: dict[tuple[str, str], dict[str, Decimal]] = {}

    def event(self, event: Event, user_attributes: Mapping[str, str]) -> None:
        self.preview.events += 1
        reaches = self._totals.setdefault((event.user_id, event.event_type), {})
        reaches.setdefault(event.reach, event.total_after - event.value)
        before = sum(reaches.values(), Decimal(0))
        reaches[event.reach] = event.total_after
        after = before + event.value
        balance = self.preview.points_by_user.setdefault(event.user_id, 0)
        for figures, (_label, trigger) in zip(self.preview.per_trigger, self.labelled, strict=True):
            if trigger.event_type != event.event_type or not (
                triggers.matches(trigger.event_attributes, event.attributes)
                and triggers.matches(trigger.user_attributes, user_attributes)
            ):
                continue
            times = triggers.times_fired(trigger, before, after)
            if times == 0:
                continue
            amount = trigger.points * times
            if amount > 0 and self.max_points > 0:
                amount = max(0, min(amount, self.max_points - balance))
            elif amount < 0:
                amount = -min(-amount, balance)
            balance += amount
            figures.awards += 1
            figures.points += amount
        self.preview.points_by_user[event.user_id] = balance


def replay(
    labelled: Sequence[tuple[str, Trigger]],
    max_points: int,
    events: Iterable[tuple[Event, Mapping[str, str]]],
) -> Preview:
    run = Replay(labelled, max_points)
    for event, user_attributes in events:
        run.event(event, user_attributes)
    return run.preview
