"""The API as callers see it: codes, reasons, details, metadata, streams."""

from __future__ import annotations

import base64
import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from server.domain.errors import StoreUnavailable
from server.domain.ledger import Posting
from server.services.use_cases import points_changes
from server.store.database import SqlStore
from tally.v1 import common_pb2, levels_pb2, points_pb2
from tally.v1.levels_pb2_grpc import LevelsServiceStub
from tally.v1.points_pb2_grpc import PointsServiceStub


def error_of(call: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str], list[str]]:
    """The code, ErrorInfo reason and metadata, and BadRequest fields of a failed call."""
    status = rpc_status.from_call(call)
    assert status is not None, "every error carries rich details"
    reason, metadata, fields = "", {}, []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "tally"
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return call.code(), reason, metadata, fields


def create_system(points: PointsServiceStub, key: str = "xp", max_points: int = 0) -> None:
    points.CreateSystem(
        points_pb2.CreateSystemRequest(
            system=points_pb2.PointsSystem(key=key, max_points=max_points)
        )
    )


def award(
    points: PointsServiceStub, user: str, amount: int, **fields: Any
) -> points_pb2.AwardResponse:
    request = points_pb2.AwardRequest(
        system_key="xp", user=common_pb2.User(id=user), amount=amount, **fields
    )
    response: points_pb2.AwardResponse = points.Award(request)
    return response


def test_award_then_balance(points: PointsServiceStub) -> None:
    create_system(points)
    response = award(points, "alice", 30, reason="welcome")
    assert response.entry.type == common_pb2.ENTRY_TYPE_AWARD
    assert (response.entry.amount, response.balance.balance, response.replayed) == (30, 30, False)
    assert not response.HasField("level_change")
    balance = points.GetBalance(points_pb2.GetBalanceRequest(system_key="xp", user_id="alice"))
    assert balance.balance.balance == 30
    assert [e.id for e in balance.recent] == [response.entry.id]


def test_validation_error_names_each_field(points: PointsServiceStub) -> None:
    create_system(points)
    with pytest.raises(grpc.RpcError) as caught:
        award(points, "", 0, reason="x" * 600)
    code, reason, _, fields = error_of(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED")
    assert set(fields) == {"user.id", "amount", "reason"}


def test_error_messages_quote_at_most_100_characters(points: PointsServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        points.GetSystem(points_pb2.GetSystemRequest(key="k" * 5000))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(caught.value.details() or "") < 200


def test_insufficient_points_metadata(points: PointsServiceStub) -> None:
    create_system(points)
    award(points, "alice", 5)
    with pytest.raises(grpc.RpcError) as caught:
        points.Deduct(points_pb2.DeductRequest(system_key="xp", user_id="alice", amount=9))
    code, reason, metadata, _ = error_of(caught.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_POINTS")
    assert metadata == {"available": "5", "requested": "9"}


def test_idempotency_key_from_metadata(points: PointsServiceStub) -> None:
    create_system(points)
    request = points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id="a"), amount=3)
    first = points.Award(request, metadata=[("idempotency-key", "m-1")])
    again = points.Award(request, metadata=[("idempotency-key", "m-1")])
    assert again.replayed
    assert again.entry.id == first.entry.id
    assert first.entry.idempotency_key == "m-1"
    with pytest.raises(grpc.RpcError) as caught:
        points.Award(
            points_pb2.AwardRequest(
                system_key="xp", user=common_pb2.User(id="a"), amount=3, idempotency_key="m-2"
            ),
            metadata=[("idempotency-key", "m-1")],
        )
    code, reason, _, fields = error_of(caught.value)
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "IDEMPOTENCY_KEY_MISMATCH",
        ["idempotency_key"],
    )


def test_key_reuse_and_invalid_key(points: PointsServiceStub) -> None:
    create_system(points)
    award(points, "a", 1, idempotency_key="k")
    with pytest.raises(grpc.RpcError) as caught:
        award(points, "a", 2, idempotency_key="k")
    assert error_of(caught.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")
    with pytest.raises(grpc.RpcError) as caught:
        award(points, "a", 2, idempotency_key="no spaces")
    assert error_of(caught.value)[:2] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "IDEMPOTENCY_KEY_INVALID",
    )


