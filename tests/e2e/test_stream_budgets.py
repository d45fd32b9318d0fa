"""Streams cannot crowd out other callers, end to end over each store: keyless health
watches and reflection streams have a budget (and threads) of their own, every caller a
share of the stream budget, and a revoked key's open streams end."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server import app
from server.domain.access import Scope
from server.services.operations import api_keys
from server.settings import Settings
from server.store.database import SqlStore
from tally.v1 import auth_pb2, auth_pb2_grpc, common_pb2, points_pb2, points_pb2_grpc
from tests.e2e.conftest import WithMetadata, keyed
from tests.e2e.test_api import error_of

KEYLESS = 130  # streams a caller without a key tries to hold open
OPEN_BUDGET = 16
PER_KEY = 4
KEY_CACHE_SECONDS = 0.5


def start(store: SqlStore, **settings: Any) -> app.App:
    built = app.build(Settings(listen="127.0.0.1:0", threads=4, **settings), store)
    built.start()
    return built


@pytest.fixture
def channel(store: SqlStore) -> Iterator[grpc.Channel]:
    server = start(
        store,
        max_streams=3 * PER_KEY,
        max_streams_per_key=PER_KEY,
        max_open_streams=OPEN_BUDGET,
        key_cache_seconds=KEY_CACHE_SECONDS,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
            yield opened
    finally:
        server.stop(grace_seconds=1)


def new_key(store: SqlStore, scope: Scope = Scope.ADMIN) -> api_keys.CreatedKey:
    return api_keys.create_key(store, f"test {scope.value}", scope, (), app.utc_now())


class Requests:
    """A reflection request stream the test feeds (and never ends by itself)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[reflection_pb2.ServerReflectionRequest | None] = queue.Queue()

    def send(self, request: reflection_pb2.ServerReflectionRequest) -> None:
        self._queue.put(request)

    def __iter__(self) -> Iterator[reflection_pb2.ServerReflectionRequest]:
        while (request := self._queue.get()) is not None:
            yield request


def open_keyless(channel: grpc.Channel, n: int) -> Any:
    """A health Watch for even n, a reflection stream (one request sent) for odd n."""
    if n % 2 == 0:
        return health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
    requests = Requests()
    requests.send(reflection_pb2.ServerReflectionRequest(list_services=""))
    return reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter(requests))


def first_answers(calls: list[Any], timeout: float, *, cancel: bool = True) -> tuple[int, int, int]:
    """(streams answered, streams refused RESOURCE_EXHAUSTED, streams still waiting);
    then every call is cancelled, unless told not to."""
    with futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        firsts = [pool.submit(next, call) for call in calls]
        done, waiting = futures.wait(firsts, timeout=timeout)
        answered = sum(1 for f in done if f.exception() is None)
        refused = 0
        for f in done:
            error = f.exception()
            if isinstance(error, grpc.RpcError):
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
                assert error_of(error)[1] == "RATE_LIMITED"
                refused += 1
        if cancel or waiting:
            for call in calls:
                call.cancel()  # also ends what still waits
        return answered, refused, len(waiting)


def test_keyless_streams_have_a_budget_and_threads_of_their_own(
    channel: grpc.Channel, store: SqlStore
) -> None:
    """130 health watches and reflection streams from a caller with no key: the budget's
    16 are held open, the rest refused at once; a real key's call answers meanwhile."""
    points = points_pb2_grpc.PointsServiceStub(keyed(channel, new_key(store, Scope.READ).text))
    calls = [open_keyless(channel, n) for n in range(KEYLESS)]
    try:
        with futures.ThreadPoolExecutor(max_workers=1) as one:
            asked = time.monotonic()
            answer = one.submit(
                points.ListSystems, points_pb2.ListSystemsRequest(), timeout=10
            ).result()
            took = time.monotonic() - asked
        assert list(answer.systems) == []
        assert took < 2.0, f"a keyed call waited {took:.1f} s behind keyless streams"
    finally:
        answered, refused, waiting = first_answers(calls, timeout=10)
    assert (answered, refused, waiting) == (OPEN_BUDGET, KEYLESS - OPEN_BUDGET, 0)

    # the budget's slots come back once those streams end
    deadline = time.monotonic() + 10
    while first_answers([open_keyless(channel, n) for n in range(2)], 5) != (2, 0, 0):
        assert time.monotonic() < deadline, "cancelled keyless streams kept their slots"
        time.sleep(0.1)


def award(points: points_pb2_grpc.PointsServiceStub, user: str) -> int:
    response = points.Award(
        points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id=user), amount=1)
    )
    return int(response.entry.sequence)


def follow(points: points_pb2_grpc.PointsServiceStub) -> Any:
    return points.WatchLedger(points_pb2.WatchLedgerRequest(follow=True))


def test_one_keys_streams_do_not_refuse_another_keys_or_a_tokens(
    channel: grpc.Channel, store: SqlStore
) -> None:
    admin = points_pb2_grpc.PointsServiceStub(keyed(channel, new_key(store).text))
    admin.CreateSystem(points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp")))
    first = award(admin, "alice")
    read_a = points_pb2_grpc.PointsServiceStub(keyed(channel, new_key(store, Scope.READ).text))
    # readA tries to take every stream of the server: its share is held, the rest refused
    held = [follow(read_a) for _ in range(3 * PER_KEY)]
    try:
        counts = first_answers(held, timeout=10, cancel=False)
        # another key's follower and a user token's StreamHistory are not refused
        read_b = points_pb2_grpc.PointsServiceStub(keyed(channel, new_key(store, Scope.READ).text))
        other = follow(read_b)
        assert [e.sequence for e in next(other).entries] == [first]
        other.cancel()
        token = (
            auth_pb2_grpc.AuthServiceStub(keyed(channel, new_key(store, Scope.WRITE).text))
            .CreateUserToken(auth_pb2.CreateUserTokenRequest(user_id="alice"))
            .token
        )
        bearer = grpc.intercept_channel(channel, WithMetadata(("authorization", f"Bearer {token}")))
        history = points_pb2_grpc.PointsServiceStub(bearer).StreamHistory(
            points_pb2.StreamHistoryRequest(system_key="xp", user_id="alice")
        )
        assert [e.sequence for m in history for e in m.entries] == [first]
    finally:
        for call in held:
            call.cancel()
    assert counts == (PER_KEY, 2 * PER_KEY, 0)


def test_a_revoked_keys_follower_ends_unauthenticated(
    channel: grpc.Channel, store: SqlStore
) -> None:
    admin = points_pb2_grpc.PointsServiceStub(keyed(channel, new_key(store).text))
    admin.CreateSystem(points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp")))
    reader = new_key(store, Scope.READ)
    call = follow(points_pb2_grpc.PointsServiceStub(keyed(channel, reader.text)))
    first = award(admin, "alice")
    assert [e.sequence for e in next(call).entries] == [first]

    assert api_keys.revoke_key(store, reader.key.id, app.utc_now())
    revoked = time.monotonic()
    ended: list[grpc.RpcError] = []

    def read_on() -> None:
        try:
            for _message in call:
                pass
        except grpc.RpcError as error:
            ended.append(error)

    reading = threading.Thread(target=read_on, daemon=True)
    reading.start()
    reading.join(timeout=KEY_CACHE_SECONDS + 3)
    took = time.monotonic() - revoked
    call.cancel()
    assert ended, f"the revoked key's follower was still open after {took:.1f} s"
    code, reason, metadata, _ = error_of(ended[0])
    assert (code, reason, metadata["key_id"]) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_REVOKED",
        reader.key.id,
    )
    assert took < KEY_CACHE_SECONDS + 2.5
