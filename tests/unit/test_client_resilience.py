"""The client's retries and stream resumption, against fake stubs (no server).

What matters: a logical write keeps one idempotency key across its retries; only
UNAVAILABLE and RESOURCE_EXHAUSTED with RetryInfo are retried, RetryInfo's delay is what
the client waits; a watch resumes after the last sequence it yielded, never repeats one,
and gives up on errors that are not UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from clients.tally_client import (
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TallyClient,
    Unavailable,
    error_from,
)
from tally.v1 import common_pb2, levels_pb2, points_pb2


class FakeRpcError(grpc.RpcError):
    """What grpcio raises: a code, details and trailing metadata with the rich status."""

    def __init__(self, code: grpc.StatusCode, message: str = "", *details: Any) -> None:
        self._code, self._message = code, message
        packed = []
        for detail in details:
            holder = any_pb2.Any()
            holder.Pack(detail)
            packed.append(holder)
        status = status_pb2.Status(code=code.value[0], message=message, details=packed)
        self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return self._trailers


def rate_limited(seconds: int) -> FakeRpcError:
    return FakeRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
        error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain="tally"),
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds)),
    )


class FakeUnary:
    """A unary RPC that fails with each of `failures` in turn, then answers."""

    def __init__(self, response: Any, *failures: grpc.RpcError) -> None:
        self.response, self.failures = response, list(failures)
        self.requests: list[Any] = []

    def __call__(self, request: Any, timeout: float, metadata: Any) -> Any:
        assert timeout > 0, "every call has a deadline"
        self.requests.append(request)
        if self.failures:
            raise self.failures.pop(0)
        return self.response


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(waits: list[float]) -> Iterator[TallyClient]:
    with TallyClient("127.0.0.1:1", api_key="k", attempts=4, sleep=waits.append) as made:
        yield made


def test_a_retried_write_keeps_its_idempotency_key(client: TallyClient) -> None:
    award = FakeUnary(
        points_pb2.AwardResponse(replayed=True),
        FakeRpcError(grpc.StatusCode.UNAVAILABLE, "restarting"),
        rate_limited(1),
    )
    client.points.Award = award
    assert client.award("xp", "alice", 5).replayed
    keys = {request.idempotency_key for request in award.requests}
    assert len(award.requests) == 3
    assert len(keys) == 1
    assert keys != {""}


def test_the_wait_is_what_retry_info_says(client: TallyClient, waits: list[float]) -> None:
    client.points.GetBalance = FakeUnary(
        points_pb2.GetBalanceResponse(), rate_limited(3), rate_limited(120)
    )
    client.get_balance("xp", "alice")
    assert waits == [3.0, client.max_retry_wait]


def test_batch_items_get_keys_once(client: TallyClient) -> None:
    batch = FakeUnary(
        points_pb2.AwardBatchResponse(processed=2),
        FakeRpcError(grpc.StatusCode.UNAVAILABLE),
    )
    client.points.AwardBatch = batch
    items = [
        points_pb2.AwardBatchItem(system_key="xp", user=common_pb2.User(id="a"), amount=1),
        points_pb2.AwardBatchItem(
            system_key="xp", user=common_pb2.User(id="b"), amount=1, idempotency_key="mine"
        ),
    ]
    client.award_batch(items)
    first, second = ([i.idempotency_key for i in r.items] for r in batch.requests)
    assert first == second
    assert first[1] == "mine"
    assert first[0].startswith("tc-")


@pytest.mark.parametrize(
    "failure",
    [
        FakeRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "bad",
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field="amount", description="> 0")
                ]
            ),
        ),
        FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such user"),
        FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "message too large"),
    ],
)
def test_other_failures_are_raised_at_once(
    client: TallyClient, waits: list[float], failure: FakeRpcError
) -> None:
    deduct = FakeUnary(points_pb2.DeductResponse(), failure)
    client.points.Deduct = deduct
    with pytest.raises((InvalidArgument, NotFound, ResourceExhausted)) as raised:
        client.deduct("xp", "alice", 5)
    assert (len(deduct.requests), waits) == (1, [])
    if isinstance(raised.value, InvalidArgument):
        assert raised.value.field_violations == {"amount": "> 0"}
        assert "field amount: > 0" in raised.value.describe()


def test_creates_without_a_key_are_not_repeated(client: TallyClient) -> None:
    create = FakeUnary(
        points_pb2.CreateTriggerResponse(), FakeRpcError(grpc.StatusCode.UNAVAILABLE)
    )
    client.points.CreateTrigger = create
    with pytest.raises(Unavailable):
        client.create_trigger("xp", points_pb2.Trigger(points=1))
    assert len(create.requests) == 1


def test_retries_stop_after_the_attempts(client: TallyClient) -> None:
    down = [FakeRpcError(grpc.StatusCode.UNAVAILABLE) for _ in range(5)]
    get = FakeUnary(points_pb2.GetSystemResponse(), *down)
    client.points.GetSystem = get
    with pytest.raises(Unavailable):
        client.get_system("xp")
    assert len(get.requests) == client.attempts


class FakeStream:
    """A server stream over `entries` (by sequence) that breaks as scripted per call.

    `breaks[n]` is (how many items call n sends, the error it then raises).
    """

    def __init__(self, wrap: Any, sequences: list[int], breaks: list[tuple[int, Any]]) -> None:
        self.wrap, self.sequences, self.breaks = wrap, sequences, list(breaks)
        self.afters: list[int] = []

    def __call__(self, request: Any, metadata: Any) -> Iterator[Any]:
        self.afters.append(request.after_sequence)
        later = [s for s in self.sequences if s > request.after_sequence]
        limit, error = self.breaks.pop(0) if self.breaks else (len(later), None)

        def responses() -> Iterator[Any]:
            for sequence in later[:limit]:
                yield self.wrap(sequence)
            if error is not None:
                raise error

        return responses()


def entry(sequence: int) -> points_pb2.WatchLedgerResponse:
    return points_pb2.WatchLedgerResponse(entries=[common_pb2.LedgerEntry(sequence=sequence)])


def test_watch_ledger_resumes_after_the_last_sequence(client: TallyClient) -> None:
    down = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "server shutting down")
    # Sequences have gaps (rolled back transactions); the stream breaks twice.
    stream = FakeStream(entry, [2, 3, 5, 8, 9, 12], [(2, down), (0, down), (3, down)])
    client.points.WatchLedger = stream
    seen = [e.sequence for e in client.watch_ledger("xp", after_sequence=1, follow=False)]
    assert seen == [2, 3, 5, 8, 9, 12]
    assert stream.afters == [1, 3, 3, 9]


def test_watch_never_repeats_what_a_server_sends_again(client: TallyClient) -> None:
    down = FakeRpcError(grpc.StatusCode.UNAVAILABLE)
    stream = FakeStream(entry, [1, 2, 3], [(2, down)])
    original = stream.__call__

    def replaying(request: Any, metadata: Any) -> Iterator[Any]:
        if stream.afters:  # the second connection starts again from the beginning
            request = points_pb2.WatchLedgerRequest(after_sequence=0)
        return original(request, metadata)

    client.points.WatchLedger = replaying
    assert [e.sequence for e in client.watch_ledger(follow=False)] == [1, 2, 3]


def test_watch_raises_what_is_not_unavailable(client: TallyClient) -> None:
    stream = FakeStream(entry, [1, 2], [(1, FakeRpcError(grpc.StatusCode.PERMISSION_DENIED))])
    client.points.WatchLedger = stream
    seen: list[int] = []

    def consume() -> None:
        seen.extend(item.sequence for item in client.watch_ledger())

    with pytest.raises(PermissionDenied):
        consume()
    assert seen == [1]


def test_watch_waits_out_a_full_stream_budget(client: TallyClient, waits: list[float]) -> None:
    stream = FakeStream(entry, [1, 2], [(0, rate_limited(2))])
    client.points.WatchLedger = stream
    assert [e.sequence for e in client.watch_ledger(follow=False)] == [1, 2]
    assert waits == [2.0]


def test_watch_gives_up_after_its_budget(client: TallyClient) -> None:
    down = FakeRpcError(grpc.StatusCode.UNAVAILABLE)
    stream = FakeStream(entry, [1], [(0, down), (0, down)])
    client.points.WatchLedger = stream
    with pytest.raises(Unavailable):
        list(client.watch_ledger(give_up_after=0))
    assert stream.afters == [0]


def test_watch_level_changes_resumes(client: TallyClient) -> None:
    def change(sequence: int) -> levels_pb2.WatchLevelChangesResponse:
        return levels_pb2.WatchLevelChangesResponse(
            level_change=common_pb2.LevelChange(sequence=sequence, user_id=f"u{sequence}")
        )

    down = FakeRpcError(grpc.StatusCode.UNAVAILABLE)
    stream = FakeStream(change, [4, 6, 7], [(1, down)])
    client.levels.WatchLevelChanges = stream
    seen = [c.user_id for c in client.watch_level_changes("xp", follow=False)]
    assert seen == ["u4", "u6", "u7"]
    assert stream.afters == [0, 4]


def test_rich_details_that_disagree_with_the_status_keep_the_code() -> None:
    odd = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "x")
    odd._message = "y"  # grpcio-status refuses details whose message differs
    assert isinstance(error_from(odd), Unavailable)
