"""JSON for domain values: how idempotency keys remember the response they got.

Handles the shapes the domain uses: dataclasses, enums, datetimes, decimals, tuples, lists,
dicts and optionals. Loading is driven by the dataclass's type hints.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


def dumps(value: Any) -> str:
    return json.dumps(_to_json(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def loads(cls: type[T], text: str) -> T:
    return typing.cast(T, _from_json(cls, json.loads(text)))


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (list, tuple, frozenset, set)):
        items = [_to_json(v) for v in value]
        return sorted(items) if isinstance(value, (frozenset, set)) else items
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _from_json(hint: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_json(inner[0], data)
    if origin in (list, tuple, frozenset):
        (item,) = typing.get_args(hint)[:1]
        return origin(_from_json(item, v) for v in data)
    if origin is dict:
        _, item = typing.get_args(hint)
        return {k: _from_json(item, v) for k, v in data.items()}
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            hints = typing.get_type_hints(hint)
            return hint(**{k: _from_json(hints[k], v) for k, v in data.items() if k in hints})
        if issubclass(hint, Enum):
            return hint(data)
        if hint is datetime:
            return datetime.fromisoformat(data)
        if hint is Decimal:
            return Decimal(data)
    return data
