"""Who may use triggers, events, levels and boosts: systems-limited keys see only their
systems' rules, global boosts need an admin key, tokens read their own user's level."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2

from server.domain.access import Scope
from server.store.database import SqlStore
from tally.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    boosts_pb2,
    boosts_pb2_grpc,
    common_pb2,
    levels_pb2,
    levels_pb2_grpc,
    points_pb2,
    points_pb2_grpc,
)
from tests.e2e.conftest import WithMetadata, keyed, new_key
from tests.e2e.test_api import error_of


@pytest.fixture
def two_systems(channel: grpc.Channel) -> None:
    """Systems xp and coins, each with an ACTIVE trigger on "lesson" and a level."""
    points = points_pb2_grpc.PointsServiceStub(channel)
    levels = levels_pb2_grpc.LevelsServiceStub(channel)
    for key, amount in (("xp", 10), ("coins", 3)):
        points.CreateSystem(points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key=key)))
        trigger = points_pb2.Trigger(
            type=points_pb2.TRIGGER_TYPE_EVENT,
            points=amount,
            event_type="lesson",
            status=points_pb2.TRIGGER_STATUS_ACTIVE,
        )
        points.CreateTrigger(points_pb2.CreateTriggerRequest(system_key=key, trigger=trigger))
        level = common_pb2.Level(key="silver", points=1)
        levels.CreateLevel(levels_pb2.CreateLevelRequest(system_key=key, level=level))


def denied(call: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    return error_of(call)[:2]


def test_an_event_with_a_limited_key_runs_only_its_systems_triggers(
    two_systems: None, bare_channel: grpc.Channel, store: SqlStore
) -> None:
    xp_only = keyed(bare_channel, new_key(store, Scope.WRITE, ("xp",)))
    points = points_pb2_grpc.PointsServiceStub(xp_only)
    event = points_pb2.RecordEventRequest(user=common_pb2.User(id="ann"), event_type="lesson")
    response = points.RecordEvent(event)
    assert sorted(response.results) == ["xp"]
    with pytest.raises(grpc.RpcError) as caught:
        points.ListTriggers(points_pb2.ListTriggersRequest(system_key="coins"))
    assert denied(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")
    with pytest.raises(grpc.RpcError) as caught:
        levels_pb2_grpc.LevelsServiceStub(xp_only).GetLevelSummary(
            levels_pb2.GetLevelSummaryRequest(system_key="coins")
        )
    assert denied(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")


def test_a_write_key_boosts_single_users_but_not_everyone(
    two_systems: None, bare_channel: grpc.Channel, store: SqlStore, channel: grpc.Channel
) -> None:
    writer = boosts_pb2_grpc.BoostsServiceStub(keyed(bare_channel, new_key(store, Scope.WRITE)))
    mine = boosts_pb2.Boost(user_id="ann", multiplier=2)
    made = writer.CreateBoosts(boosts_pb2.CreateBoostsRequest(system_key="xp", boosts=[mine]))
    assert [b.user_id for b in made.created] == ["ann"]
    everyone = boosts_pb2.Boost(multiplier=2)
    with pytest.raises(grpc.RpcError) as caught:
        writer.CreateBoosts(boosts_pb2.CreateBoostsRequest(system_key="xp", boosts=[everyone]))
    assert denied(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")
    admin = boosts_pb2_grpc.BoostsServiceStub(channel)
    (global_boost,) = admin.CreateBoosts(
        boosts_pb2.CreateBoostsRequest(system_key="xp", boosts=[everyone])
    ).created
    with pytest.raises(grpc.RpcError) as caught:
        writer.ArchiveBoost(boosts_pb2.ArchiveBoostRequest(id=global_boost.id))
    assert denied(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")
    reader = levels_pb2_grpc.LevelsServiceStub(keyed(bare_channel, new_key(store, Scope.READ)))
    with pytest.raises(grpc.RpcError) as caught:
        reader.CreateLevel(
            levels_pb2.CreateLevelRequest(
                system_key="xp", level=common_pb2.Level(key="gold", points=9)
            )
        )
    assert denied(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")


def test_a_user_token_reads_its_own_level_and_multiplier_only(
    two_systems: None, bare_channel: grpc.Channel, channel: grpc.Channel
) -> None:
    points_pb2_grpc.PointsServiceStub(channel).RecordEvent(
        points_pb2.RecordEventRequest(user=common_pb2.User(id="ann"), event_type="lesson")
    )
    token = (
        auth_pb2_grpc.AuthServiceStub(channel)
        .CreateUserToken(
            auth_pb2.CreateUserTokenRequest(user_id="ann", ttl=duration_pb2.Duration(seconds=60))
        )
        .token
    )
    as_ann = grpc.intercept_channel(
        bare_channel, WithMetadata(("authorization", f"Bearer {token}"))
    )
    levels = levels_pb2_grpc.LevelsServiceStub(as_ann)
    standing = levels.GetUserLevel(levels_pb2.GetUserLevelRequest(system_key="xp", user_id="ann"))
    assert (standing.level.key, standing.points) == ("silver", 10)
    with pytest.raises(grpc.RpcError) as caught:
        levels.GetUserLevel(levels_pb2.GetUserLevelRequest(system_key="xp", user_id="bob"))
    assert denied(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")
    boosts = boosts_pb2_grpc.BoostsServiceStub(as_ann)
    multiplier = boosts.GetMultiplier(
        boosts_pb2.GetMultiplierRequest(system_key="xp", user_id="ann")
    )
    assert multiplier.multiplier == 1
    with pytest.raises(grpc.RpcError) as caught:
        points_pb2_grpc.PointsServiceStub(as_ann).RecordEvent(
            points_pb2.RecordEventRequest(user=common_pb2.User(id="ann"), event_type="lesson")
        )
    assert denied(caught.value) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")
