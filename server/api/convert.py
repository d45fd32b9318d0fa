"""Protobuf <-> domain conversions, and nothing else.

Unknown enum numbers and other shapes the domain cannot hold are refused here with a
ValidationFailed naming the field, so the domain only ever sees values it understands.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Generic, TypeVar, cast, overload

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from server.domain import commands
from server.domain.errors import FieldViolation, ValidationFailed
from server.domain.model import (
    Attributes,
    Balance,
    Boost,
    BoostStatus,
    EntryType,
    IntervalUnit,
    JsonObject,
    LedgerEntry,
    Level,
    LevelBasis,
    LevelChange,
    PointsSystem,
    Rounding,
    Trigger,
    TriggerStatus,
    TriggerType,
    User,
    UserProfile,
)
from server.domain.results import EventResult
from tally.v1 import boosts_pb2, common_pb2, points_pb2

E = TypeVar("E", bound=Enum)
P = TypeVar("P", bound=int)


class EnumMap(Generic[P, E]):
    """A proto enum and a domain enum, mapped both ways (UNSPECIFIED, 0, maps to None)."""

    def __init__(self, pairs: Mapping[P, E]) -> None:
        self._domain = dict(pairs)
        self._proto = {member: number for number, member in pairs.items()}

    def to_domain(self, value: int, field: str) -> E | None:
        """The domain value of a proto enum number; an unknown number is bad input."""
        if value == 0:
            return None
        try:
            return self._domain[cast(P, value)]
        except KeyError:
            raise ValidationFailed([FieldViolation(field, f"unknown enum value {value}")]) from None

    def to_proto(self, value: E) -> P:
        return self._proto[value]


LEVEL_BASIS: EnumMap[points_pb2.LevelBasis, LevelBasis] = EnumMap(
    {
        points_pb2.LEVEL_BASIS_BALANCE: LevelBasis.BALANCE,
        points_pb2.LEVEL_BASIS_LIFETIME_EARNED: LevelBasis.LIFETIME_EARNED,
    }
)
ENTRY_TYPE: EnumMap[common_pb2.EntryType, EntryType] = EnumMap(
    {
        common_pb2.ENTRY_TYPE_AWARD: EntryType.AWARD,
        common_pb2.ENTRY_TYPE_DEDUCT: EntryType.DEDUCT,
        common_pb2.ENTRY_TYPE_EXPIRE: EntryType.EXPIRE,
        common_pb2.ENTRY_TYPE_REVERSAL: EntryType.REVERSAL,
    }
)

TRIGGER_TYPE: EnumMap[points_pb2.TriggerType, TriggerType] = EnumMap(
    {
        points_pb2.TRIGGER_TYPE_EVENT: TriggerType.EVENT,
        points_pb2.TRIGGER_TYPE_METRIC: TriggerType.METRIC,
        points_pb2.TRIGGER_TYPE_USER_IDENTIFIED: TriggerType.USER_IDENTIFIED,
        points_pb2.TRIGGER_TYPE_TIME_INTERVAL: TriggerType.TIME_INTERVAL,
    }
)
TRIGGER_STATUS: EnumMap[points_pb2.TriggerStatus, TriggerStatus] = EnumMap(
    {
        points_pb2.TRIGGER_STATUS_INACTIVE: TriggerStatus.INACTIVE,
        points_pb2.TRIGGER_STATUS_ACTIVE: TriggerStatus.ACTIVE,
        points_pb2.TRIGGER_STATUS_ARCHIVED: TriggerStatus.ARCHIVED,
    }
)
INTERVAL_UNIT: EnumMap[points_pb2.IntervalUnit, IntervalUnit] = EnumMap(
    {
        points_pb2.INTERVAL_UNIT_MINUTES: IntervalUnit.MINUTES,
        points_pb2.INTERVAL_UNIT_HOURS: IntervalUnit.HOURS,
        points_pb2.INTERVAL_UNIT_DAYS: IntervalUnit.DAYS,
    }
)

ROUNDING: EnumMap[boosts_pb2.Rounding, Rounding] = EnumMap(
    {
        boosts_pb2.ROUNDING_DOWN: Rounding.DOWN,
        boosts_pb2.ROUNDING_UP: Rounding.UP,
        boosts_pb2.ROUNDING_NEAREST: Rounding.NEAREST,
    }
)
BOOST_STATUS: EnumMap[boosts_pb2.BoostStatus, BoostStatus] = EnumMap(
    {
        boosts_pb2.BOOST_STATUS_SCHEDULED: BoostStatus.SCHEDULED,
        boosts_pb2.BOOST_STATUS_ACTIVE: BoostStatus.ACTIVE,
        boosts_pb2.BOOST_STATUS_ENDED: BoostStatus.ENDED,
        boosts_pb2.BOOST_STATUS_ARCHIVED: BoostStatus.ARCHIVED,
    }
)


# -- scalars -----------------------------------------------------------------------------


def time_in(message: Message, field: str, path: str = "") -> datetime | None:
    """A Timestamp field as an aware UTC datetime, or None when unset; `path` names the
    field in errors (default: `field`)."""
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise ValidationFailed(
            [FieldViolation(path or field, "must be a valid timestamp (years 0001-9999)")]
        ) from None


def duration_in(message: Message, field: str) -> timedelta | None:
    """A Duration field as a timedelta, or None when unset."""
    if not message.HasField(field):
        return None
    value: duration_pb2.Duration = getattr(message, field)
    try:
        return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
    except OverflowError:
        raise ValidationFailed([FieldViolation(field, "is out of range")]) from None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_out(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """An aware datetime as a Timestamp, exactly (timedelta arithmetic: no float rounding,
    right before 1970 too), and three times faster than Timestamp.FromDatetime."""
    if value is None:
        return None
    since = value - EPOCH
    return timestamp_pb2.Timestamp(
        seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000
    )


def decimal_in(value: float) -> Decimal:
    """A double as the decimal it was written as (its shortest form: 0.1 is 0.1), so
    that sums of many fractional values do not drift; NaN and infinities pass through
    for validation to refuse."""
    return Decimal(repr(value)) if value == value and abs(value) != float("inf") else Decimal(value)


def decimal_out(value: Decimal) -> float:
    return float(value)


def struct_in(message: Message, field: str, path: str = "") -> JsonObject:
    """A Struct field as a dict; `path` names the field in errors (default: `field`)."""
    if not message.HasField(field):
        return {}
    try:
        return json_format.MessageToDict(getattr(message, field))
    except ValueError as exc:  # NaN/Infinity, or a Value with no kind set
        violation = FieldViolation(path or field, f"must be JSON: {str(exc)[:100]}")
        raise ValidationFailed([violation]) from None


def struct_out(value: JsonObject) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


# -- resources ---------------------------------------------------------------------------


def user_in(message: common_pb2.User) -> UserProfile:
    """Profile fields are set only when given (non-empty)."""
    return UserProfile(
        id=message.id,
        display_name=message.display_name or None,
        email=message.email or None,
        attributes=dict(message.attributes) or None,
    )


def user_out(user: User) -> common_pb2.User:
    return common_pb2.User(
        id=user.id,
        display_name=user.display_name,
        email=user.email,
        attributes=user.attributes,
        create_time=time_out(user.create_time),
    )


def system_out(system: PointsSystem, triggers: Iterable[Trigger] = ()) -> points_pb2.PointsSystem:
    return points_pb2.PointsSystem(
        key=system.key,
        name=system.name,
        description=system.description,
        badge_url=system.badge_url,
        max_points=system.max_points,
        level_basis=LEVEL_BASIS.to_proto(system.level_basis),
        create_time=time_out(system.create_time),
        update_time=time_out(system.update_time),
        triggers=[trigger_out(t) for t in triggers],
    )


def entry_out(entry: LedgerEntry) -> common_pb2.LedgerEntry:
    """An entry as a message. The fields most entries leave empty are set only when they
    are not: every field given to the constructor costs, and streams convert entries by
    the hundred thousand."""
    message = common_pb2.LedgerEntry(
        id=entry.id,
        sequence=entry.sequence,
        system_key=entry.system_key,
        user_id=entry.user_id,
        type=ENTRY_TYPE.to_proto(entry.type),
        amount=entry.amount,
        base_amount=entry.base_amount,
        multiplier=float(entry.multiplier),
        balance_after=entry.balance_after,
        reason=entry.reason,
        idempotency_key=entry.idempotency_key,
        create_time=time_out(entry.create_time),
    )
    if entry.boost_ids:
        message.boost_ids.extend(entry.boost_ids)
    if entry.capped:
        message.capped = True
    if entry.metadata:
        message.metadata.CopyFrom(struct_out(entry.metadata))
    if entry.trigger_id:
        message.trigger_id = entry.trigger_id
    if entry.event_type:
        message.event_type = entry.event_type
    expire_time = time_out(entry.expire_time)
    if expire_time is not None:
        message.expire_time.CopyFrom(expire_time)
    if entry.reverses_entry_id:
        message.reverses_entry_id = entry.reverses_entry_id
    return message


def level_in(message: common_pb2.Level) -> commands.LevelFields:
    """The fields a caller writes of a Level."""
    return commands.LevelFields(
        key=message.key,
        name=message.name,
        description=message.description,
        badge_url=message.badge_url,
        points=message.points,
    )


@overload
def level_out(level: Level) -> common_pb2.Level: ...
@overload
def level_out(level: Level | None) -> common_pb2.Level | None: ...
def level_out(level: Level | None) -> common_pb2.Level | None:
    if level is None:
        return None
    return common_pb2.Level(
        id=level.id,
        system_key=level.system_key,
        key=level.key,
        name=level.name,
        description=level.description,
        badge_url=level.badge_url,
        points=level.points,
    )


def level_change_out(change: LevelChange | None) -> common_pb2.LevelChange | None:
    if change is None:
        return None
    return common_pb2.LevelChange(
        sequence=change.sequence,
        system_key=change.system_key,
        user_id=change.user_id,
        previous_level=level_out(change.previous_level),
        new_level=level_out(change.new_level),
        entry_id=change.entry_id,
        create_time=time_out(change.create_time),
    )


def balance_out(balance: Balance) -> common_pb2.Balance:
    return common_pb2.Balance(
        system_key=balance.system_key,
        user_id=balance.user_id,
        balance=balance.balance,
        total_earned=balance.total_earned,
        total_spent=balance.total_spent,
        total_expired=balance.total_expired,
        level=level_out(balance.level),
        max_points=balance.max_points,
        last_earned_time=time_out(balance.last_earned_time),
    )


def attributes_in(items: Iterable[common_pb2.Attribute]) -> Attributes:
    return tuple((item.key, item.value) for item in items)


def attributes_out(attributes: Attributes) -> list[common_pb2.Attribute]:
    return [common_pb2.Attribute(key=key, value=value) for key, value in attributes]


def trigger_in(message: points_pb2.Trigger, path: str) -> commands.TriggerFields:
    """The fields a caller writes of a Trigger (`path` names it in errors)."""
    return commands.TriggerFields(
        type=TRIGGER_TYPE.to_domain(message.type, f"{path}.type"),
        points=message.points,
        status=TRIGGER_STATUS.to_domain(message.status, f"{path}.status"),
        event_type=message.event_type,
        metric_threshold=decimal_in(message.metric_threshold),
        interval_unit=INTERVAL_UNIT.to_domain(message.interval_unit, f"{path}.interval_unit"),
        interval_count=message.interval_count,
        event_attributes=attributes_in(message.event_attributes),
        user_attributes=attributes_in(message.user_attributes),
    )


def trigger_out(trigger: Trigger) -> points_pb2.Trigger:
    return points_pb2.Trigger(
        id=trigger.id,
        system_key=trigger.system_key,
        type=TRIGGER_TYPE.to_proto(trigger.type),
        points=trigger.points,
        status=TRIGGER_STATUS.to_proto(trigger.status),
        event_type=trigger.event_type,
        metric_threshold=decimal_out(trigger.metric_threshold),
        interval_unit=(
            INTERVAL_UNIT.to_proto(trigger.interval_unit)
            if trigger.interval_unit
            else points_pb2.INTERVAL_UNIT_UNSPECIFIED
        ),
        interval_count=trigger.interval_count,
        event_attributes=attributes_out(trigger.event_attributes),
        user_attributes=attributes_out(trigger.user_attributes),
        create_time=time_out(trigger.create_time),
        update_time=time_out(trigger.update_time),
    )


def event_result_out(result: EventResult) -> points_pb2.RecordEventResponse:
    return points_pb2.RecordEventResponse(
        event_id=result.event_id,
        metric_total=decimal_out(result.metric_total),
        results={
            key: points_pb2.SystemEventResult(
                added=r.added,
                balance=balance_out(r.balance),
                awards=[
                    points_pb2.TriggerAward(entry=entry_out(e), trigger=trigger_out(t))
                    for e, t in r.awards
                ],
                level_change=level_change_out(r.level_change),
            )
            for key, r in result.results.items()
        },
        replayed=result.replayed,
    )


def boost_in(message: boosts_pb2.Boost, path: str) -> commands.BoostFields:
    """The fields a caller writes of a Boost (`path` names it in errors)."""
    return commands.BoostFields(
        user_id=message.user_id,
        name=message.name,
        multiplier=decimal_in(message.multiplier),
        rounding=ROUNDING.to_domain(message.rounding, f"{path}.rounding"),
        start_time=time_in(message, "start_time", f"{path}.start_time"),
        end_time=time_in(message, "end_time", f"{path}.end_time"),
        user_attributes=attributes_in(message.user_attributes),
    )


def boost_out(boost: Boost, now: datetime) -> boosts_pb2.Boost:
    return boosts_pb2.Boost(
        id=boost.id,
        system_key=boost.system_key,
        user_id=boost.user_id,
        name=boost.name,
        multiplier=decimal_out(boost.multiplier),
        rounding=ROUNDING.to_proto(boost.rounding),
        start_time=time_out(boost.start_time),
        end_time=time_out(boost.end_time),
        user_attributes=attributes_out(boost.user_attributes),
        status=BOOST_STATUS.to_proto(boost.status(now)),
        create_time=time_out(boost.create_time),
    )


def mask_fields(request: Message, resource: str, updatable: frozenset[str]) -> frozenset[str]:
    """The fields an update sets: its update_mask's paths, or, with no mask (AIP-134), every
    updatable field the resource message carries with a non-default value. `*` = all."""
    paths = list(request.update_mask.paths)  # type: ignore[attr-defined]
    if not paths:
        message = getattr(request, resource)
        return frozenset(f.name for f, _ in message.ListFields() if f.name in updatable)
    if "*" in paths:
        return updatable
    return frozenset(paths)


# A streamed message carries up to this many entries, or about this many bytes: one message
# per entry would cost more than reading the entries, and gRPC refuses messages over 4 MB.
CHUNK_ENTRIES = 500
CHUNK_BYTES = 1_000_000


def chunks(
    entries: Iterable[common_pb2.LedgerEntry],
) -> Iterator[list[common_pb2.LedgerEntry]]:
    """Group streamed entries into messages of bounded count and size, in order."""
    chunk: list[common_pb2.LedgerEntry] = []
    size = 0
    for entry in entries:
        entry_size = entry.ByteSize()
        if chunk and (len(chunk) >= CHUNK_ENTRIES or size + entry_size > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry_size
    if chunk:
        yield chunk
