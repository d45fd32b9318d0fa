"""WatchLedger over the real server."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from server import app
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc

FOLLOWERS = 50


def stub(server: app.App) -> tuple[grpc.Channel, points_pb2_grpc.PointsServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return channel, points_pb2_grpc.PointsServiceStub(channel)


def award(points: points_pb2_grpc.PointsServiceStub, user: str, amount: int) -> int:
    response = points.Award(
        points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id=user), amount=amount)
    )
    return int(response.entry.sequence)


def create_system(points: points_pb2_grpc.PointsServiceStub) -> None:
    points.CreateSystem(
        points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp", name="XP"))
    )


def follow(points: points_pb2_grpc.PointsServiceStub, after: int = 0) -> Iterator[int]:
    """A following WatchLedger, as the sequences it delivers."""
    call = points.WatchLedger(points_pb2.WatchLedgerRequest(after_sequence=after, follow=True))
    return (entry.sequence for message in call for entry in message.entries)


def test_without_follow_the_stream_ends_after_the_last_committed_entry(
    server: app.App,
) -> None:
    channel, points = stub(server)
    with channel:
        create_system(points)
        sequences = [award(points, f"u{n % 3}", n + 1) for n in range(7)]
        call = points.WatchLedger(points_pb2.WatchLedgerRequest(after_sequence=sequences[1]))
        assert [e.sequence for m in call for e in m.entries] == sequences[2:]
        with pytest.raises(grpc.RpcError) as missing:
            list(points.WatchLedger(points_pb2.WatchLedgerRequest(system_key="nope")))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as bad:
            list(points.WatchLedger(points_pb2.WatchLedgerRequest(after_sequence=-1)))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
