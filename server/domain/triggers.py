"""How triggers fire: which ones an event or a user sets off, how many times, and the
entry each firing writes. Pure arithmetic over exact decimals; nothing is looped that
can be computed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from server.domain.errors import FieldViolation, ValidationFailed
from server.domain.ledger import Account, Posting
from server.domain.model import Attributes, LedgerEntry, Trigger, TriggerType

# One trigger entry may move at most this many points (METRIC firings multiply `points`).
MAX_ENTRY_POINTS = 10**12


def matches(required: Attributes, present: Mapping[str, str]) -> bool:
    """All of the filter's attributes are present with these values."""
    return all(present.get(key) == value for key, value in required)


def times_fired(trigger: Trigger, before: Decimal, after: Decimal) -> int:
    """How many times an event that took the running total from `before` to `after`
    fires the trigger: once for EVENT, one per threshold crossed for METRIC."""
    if trigger.type is TriggerType.EVENT:
        return 1
    threshold = trigger.metric_threshold
    crossed = _floor(after / threshold) - _floor(before / threshold)
    return max(0, crossed)


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def check_entry_size(trigger: Trigger, times: int) -> None:
    """A METRIC entry of more than MAX_ENTRY_POINTS points: the event's `value` is too big."""
    if abs(trigger.points) * times > MAX_ENTRY_POINTS:
        raise ValidationFailed(
            [
                FieldViolation(
                    "value",
                    f"fires trigger {trigger.id} {times} times, an entry of more than "
                    f"{MAX_ENTRY_POINTS} points",
                )
            ]
        )


def fire(
    account: Account,
    trigger: Trigger,
    times: int,
    posting: Posting,
    *,
    when: datetime,
    max_points: int,
) -> LedgerEntry:
    """The entry of `times` firings of `trigger`: an award cut by `max_points`, or a
    deduction of what is there, never below zero."""
    amount = trigger.points * times
    if amount > 0:
        return account.award(amount, posting, now=when, max_points=max_points)
    return account.take(-amount, posting, now=when)


def next_due(trigger: Trigger, account: Account) -> datetime | None:
    """When a TIME_INTERVAL trigger next fires for this account: one interval after its
    last firing, or after the later of the trigger's activation and the account's first
    entry (its creation)."""
    if trigger.activate_time is None:
        return None
    start = trigger.activate_time
    if account.create_time is not None and account.create_time > start:
        start = account.create_time
    last = account.interval_marks.get(trigger.id)
    if last is not None and last >= start:
        start = last
    return start + trigger.interval


def skip_to(due: datetime, interval: timedelta, limit: datetime) -> datetime:
    """The last due time, from `due` on in steps of `interval`, at or before `limit`."""
    steps = (limit - due) // interval
    return due + interval * steps
