"""The stored form of each domain value, one per type: every field written out by its name.

Two places keep domain values as JSON, and both use these forms: the idempotency codec
(services/pipeline/codec.py), whose stored responses hold entries, balances, levels and
level changes, and the store (store/repositories/), whose level changes hold their levels
as JSON columns. The store's rows of entries, levels and level changes are the same
fields (`*_fields`: times as datetimes, which the store's drivers write); the JSON forms
(`*_out`) write times as ISO 8601 text. Readers (`*_in`) give a field a stored form lacks
its default, so that a form written before its type gained the field still loads.

Plain Python: no store, no protobuf.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from server.domain.ledger import ONE
from server.domain.model import Balance, EntryType, LedgerEntry, Level, LevelChange

ENTRY_TYPES = {t.value: t for t in EntryType}


def time_out(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def time_in(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# -- entries ------------------------------------------------------------------------------


def entry_fields(e: LedgerEntry) -> dict[str, Any]:
    """An entry's fields by name, times as datetimes (a fresh dict: callers may change it)."""
    return {
        "id": e.id,
        "sequence": e.sequence,
        "system_key": e.system_key,
        "user_id": e.user_id,
        "type": e.type.value,
        "amount": e.amount,
        "base_amount": e.base_amount,
        "multiplier": str(e.multiplier),
        "boost_ids": list(e.boost_ids),
        "capped": e.capped,
        "balance_after": e.balance_after,
        "reason": e.reason,
        "metadata": e.metadata,
        "idempotency_key": e.idempotency_key,
        "trigger_id": e.trigger_id,
        "event_type": e.event_type,
        "expire_time": e.expire_time,
        "reverses_entry_id": e.reverses_entry_id,
        "create_time": e.create_time,
    }


def entry_out(e: LedgerEntry) -> dict[str, Any]:
    fields = entry_fields(e)
    fields["expire_time"] = time_out(e.expire_time)
    fields["create_time"] = e.create_time.isoformat()
    return fields


def entry_in(d: Mapping[str, Any]) -> LedgerEntry:
    multiplier = d.get("multiplier", "1")
    return LedgerEntry(
        id=d["id"],
        sequence=d.get("sequence", 0),
        system_key=d["system_key"],
        user_id=d["user_id"],
        type=ENTRY_TYPES[d["type"]],
        amount=d["amount"],
        base_amount=d.get("base_amount", d["amount"]),
        multiplier=ONE if multiplier == "1" else Decimal(multiplier),
        boost_ids=tuple(d.get("boost_ids", ())),
        capped=d.get("capped", False),
        balance_after=d["balance_after"],
        reason=d.get("reason", ""),
        metadata=d.get("metadata", {}),
        idempotency_key=d.get("idempotency_key", ""),
        trigger_id=d.get("trigger_id", ""),
        event_type=d.get("event_type", ""),
        expire_time=time_in(d.get("expire_time")),
        reverses_entry_id=d.get("reverses_entry_id", ""),
        create_time=datetime.fromisoformat(d["create_time"]),
    )


# -- levels and level changes -------------------------------------------------------------


def level_fields(level: Level) -> dict[str, Any]:
    """A level's fields by name: its JSON form, and the store's row of it."""
    return {
        "id": level.id,
        "system_key": level.system_key,
        "key": level.key,
        "name": level.name,
        "description": level.description,
        "badge_url": level.badge_url,
        "points": level.points,
    }


def level_of(d: Mapping[str, Any]) -> Level:
    """A level from its fields by name (its JSON form, or the store's row of it)."""
    return Level(
        id=d["id"],
        system_key=d["system_key"],
        key=d["key"],
        name=d.get("name", ""),
        description=d.get("description", ""),
        badge_url=d.get("badge_url", ""),
        points=d["points"],
    )


def level_out(level: Level | None) -> dict[str, Any] | None:
    return None if level is None else level_fields(level)


def level_in(d: Mapping[str, Any] | None) -> Level | None:
    return None if d is None else level_of(d)


def level_change_fields(change: LevelChange) -> dict[str, Any]:
    """A level change's fields by name, its levels in their JSON form and its time as a
    datetime (a fresh dict: callers may change it)."""
    return {
        "sequence": change.sequence,
        "system_key": change.system_key,
        "user_id": change.user_id,
        "previous_level": level_out(change.previous_level),
        "new_level": level_out(change.new_level),
        "entry_id": change.entry_id,
        "create_time": change.create_time,
    }


def level_change_out(change: LevelChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    fields = level_change_fields(change)
    fields["create_time"] = change.create_time.isoformat()
    return fields


def level_change_in(d: Mapping[str, Any] | None) -> LevelChange | None:
    if d is None:
        return None
    return LevelChange(
        system_key=d["system_key"],
        user_id=d["user_id"],
        previous_level=level_in(d.get("previous_level")),
        new_level=level_in(d.get("new_level")),
        entry_id=d["entry_id"],
        create_time=datetime.fromisoformat(d["create_time"]),
        sequence=d.get("sequence", 0),
    )


# -- balances -----------------------------------------------------------------------------


def balance_out(b: Balance) -> dict[str, Any]:
    return {
        "system_key": b.system_key,
        "user_id": b.user_id,
        "balance": b.balance,
        "total_earned": b.total_earned,
        "total_spent": b.total_spent,
        "total_expired": b.total_expired,
        "max_points": b.max_points,
        "last_earned_time": time_out(b.last_earned_time),
        "level": level_out(b.level),
    }


def balance_in(d: Mapping[str, Any]) -> Balance:
    return Balance(
        system_key=d["system_key"],
        user_id=d["user_id"],
        balance=d["balance"],
        total_earned=d["total_earned"],
        total_spent=d["total_spent"],
        total_expired=d["total_expired"],
        max_points=d.get("max_points", 0),
        last_earned_time=time_in(d.get("last_earned_time")),
        level=level_in(d.get("level")),
    )
