"""How triggers fire: which ones an event or a user sets off, how many times, and the
entry each firing writes. Pure arithmetic over exact decimals; nothing is looped that
can be computed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from server.domain import boosts as boosting
from server.domain.commands import TriggerFields
from server.domain.errors import FieldViolation, ValidationFailed
from server.domain.ledger import Account, Posting
from server.domain.model import (
    MAX_ENTRY_POINTS,
    Boost,
    LedgerEntry,
    Trigger,
    TriggerStatus,
    TriggerType,
    attributes_match,
)

matches = attributes_match


def made(
    fields: TriggerFields,
    *,
    system_key: str,
    status: TriggerStatus,
    now: datetime,
    trigger_id: str = "",
    version: int = 0,
) -> Trigger:
    """A trigger as a caller wrote it (valid fields), with the status given: saved by
    CreateTrigger, or a draft replayed by PreviewTriggers. It counts as activated `now`
    when ACTIVE."""
    assert fields.type is not None, "a valid trigger has a type"
    return Trigger(
        id=trigger_id,
        system_key=system_key,
        type=fields.type,
        points=fields.points,
        status=status,
        create_time=now,
        update_time=now,
        event_type=fields.event_type,
        metric_threshold=fields.metric_threshold,
        interval_unit=fields.interval_unit,
        interval_count=fields.interval_count,
        event_attributes=fields.event_attributes,
        user_attributes=fields.user_attributes,
        activate_time=now if status is TriggerStatus.ACTIVE else None,
        version=version,
    )


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
    boosts: Sequence[Boost] = (),
) -> LedgerEntry:
    """The entry of `times` firings of `trigger`: an award multiplied by the boosts that
    apply and cut by `max_points`, or a deduction of what is there, never below zero."""
    amount = trigger.points * times
    if amount > 0:
        return award(account, amount, posting, when=when, max_points=max_points, boosts=boosts)
    return account.take(-amount, posting, now=when)


def award(
    account: Account,
    amount: int,
    posting: Posting,
    *,
    when: datetime,
    max_points: int,
    boosts: Sequence[Boost],
    expire_time: datetime | None = None,
) -> LedgerEntry:
    """Credit `amount` times the boosts (rounded once), then cut by `max_points`."""
    boosted = boosting.multiply(amount, boosts)
    return account.award(
        boosted.amount,
        posting,
        now=when,
        max_points=max_points,
        base_amount=boosted.base_amount,
        multiplier=boosted.multiplier,
        boost_ids=boosted.boost_ids,
        expire_time=expire_time,
    )


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
