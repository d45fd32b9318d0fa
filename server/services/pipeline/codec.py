"""The stored form of a write's response, and the fingerprint of its request.

An idempotency key remembers the response it got as versioned JSON with every field
written out by name (`FORMAT` is its version): explicit, so that a response stored
today still loads after the result types gain fields (missing fields take their
defaults), and fast, so that remembering a key costs little on the write path. A request
is fingerprinted by hashing its fields as canonical JSON (sorted keys, exact times).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from server.domain.ledger import ONE
from server.domain.model import (
    Balance,
    EntryType,
    LedgerEntry,
    Level,
    LevelChange,
    Trigger,
)
from server.domain.results import EventResult, SystemEventResult, WriteResult

FORMAT = 1
ENTRY_TYPES = {t.value: t for t in EntryType}


def dumps(result: WriteResult | EventResult) -> str:
    document: dict[str, Any]
    if isinstance(result, EventResult):
        document = {
            "v": FORMAT,
            "kind": "event",
            "event_id": result.event_id,
            "metric_total": str(result.metric_total),
            "results": {key: _system_result_out(r) for key, r in result.results.items()},
        }
    else:
        document = {
            "v": FORMAT,
            "entry": _entry_out(result.entry),
            "balance": _balance_out(result.balance),
            "level_change": _change_out(result.level_change),
            "replayed": result.replayed,
        }
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def loads(text: str, triggers: Mapping[str, Trigger] | None = None) -> WriteResult | EventResult:
    """A stored response; `triggers` (by id) resolve the triggers an event's response
    names by id alone (triggers are configuration, and never deleted)."""
    document = json.loads(text)
    if document.get("v") != FORMAT:
        raise ValueError(f"stored response format {document.get('v')!r} is not {FORMAT}")
    if document.get("kind") == "event":
        return EventResult(
            event_id=document["event_id"],
            metric_total=Decimal(document["metric_total"]),
            results={
                k: _system_result_in(r, triggers or {}) for k, r in document["results"].items()
            },
        )
    return WriteResult(
        entry=_entry_in(document["entry"]),
        balance=_balance_in(document["balance"]),
        level_change=_change_in(document.get("level_change")),
        replayed=document.get("replayed", False),
    )


def fingerprint(operation: str, command: Any) -> str:
    """A hash of what a request asks, leaving out the key itself and the dry-run flag;
    '' for a request without a key, which nothing will be compared with."""
    if not command.idempotency_key:
        return ""
    names = _compared_fields(type(command))  # type: ignore[arg-type]
    values = [operation, *(getattr(command, name) for name in names)]
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(canonical.encode()).hexdigest()


@functools.cache
def _compared_fields(command_type: type) -> tuple[str, ...]:
    skipped = {"idempotency_key", "validate_only"}
    return tuple(f.name for f in dataclasses.fields(command_type) if f.name not in skipped)


def _canonical(value: Any) -> Any:
    """JSON for what json cannot write itself: exact times, enums, sets, dataclasses."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (frozenset, set)):
        return sorted(_canonical(v) if isinstance(v, Enum) else v for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, f.name) for f in dataclasses.fields(value)]
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


# -- fields, one by one -------------------------------------------------------------------


def _time_out(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_in(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _entry_out(e: LedgerEntry) -> dict[str, Any]:
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
        "expire_time": _time_out(e.expire_time),
        "reverses_entry_id": e.reverses_entry_id,
        "create_time": e.create_time.isoformat(),
    }


def _entry_in(d: dict[str, Any]) -> LedgerEntry:
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
        expire_time=_time_in(d.get("expire_time")),
        reverses_entry_id=d.get("reverses_entry_id", ""),
        create_time=datetime.fromisoformat(d["create_time"]),
    )


def _balance_out(b: Balance) -> dict[str, Any]:
    return {
        "system_key": b.system_key,
        "user_id": b.user_id,
        "balance": b.balance,
        "total_earned": b.total_earned,
        "total_spent": b.total_spent,
        "total_expired": b.total_expired,
        "max_points": b.max_points,
        "last_earned_time": _time_out(b.last_earned_time),
        "level": _level_out(b.level),
    }


def _balance_in(d: dict[str, Any]) -> Balance:
    return Balance(
        system_key=d["system_key"],
        user_id=d["user_id"],
        balance=d["balance"],
        total_earned=d["total_earned"],
        total_spent=d["total_spent"],
        total_expired=d["total_expired"],
        max_points=d.get("max_points", 0),
        last_earned_time=_time_in(d.get("last_earned_time")),
        level=_level_in(d.get("level")),
    )


def _level_out(level: Level | None) -> dict[str, Any] | None:
    if level is None:
        return None
    return {
        "id": level.id,
        "system_key": level.system_key,
        "key": level.key,
        "name": level.name,
        "description": level.description,
        "badge_url": level.badge_url,
        "points": level.points,
    }


def _level_in(d: dict[str, Any] | None) -> Level | None:
    if d is None:
        return None
    return Level(
        id=d["id"],
        system_key=d["system_key"],
        key=d["key"],
        name=d.get("name", ""),
        description=d.get("description", ""),
        badge_url=d.get("badge_url", ""),
        points=d["points"],
    )


def _change_out(change: LevelChange | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {
        "sequence": change.sequence,
        "system_key": change.system_key,
        "user_id": change.user_id,
        "previous_level": _level_out(change.previous_level),
        "new_level": _level_out(change.new_level),
        "entry_id": change.entry_id,
        "create_time": change.create_time.isoformat(),
    }


def _change_in(d: dict[str, Any] | None) -> LevelChange | None:
    if d is None:
        return None
    return LevelChange(
        system_key=d["system_key"],
        user_id=d["user_id"],
        previous_level=_level_in(d.get("previous_level")),
        new_level=_level_in(d.get("new_level")),
        entry_id=d["entry_id"],
        create_time=datetime.fromisoformat(d["create_time"]),
        sequence=d.get("sequence", 0),
    )


def _system_result_out(r: SystemEventResult) -> dict[str, Any]:
    return {
        "added": r.added,
        "balance": _balance_out(r.balance),
        # a trigger by id: it is configuration, and its whole form would more than double
        # the stored response of every event (a row PostgreSQL would then compress)
        "awards": [{"entry": _entry_out(e), "trigger_id": t.id} for e, t in r.awards],
        "level_change": _change_out(r.level_change),
    }


def _system_result_in(d: dict[str, Any], triggers: Mapping[str, Trigger]) -> SystemEventResult:
    return SystemEventResult(
        added=d["added"],
        balance=_balance_in(d["balance"]),
        awards=tuple((_entry_in(a["entry"]), triggers[a["trigger_id"]]) for a in d["awards"]),
        level_change=_change_in(d.get("level_change")),
    )
