"""Hypothesis strategies shared by the fuzz tests: hostile scalars, Structs, Timestamps,
and requests of any RPC built field by field from its message descriptor, so a new RPC
or field is covered the day it is added.

`Values` says what each kind of field may hold; the defaults are the e2e fuzz tests'
(small and quick), and the hostile-input fault suite (tests/faults/hostile.py) passes
its own, with oversized, deep and boundary values and the ids of a seeded store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor, field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from tally.v1 import auth_pb2, boosts_pb2, levels_pb2, points_pb2

FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
texts = st.one_of(
    st.sampled_from(["", "xp", "alice", " bob ", "a\x00b", "k" * 300, "ünï", "x\ny"]),
    st.text(max_size=40),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp | None]:
    return st.none() | st.builds(
        timestamp_pb2.Timestamp,
        seconds=st.sampled_from([-(2**62), -1, 0, 4_102_444_800, 253_402_300_799, 2**62]),
        nanos=st.sampled_from([0, 999_999_999]),
    )


def struct_of(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def structs() -> st.SearchStrategy[struct_pb2.Struct | None]:
    return st.none() | st.dictionaries(st.text(max_size=10), json_values, max_size=4).map(struct_of)


# -- requests from descriptors -------------------------------------------------------------

SERVICES = [
    points_pb2.DESCRIPTOR.services_by_name["PointsService"],
    levels_pb2.DESCRIPTOR.services_by_name["LevelsService"],
    boosts_pb2.DESCRIPTOR.services_by_name["BoostsService"],
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
]
METHODS = [(service, method) for service in SERVICES for method in service.methods]

DOUBLES = st.one_of(
    st.sampled_from([0.0, -1.0, 1.0, 0.1, 1e9, 2e9, 1e300, float("nan"), float("inf")]),
    st.floats(allow_nan=True, allow_infinity=True),
)
IDS = st.sampled_from(["", "00000000-0000-0000-0000-000000000000", "not-a-uuid", "x" * 300])
INT64S = st.one_of(INT64, st.sampled_from([0, 1, 10, 100, -1]))
INT32S = INT32 | st.sampled_from([0, 1, 10, 101])
UNKNOWN_ENUMS = st.sampled_from([99, -5])
MASK_PATHS = st.lists(
    st.sampled_from(["*", "points", "status", "key", "type", "id", "x"]), max_size=3
)


def _small_lists(one: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(one, max_size=3)


@dataclass(frozen=True)
class Values:
    """What the generated fields of each kind may hold."""

    int64: st.SearchStrategy[int] = INT64S
    int32: st.SearchStrategy[int] = INT32S
    doubles: st.SearchStrategy[float] = DOUBLES
    texts: st.SearchStrategy[str] = texts
    # Strings whose field name ends in "id" or "ids".
    ids: st.SearchStrategy[str] = IDS | texts
    # Enum numbers beyond the ones the enum names.
    unknown_enums: st.SearchStrategy[int] = UNKNOWN_ENUMS
    timestamps: st.SearchStrategy[timestamp_pb2.Timestamp] = field(
        default_factory=lambda: timestamps().map(lambda t: t or timestamp_pb2.Timestamp())
    )
    structs: st.SearchStrategy[struct_pb2.Struct] = field(
        default_factory=lambda: structs().map(lambda s: s or struct_pb2.Struct())
    )
    mask_paths: st.SearchStrategy[list[str]] = MASK_PATHS
    # Strings of a field by its name (e.g. "page_token"), tried before `ids` and `texts`.
    by_name: dict[str, st.SearchStrategy[str]] = field(default_factory=dict)
    # Repeated fields and maps: a strategy of one item -> a strategy of lists of them.
    lists: Callable[[st.SearchStrategy[Any]], st.SearchStrategy[list[Any]]] = _small_lists
    # Attribute maps (string -> string).
    maps: Callable[
        [st.SearchStrategy[Any], st.SearchStrategy[Any]], st.SearchStrategy[dict[Any, Any]]
    ] = lambda keys, values: st.dictionaries(keys, values, max_size=3)
    max_depth: int = 3


class Requests:
    """Strategies of request messages of any RPC, built from descriptors with `values`."""

    def __init__(self, values: Values | None = None) -> None:
        self.values = values or Values()
        self._messages: dict[tuple[str, int], st.SearchStrategy[Message]] = {}

    def request_of(self, method: descriptor.MethodDescriptor) -> st.SearchStrategy[Message]:
        return self.message_of(method.input_type)

    def message_of(self, desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
        known = self._messages.get((desc.full_name, depth))
        if known is None:
            known = self._messages[(desc.full_name, depth)] = st.deferred(
                lambda: self._build_message_of(desc, depth)
            )
        return known

    def _build_message_of(
        self, desc: descriptor.Descriptor, depth: int
    ) -> st.SearchStrategy[Message]:
        values = self.values
        if desc.full_name == "google.protobuf.Timestamp":
            return values.timestamps
        if desc.full_name == "google.protobuf.Struct":
            return values.structs
        if desc.full_name == "google.protobuf.FieldMask":
            return values.mask_paths.map(lambda p: field_mask_pb2.FieldMask(paths=p))
        cls = GetMessageClass(desc)
        fields: dict[str, st.SearchStrategy[Any]] = {}
        for one in desc.fields:
            value = self.field_value(one, depth)
            if value is not None:
                fields[one.name] = st.none() | value
        return st.fixed_dictionaries(fields).map(lambda values: build(cls, values))

    def field_value(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            if value.message_type is not None:
                return None  # maps of messages are output only
            return self.values.maps(self.scalar(key), self.scalar(value))
        if field.message_type is not None:
            if depth >= self.values.max_depth:
                return None
            one = self.message_of(field.message_type, depth + 1)
        else:
            one = self.scalar(field)
        if field.is_repeated:
            return self.values.lists(one)
        return one

    def scalar(self, field: FieldDescriptor) -> st.SearchStrategy[Any]:
        values = self.values
        kind = field.type
        if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
            return values.int64
        if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
            return values.int32
        if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return values.doubles
        if kind == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if kind == FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            known = [v.number for v in field.enum_type.values]
            return st.sampled_from(known) | values.unknown_enums
        if kind == FieldDescriptor.TYPE_STRING:
            named = values.by_name.get(field.name)
            if named is not None:
                return named
            if field.name.endswith("id") or field.name.endswith("ids"):
                return values.ids
            return values.texts
        return st.just(None)


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        if value is None:
            continue
        target = getattr(message, name)
        field = cls.DESCRIPTOR.fields_by_name[name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target.update(value)
        elif field.is_repeated:
            if field.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    if cls.DESCRIPTOR.fields_by_name.get("follow") is not None:
        message.follow = False  # type: ignore[attr-defined]  # a follower never ends
    return message
