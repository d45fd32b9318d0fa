"""WatchLedger over the real server: live delivery, the stream budget, and shutdown.
(Servers here run without keys: who may watch is tested with the other scopes.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from server import app
from server.settings import Settings
from server.store.database import SqlStore
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc

FOLLOWERS = 50


@pytest.fixture
def budgeted(store: SqlStore) -> Iterator[app.App]:
    built = app.build(
        Settings(listen="127.0.0.1:0", threads=4, max_streams=FOLLOWERS, insecure_no_auth=True),
        store,
    )
    built.start()
    yield built
    built.stop(grace_seconds=1)


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


def test_fifty_followers_leave_unary_calls_their_threads_and_one_more_is_refused(
    budgeted: app.App,
) -> None:
    channel, points = stub(budgeted)
    with channel:
        create_system(points)
        first = award(points, "u", 1)
        calls = [
            points.WatchLedger(points_pb2.WatchLedgerRequest(follow=True)) for _ in range(FOLLOWERS)
        ]
        for call in calls:  # each holds its stream once its first message arrives
            assert [e.sequence for e in next(call).entries] == [first]

        with pytest.raises(grpc.RpcError) as refused:
            next(points.WatchLedger(points_pb2.WatchLedgerRequest(follow=True)))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        # unary calls still run (4 threads of their own), and every follower gets them live
        later = [award(points, f"v{n}", n + 1) for n in range(10)]
        balance = points.GetBalance(points_pb2.GetBalanceRequest(system_key="xp", user_id="u"))
        assert balance.balance.balance == 1
        for call in calls:
            got: list[int] = []
            while len(got) < len(later):
                got.extend(e.sequence for e in next(call).entries)
            assert got == later
        for call in calls:
            call.cancel()

        # cancelled followers give their streams back (each notices at its next wake-up)
        deadline = time.monotonic() + 30
        while (opened := first_or_code(points)) == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert opened == first


def first_or_code(points: points_pb2_grpc.PointsServiceStub) -> int | grpc.StatusCode:
    """The first sequence a new follower receives, or the status it is refused with."""
    call = points.WatchLedger(points_pb2.WatchLedgerRequest(follow=True))
    try:
        return int(next(call).entries[0].sequence)
    except grpc.RpcError as error:
        return error.code()
    finally:
        call.cancel()


def read_to_the_end(call: Iterator[points_pb2.WatchLedgerResponse], seen: list[int]) -> None:
    for message in call:
        seen.extend(e.sequence for e in message.entries)


def test_a_follower_ends_unavailable_at_shutdown_and_resumes_elsewhere(store: SqlStore) -> None:
    """Stopping does not wait out the grace period for followers: they end UNAVAILABLE
    (were they cut at its end, they would see CANCELLED), and resume on another server
    from the last sequence they saw, missing nothing."""
    server = app.build(Settings(listen="127.0.0.1:0", threads=4, insecure_no_auth=True), store)
    server.start()
    channel, points = stub(server)
    with channel:
        create_system(points)
        sequences = [award(points, "u", n + 1) for n in range(3)]
        call = points.WatchLedger(points_pb2.WatchLedgerRequest(follow=True))
        seen = [e.sequence for message in [next(call)] for e in message.entries]
        assert seen == sequences
        stopping = threading.Thread(target=server.stop, args=(60.0,))
        stopping.start()
        with pytest.raises(grpc.RpcError) as ended:
            read_to_the_end(call, seen)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        stopping.join(timeout=30)
        assert not stopping.is_alive()

    other = app.build(Settings(listen="127.0.0.1:0", threads=4, insecure_no_auth=True), store)
    other.start()
    try:
        channel, points = stub(other)
        with channel:
            more = award(points, "u", 9)
            resumed = follow(points, after=seen[-1])
            assert next(resumed) == more
    finally:
        other.stop(grace_seconds=1)


def test_without_follow_the_stream_ends_after_the_last_committed_entry(
    budgeted: app.App,
) -> None:
    channel, points = stub(budgeted)
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