def test_unknown_enum_value_is_invalid(points: PointsServiceStub) -> None:
    request = points_pb2.CreateSystemRequest(
        system=points_pb2.PointsSystem(key="xp", level_basis=99)  # type: ignore[arg-type]
    )
    with pytest.raises(grpc.RpcError) as caught:
        points.CreateSystem(request)
    assert error_of(caught.value)[3] == ["system.level_basis"]


def test_expire_time_in_the_past_is_invalid(points: PointsServiceStub) -> None:
    create_system(points)
    past = timestamp_pb2.Timestamp()
    past.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(grpc.RpcError) as caught:
        award(points, "a", 1, expire_time=past)
    assert error_of(caught.value)[3] == ["expire_time"]


def test_system_lifecycle(points: PointsServiceStub) -> None:
    create_system(points)
    with pytest.raises(grpc.RpcError) as caught:
        create_system(points)
    assert error_of(caught.value)[:2] == (grpc.StatusCode.ALREADY_EXISTS, "SYSTEM_EXISTS")
    updated = points.UpdateSystem(
        points_pb2.UpdateSystemRequest(
            system=points_pb2.PointsSystem(key="xp", name="Experience", max_points=9)
        )
    ).system
    assert (updated.name, updated.max_points) == ("Experience", 9)
    assert updated.level_basis == points_pb2.LEVEL_BASIS_BALANCE
    got = points.GetSystem(points_pb2.GetSystemRequest(key="xp")).system
    assert got == updated
    listed = points.ListSystems(points_pb2.ListSystemsRequest()).systems
    assert [s.key for s in listed] == ["xp"]


def test_batch_results_in_input_order(points: PointsServiceStub) -> None:
    create_system(points)
    items = [
        points_pb2.AwardBatchItem(system_key="xp", user=common_pb2.User(id="a"), amount=5),
        points_pb2.AwardBatchItem(system_key="nope", user=common_pb2.User(id="b"), amount=5),
        points_pb2.AwardBatchItem(system_key="xp", user=common_pb2.User(id="c"), amount=6),
    ]
    response = points.AwardBatch(points_pb2.AwardBatchRequest(items=items))
    assert (response.processed, response.failed) == (2, 1)
    assert [r.user_id for r in response.results] == ["a", "b", "c"]
    assert response.results[1].error.reason == "SYSTEM_NOT_FOUND"
    assert response.results[1].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert not response.results[0].HasField("error")
    assert response.results[2].balance.balance == 6


def test_reverse(points: PointsServiceStub) -> None:
    create_system(points)
    entry = award(points, "a", 10).entry
    reversed_ = points.Reverse(points_pb2.ReverseRequest(entry_id=entry.id))
    assert (reversed_.entry.amount, reversed_.entry.reverses_entry_id) == (-10, entry.id)
    with pytest.raises(grpc.RpcError) as caught:
        points.Reverse(points_pb2.ReverseRequest(entry_id=entry.id))
    assert error_of(caught.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "ALREADY_REVERSED")


def test_list_transactions_pages(points: PointsServiceStub) -> None:
    create_system(points)
    ids = [award(points, "a", i + 1).entry.id for i in range(5)]
    seen, token = [], ""
    while True:
        page = points.ListTransactions(
            points_pb2.ListTransactionsRequest(
                system_key="xp", user_id="a", page_size=2, page_token=token
            )
        )
        assert page.total_size == 5
        seen += [e.id for e in page.entries]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    with pytest.raises(grpc.RpcError) as caught:
        points.ListTransactions(
            points_pb2.ListTransactionsRequest(system_key="xp", user_id="a", page_size=101)
        )
    assert error_of(caught.value)[3] == ["page_size"]


def test_stream_history(points: PointsServiceStub) -> None:
    create_system(points)
    amounts = [award(points, "a", i + 1).entry.amount for i in range(3)]
    streamed = points.StreamHistory(points_pb2.StreamHistoryRequest(system_key="xp", user_id="a"))
    assert [e.amount for r in streamed for e in r.entries] == amounts
    with pytest.raises(grpc.RpcError) as caught:
        list(points.StreamHistory(points_pb2.StreamHistoryRequest(system_key="xp", user_id="zz")))
    assert error_of(caught.value)[:2] == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")


