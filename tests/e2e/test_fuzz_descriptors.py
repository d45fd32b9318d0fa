"""Every RPC of every Tally service, fed requests generated from its descriptor (wrong,
boundary and hostile values in every field): no call may end INTERNAL or UNKNOWN, and the
ledger stays whole. Requests are built field by field from the message descriptors, so a
new RPC or field is covered the day it is added."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings

from server.app import App
from server.store.database import SqlStore
from tally.v1 import points_pb2, points_pb2_grpc
from tests.e2e.test_fuzz import ledger_is_whole
from tests.strategies import FORBIDDEN, METHODS, Requests

REQUESTS = Requests()


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
    @given(request=REQUESTS.request_of(method))
    def run(request: Message) -> None:
        call(seeded, service, method, request)

    run()
    ledger_is_whole(store)
