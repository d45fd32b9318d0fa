"""Triggers, events and the preview through the real server: conversions both ways,
and the codes and fields of their errors."""

from __future__ import annotations

import math

import grpc
import pytest
from google.protobuf import field_mask_pb2

from tally.v1 import common_pb2, points_pb2
from tally.v1.points_pb2_grpc import PointsServiceStub
from tests.e2e.test_api import create_system, error_of


def lesson_trigger(points: PointsServiceStub, **fields: object) -> points_pb2.Trigger:
    values: dict[str, object] = {"status": points_pb2.TRIGGER_STATUS_ACTIVE, **fields}
    trigger = points_pb2.Trigger(
        type=points_pb2.TRIGGER_TYPE_EVENT,
        points=10,
        event_type="lesson",
        **values,  # type: ignore[arg-type]
    )
    request = points_pb2.CreateTriggerRequest(system_key="xp", trigger=trigger)
    response: points_pb2.CreateTriggerResponse = points.CreateTrigger(request)
    return response.trigger


def record(
    points: PointsServiceStub, user: str = "ann", **fields: object
) -> points_pb2.RecordEventResponse:
    request = points_pb2.RecordEventRequest(
        user=common_pb2.User(id=user),
        event_type="lesson",
        **fields,  # type: ignore[arg-type]
    )
    response: points_pb2.RecordEventResponse = points.RecordEvent(request)
    return response


def test_an_event_fires_a_trigger_and_every_read_names_it(points: PointsServiceStub) -> None:
    create_system(points)
    trigger = lesson_trigger(
        points, user_attributes=[common_pb2.Attribute(key="plan", value="pro")]
    )
    assert trigger.id
    assert trigger.status == points_pb2.TRIGGER_STATUS_ACTIVE
    response = record(
        points,
        user="ann",
        value=2.5,
        idempotency_key="ev-1",
    )
    assert dict(response.results) == {}  # ann is not on the pro plan
    pro = common_pb2.User(id="ann", attributes={"plan": "pro"})
    response = points.RecordEvent(
        points_pb2.RecordEventRequest(user=pro, event_type="lesson", value=0.5)
    )
    assert response.metric_total == 3.0
    result = response.results["xp"]
    assert (result.added, result.balance.balance) == (10, 10)
    (award,) = result.awards
    assert (award.trigger.id, award.entry.trigger_id, award.entry.event_type) == (
        trigger.id,
        trigger.id,
        "lesson",
    )
    system = points.GetSystem(points_pb2.GetSystemRequest(key="xp")).system
    assert [t.id for t in system.triggers] == [trigger.id]
    balance = points.GetBalance(points_pb2.GetBalanceRequest(system_key="xp", user_id="ann"))
    assert [t.id for t in balance.triggers] == [trigger.id]
    listed = points.ListTriggers(points_pb2.ListTriggersRequest(system_key="xp")).triggers
    assert [t.user_attributes[0].value for t in listed] == ["pro"]


def test_update_trigger_with_a_mask(points: PointsServiceStub) -> None:
    create_system(points)
    trigger = lesson_trigger(points)
    request = points_pb2.UpdateTriggerRequest(
        trigger=points_pb2.Trigger(id=trigger.id, status=points_pb2.TRIGGER_STATUS_ARCHIVED),
        update_mask=field_mask_pb2.FieldMask(paths=["status"]),
    )
    updated = points.UpdateTrigger(request).trigger
    assert (updated.status, updated.points) == (points_pb2.TRIGGER_STATUS_ARCHIVED, 10)
    request.update_mask.paths[:] = ["type"]
    with pytest.raises(grpc.RpcError) as caught:
        points.UpdateTrigger(request)
    code, reason, _, fields = error_of(caught.value)
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
        ["update_mask"],
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0.0, 2e9])
def test_bad_event_values_are_refused_naming_value(points: PointsServiceStub, value: float) -> None:
    create_system(points)
    lesson_trigger(points)
    with pytest.raises(grpc.RpcError) as caught:
        record(points, value=value)
    code, reason, _, fields = error_of(caught.value)
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
        ["value"],
    )


def test_an_unknown_event_type_is_not_found(points: PointsServiceStub) -> None:
    create_system(points)
    with pytest.raises(grpc.RpcError) as caught:
        record(points)
    code, reason, _, _ = error_of(caught.value)
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "NO_MATCHING_TRIGGER")


def test_bad_triggers_name_their_fields(points: PointsServiceStub) -> None:
    create_system(points)
    bad = points_pb2.Trigger(type=99, points=0)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as caught:
        points.CreateTrigger(points_pb2.CreateTriggerRequest(system_key="xp", trigger=bad))
    code, _, _, fields = error_of(caught.value)
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["trigger.type"])


def test_preview_of_a_draft(points: PointsServiceStub) -> None:
    create_system(points)
    lesson_trigger(points, status=points_pb2.TRIGGER_STATUS_INACTIVE)
    for user in ("ann", "bob", "ann"):
        record(points, user=user)
    draft = points_pb2.Trigger(type=points_pb2.TRIGGER_TYPE_EVENT, points=4, event_type="lesson")
    response = points.PreviewTriggers(
        points_pb2.PreviewTriggersRequest(system_key="xp", triggers=[draft], bucket_count=2)
    )
    assert (response.events, response.awards, response.points, response.users) == (3, 3, 12, 2)
    assert [(t.index_or_id, t.points) for t in response.per_trigger] == [("triggers[0]", 12)]
    assert [(b.users, getattr(b, "from"), b.to) for b in response.distribution] == [
        (0, 0, 0),
        (1, 1, 4),
        (1, 5, 8),
    ]