def test_health_and_unimplemented(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="tally.v1.PointsService")).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    unknown: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/tally.v1.PointsService/NoSuchMethod"
    )
    with pytest.raises(grpc.RpcError) as caught:
        unknown(b"")
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_stream_history_chunks_a_long_history_in_order(
    points: PointsServiceStub, store: SqlStore
) -> None:
    """1,203 entries arrive in order, none twice, in messages of at most 500."""
    create_system(points)
    award(points, "a", 1)
    with store.unit_of_work(write=True) as uow:
        account = uow.accounts.standing(["a"], []).accounts[("a", "xp")]
        entries = [
            account.award(1, Posting(reason=f"r{i}"), now=datetime.now(UTC)) for i in range(1202)
        ]
        uow.ledger.add(entries)
        uow.accounts.save([account], datetime.now(UTC))
        uow.commit()
    messages = list(
        points.StreamHistory(points_pb2.StreamHistoryRequest(system_key="xp", user_id="a"))
    )
    assert [len(m.entries) for m in messages] == [500, 500, 203]
    streamed = [e for m in messages for e in m.entries]
    assert [e.balance_after for e in streamed] == list(range(1, 1204))


def test_an_open_health_watch_does_not_hold_shutdown(store: SqlStore) -> None:
    """A Watch never ends by itself; once calls in flight are done, stopping cuts it
    instead of waiting out the whole grace period."""
    from server import app
    from server.settings import Settings

    built = app.build(Settings(listen="127.0.0.1:0", threads=4), store)
    built.start()
    with grpc.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        started = time.monotonic()
        built.stop(grace_seconds=10)
        assert time.monotonic() - started < 5


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, encoded by hand."""
    length, varint = len(payload), b""
    while True:
        byte, length = length & 0x7F, length >> 7
        varint += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    return bytes([number << 3 | 2]) + varint + payload


def too_deep_award(depth: int) -> bytes:
    """An AwardRequest whose metadata nests lists `depth` deep (protobuf refuses ~100)."""
    value = _field(3, b"x")  # Value.string_value
    for _ in range(depth):
        value = _field(6, _field(1, value))  # Value.list_value -> ListValue.values
    entry = _field(1, b"a") + _field(2, value)  # Struct.fields map entry
    return _field(1, b"xp") + _field(5, _field(1, entry))  # system_key, metadata


@pytest.mark.parametrize(
    "body", [b"\xff\xff\xff", too_deep_award(200)], ids=["corrupt", "too-deep"]
)
def test_a_request_that_cannot_be_decoded_is_invalid(channel: grpc.Channel, body: bytes) -> None:
    """gRPC itself answers such a request INTERNAL; Tally maps it like any bad input."""
    raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/tally.v1.PointsService/Award"
    )
    with pytest.raises(grpc.RpcError) as caught:
        raw(body, timeout=10)
    code, reason, _, fields = error_of(caught.value)
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
        ["request"],
    )


def test_a_batch_item_that_cannot_be_converted_fails_alone(points: PointsServiceStub) -> None:
    """NaN metadata on one item is that item's VALIDATION_FAILED, named by its index; the
    other items are awarded as usual."""
    create_system(points)
    bad = struct_pb2.Struct()
    bad.update({"x": math.nan})
    items = [
        points_pb2.AwardBatchItem(system_key="xp", user=common_pb2.User(id="a"), amount=4),
        points_pb2.AwardBatchItem(
            system_key="xp", user=common_pb2.User(id="b"), amount=4, metadata=bad
        ),
    ]
    response = points.AwardBatch(points_pb2.AwardBatchRequest(items=items))
    assert (response.processed, response.failed) == (1, 1)
    assert response.results[0].balance.balance == 4
    failure = response.results[1].error
    assert (failure.code, failure.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        "VALIDATION_FAILED",
    )
    assert "items[1].metadata" in failure.message


def test_a_system_key_that_cannot_exist_is_not_found(points: PointsServiceStub) -> None:
    """GetSystem takes any string; one that cannot be a key (a NUL in it, which
    PostgreSQL refuses even as a parameter) is simply not found."""
    with pytest.raises(grpc.RpcError) as caught:
        points.GetSystem(points_pb2.GetSystemRequest(key="a\x00b"))
    assert error_of(caught.value)[:2] == (grpc.StatusCode.NOT_FOUND, "SYSTEM_NOT_FOUND")


def test_list_triggers_and_list_levels_page(
    points: PointsServiceStub, channel: grpc.Channel
) -> None:
    levels = LevelsServiceStub(channel)
    create_system(points)
    made = [
        points.CreateTrigger(
            points_pb2.CreateTriggerRequest(
                system_key="xp",
                trigger=points_pb2.Trigger(
                    type=points_pb2.TRIGGER_TYPE_EVENT, points=i + 1, event_type="lesson"
                ),
            )
        ).trigger.id
        for i in range(5)
    ]
    for key, threshold in (("gold", 300), ("bronze", 10), ("silver", 100), ("top", 900)):
        level = common_pb2.Level(key=key, points=threshold)
        levels.CreateLevel(levels_pb2.CreateLevelRequest(system_key="xp", level=level))

    def every(call: Any, request: type, field: str) -> list[Any]:
        seen, token = [], ""
        while True:
            page = call(request(system_key="xp", page_size=2, page_token=token))
            seen += getattr(page, field)
            token = page.next_page_token
            if not token:
                return seen

    listed = every(points.ListTriggers, points_pb2.ListTriggersRequest, "triggers")
    assert [t.id for t in listed] == made
    ladder = every(levels.ListLevels, levels_pb2.ListLevelsRequest, "levels")
    assert [lv.key for lv in ladder] == ["bronze", "silver", "gold", "top"]
    # Without page_size: everything in one page, as before the fields existed.
    whole = points.ListTriggers(points_pb2.ListTriggersRequest(system_key="xp"))
    assert ([t.id for t in whole.triggers], whole.next_page_token) == (made, "")
    whole_ladder = levels.ListLevels(levels_pb2.ListLevelsRequest(system_key="xp"))
    assert (len(whole_ladder.levels), whole_ladder.next_page_token) == (4, "")

    level_token = levels.ListLevels(
        levels_pb2.ListLevelsRequest(system_key="xp", page_size=1)
    ).next_page_token
    refused: list[tuple[Any, Any, str]] = [
        (points.ListTriggers, points_pb2.ListTriggersRequest(page_size=1001), "page_size"),
        (points.ListTriggers, points_pb2.ListTriggersRequest(page_token="x"), "page_token"),
        (points.ListTriggers, points_pb2.ListTriggersRequest(page_token=level_token), "page_token"),
        (levels.ListLevels, levels_pb2.ListLevelsRequest(page_size=-1), "page_size"),
        (levels.ListLevels, levels_pb2.ListLevelsRequest(page_token="x"), "page_token"),
    ]
    for call, request, field in refused:
        request.system_key = "xp"
        with pytest.raises(grpc.RpcError) as caught:
            call(request)
        code, reason, _, fields = error_of(caught.value)
        assert (code, reason, fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
            [field],
        ), request


def test_a_systems_page_token_holding_a_nul_is_invalid(points: PointsServiceStub) -> None:
    raw = json.dumps({"p": "a\x00", "q": "systems"}).encode()
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with pytest.raises(grpc.RpcError) as caught:
        points.ListSystems(points_pb2.ListSystemsRequest(page_token=token))
    code, reason, _, fields = error_of(caught.value)
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
        ["page_token"],
    )


def test_store_unavailable_names_the_operation(
    points: PointsServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STORE_UNAVAILABLE carries the ErrorInfo metadata `operation` (common.proto)."""
    create_system(points)

    def down(*args: Any) -> Any:
        raise StoreUnavailable()

    monkeypatch.setattr(points_changes, "award", down)
    with pytest.raises(grpc.RpcError) as caught:
        award(points, "alice", 1)
    code, reason, metadata, _ = error_of(caught.value)
    assert (code, reason, metadata) == (
        grpc.StatusCode.UNAVAILABLE,
        "STORE_UNAVAILABLE",
        {"operation": "Award"},
    )
