"""Every RPC of every Tally service, fed requests generated from its descriptor (wrong,
boundary and hostile values in every field): no call may end INTERNAL or UNKNOWN, and the
ledger stays whole. Requests are built field by field from the message descriptors, so a
new RPC or field is covered the day it is added."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.app import App
from server.store.database import SqlStore
from tally.v1 import boosts_pb2, levels_pb2, points_pb2, points_pb2_grpc
from tests.e2e.test_fuzz import FORBIDDEN, INT64, ledger_is_whole, structs, texts, timestamps

SERVICES = [
    points_pb2.DESCRIPTOR.services_by_name["PointsService"],
    levels_pb2.DESCRIPTOR.services_by_name["LevelsService"],
    boosts_pb2.DESCRIPTOR.services_by_name["BoostsService"],
]
METHODS = [(service, method) for service in SERVICES for method in service.methods]
DOUBLES = st.one_of(
    st.sampled_from([0.0, -1.0, 1.0, 0.1, 1e9, 2e9, 1e300, float("nan"), float("inf")]),
    st.floats(allow_nan=True, allow_infinity=True),
)
IDS = st.sampled_from(["", "00000000-0000-0000-0000-000000000000", "not-a-uuid", "x" * 300])
MAX_DEPTH = 3


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return st.one_of(INT64, st.sampled_from([0, 1, 10, 100, -1]))
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
        return st.integers(-(2**31), 2**31 - 1) | st.sampled_from([0, 1, 10, 101])
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return DOUBLES
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.sampled_from([*known, 99, -5])
    if kind == FieldDescriptor.TYPE_STRING:
        if field.name.endswith("id") or field.name.endswith("ids"):
            return IDS | texts
        return texts
    return st.just(None)


def message_of(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    if desc.full_name == "google.protobuf.Timestamp":
        return timestamps().map(lambda t: t or timestamp_pb2.Timestamp())
    if desc.full_name == "google.protobuf.Struct":
        return structs().map(lambda s: s or struct_pb2.Struct())
    if desc.full_name == "google.protobuf.FieldMask":
        paths = st.lists(
            st.sampled_from(["*", "points", "status", "key", "type", "id", "x"]), max_size=3
        )
        return paths.map(lambda p: field_mask_pb2.FieldMask(paths=p))
    cls = GetMessageClass(desc)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        value = field_value(field, depth)
        if value is not None:
            fields[field.name] = st.none() | value
    return st.fixed_dictionaries(fields).map(lambda values: build(cls, values))


def field_value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = (
            field.message_type.fields_by_name["key"],
            field.message_type.fields_by_name["value"],
        )
        if value.message_type is not None:
            return None  # maps of messages are output only
        return st.dictionaries(scalar(key), scalar(value), max_size=3)
    if field.message_type is not None:
        if depth >= MAX_DEPTH:
            return None
        one = message_of(field.message_type, depth + 1)
    else:
        one = scalar(field)
    if field.is_repeated:
        return st.lists(one, max_size=3)
    return one


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


def call(channel: grpc.Channel, service: Any, method: Any, request: Message) -> None:
    path = f"/{service.full_name}/{method.name}"
    response_class = GetMessageClass(method.output_type)
    try:
        if method.server_streaming:
            stream: grpc.UnaryStreamMultiCallable[Message, Message] = channel.unary_stream(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            list(stream(request, timeout=10))
        else:
            unary: grpc.UnaryUnaryMultiCallable[Message, Message] = channel.unary_unary(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_class.FromString,
            )
            unary(request, timeout=10)
    except grpc.RpcError as error:
        code = error.code()
        details = error.details() or ""
        assert code not in FORBIDDEN, (path, request, details)
        assert len(details) < 1000


@pytest.fixture
def seeded(server: App, channel: grpc.Channel) -> grpc.Channel:
    """A system with a trigger of each kind, a level and a boost, so requests that name
    "xp" or "lesson" reach the rules."""
    stub = points_pb2_grpc.PointsServiceStub(channel)
    stub.CreateSystem(points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp")))
    for trigger in (
        points_pb2.Trigger(type=points_pb2.TRIGGER_TYPE_EVENT, points=5, event_type="xp"),
        points_pb2.Trigger(
            type=points_pb2.TRIGGER_TYPE_METRIC, points=-3, event_type="alice", metric_threshold=0.1
        ),
    ):
        trigger.status = points_pb2.TRIGGER_STATUS_ACTIVE
        stub.CreateTrigger(points_pb2.CreateTriggerRequest(system_key="xp", trigger=trigger))
    return channel


FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.name for _, m in METHODS])
def test_no_request_fails_internally(
    seeded: grpc.Channel, store: SqlStore, service: Any, method: Any
) -> None:
    @FUZZ
    @given(request=message_of(method.input_type))
    def run(request: Message) -> None:
        call(seeded, service, method, request)

    run()
    ledger_is_whole(store)
