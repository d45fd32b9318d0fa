"""The stored form of a write's response, and the fingerprint of its request.

An idempotency key remembers the response it got as versioned JSON with every field
written out by name (`FORMAT` is its version; each value in its one stored form,
domain/stored_json.py): explicit, so that a response stored today still loads after the
result types gain fields (missing fields take their defaults), and fast, so that
remembering a key costs little on the write path. A request is fingerprinted by hashing
its fields as canonical JSON (sorted keys, exact times).
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

from server.domain.model import Trigger
from server.domain.results import EventResult, SystemEventResult, WriteResult
from server.domain.stored_json import (
    balance_in,
    balance_out,
    entry_in,
    entry_out,
    level_change_in,
    level_change_out,
)

FORMAT = 1


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
            "entry": entry_out(result.entry),
            "balance": balance_out(result.balance),
            "level_change": level_change_out(result.level_change),
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
        entry=entry_in(document["entry"]),
        balance=balance_in(document["balance"]),
        level_change=level_change_in(document.get("level_change")),
        replayed=document.get("replayed", False),
    )


def fingerprint(operation: str, command: Any) -> str:
    """A hash of what a request asks, leaving out the key itself, the dry-run flag and
    fields that only say where to look (metadata fingerprinted=False); '' for a request
    without a key, which nothing will be compared with."""
    if not command.idempotency_key:
        return ""
    names = _compared_fields(type(command))  # type: ignore[arg-type]
    values = [operation, *(getattr(command, name) for name in names)]
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(canonical.encode()).hexdigest()


@functools.cache
def _compared_fields(command_type: type) -> tuple[str, ...]:
    skipped = {"idempotency_key", "validate_only"}
    return tuple(
        f.name
        for f in dataclasses.fields(command_type)
        if f.name not in skipped and f.metadata.get("fingerprinted", True)
    )


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


def _system_result_out(r: SystemEventResult) -> dict[str, Any]:
    return {
        "added": r.added,
        "balance": balance_out(r.balance),
        # a trigger by id: it is configuration, and its whole form would more than double
        # the stored response of every event (a row PostgreSQL would then compress)
        "awards": [{"entry": entry_out(e), "trigger_id": t.id} for e, t in r.awards],
        "level_change": level_change_out(r.level_change),
    }


def _system_result_in(d: dict[str, Any], triggers: Mapping[str, Trigger]) -> SystemEventResult:
    return SystemEventResult(
        added=d["added"],
        balance=balance_in(d["balance"]),
        awards=tuple((entry_in(a["entry"]), triggers[a["trigger_id"]]) for a in d["awards"]),
        level_change=level_change_in(d.get("level_change")),
    )
