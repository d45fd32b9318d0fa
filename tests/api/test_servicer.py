"""The PointsService servicer under grpc_testing, and the domain-error -> status mapping.

grpc_testing runs servicer methods without a network, but it applies no server
interceptors, so ErrorInterceptor never runs here. `ErrorMapped` stands in for it using
the same `to_status`, setting code, details and trailers as the interceptor's
`abort_with_status` does; the mapping itself is tested on its own below.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import grpc
import grpc_testing
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from server.api import errors
from server.api.points import PointsServicer
from server.domain import errors as domain
from server.domain.errors import FieldViolation, TallyError
from server.services.tally import Tally
from server.store.database import SqlStore
from tally.v1 import common_pb2, points_pb2
from tests.conftest import T0

SERVICE = points_pb2.DESCRIPTOR.services_by_name["PointsService"]
DETAILS_KEY = "grpc-status-details-bin"


class ErrorMapped:
    """A servicer whose TallyErrors end the call with `errors.to_status`, as on a server."""

    def __init__(self, servicer: PointsServicer) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._servicer, name)
        if SERVICE.methods_by_name[name].server_streaming:

            def stream(request: Message, context: grpc.ServicerContext) -> Iterator[Message]:
                try:
                    yield from method(request, context)
                except TallyError as error:
                    self._fail(context, error)

            return stream

        def unary(request: Message, context: grpc.ServicerContext) -> Message | None:
            try:
                response: Message = method(request, context)
                return response
            except TallyError as error:
                self._fail(context, error)
                return None

        return unary

    @staticmethod
    def _fail(context: grpc.ServicerContext, error: TallyError) -> None:
        status = errors.to_status(error)
        context.set_trailing_metadata(status.trailing_metadata)
        context.set_code(status.code)
        context.set_details(status.details)


@dataclass
class Failure:
    """What a caller reads from a failed call's status and rich details."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    details_size: int = 0  # bytes of the packed google.rpc.Status in the trailers


class CallFailed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.code.name} {failure.reason}: {failure.message}")
        self.failure = failure


def failure_of(
    trailing: Sequence[tuple[str, str | bytes]], code: grpc.StatusCode, details: str
) -> Failure:
    packed = [value for key, value in trailing if key == DETAILS_KEY]
    assert len(packed) == 1, "every error carries a google.rpc.Status"
    assert isinstance(packed[0], bytes)
    status = status_pb2.Status.FromString(packed[0])
    assert (status.code, status.message) == (code.value[0], details)
    failure = Failure(code, details, details_size=len(packed[0]))
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            failure.reason, failure.domain = info.reason, info.domain
            failure.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            failure.fields = [v.field for v in bad.field_violations]
    return failure


@dataclass
class Points:
    """Calls PointsService methods on a grpc_testing server, like a stub would."""

    server: grpc_testing.Server

    def call(self, method: str, request: Message, key: str | None = None) -> Any:
        metadata = () if key is None else (("idempotency-key", key),)
        rpc = self.server.invoke_unary_unary(
            SERVICE.methods_by_name[method], metadata, request, None
        )
        response, trailing, code, details = rpc.termination()
        if code is not grpc.StatusCode.OK:
            raise CallFailed(failure_of(trailing, code, details))
        return response

    def stream(self, method: str, request: Message) -> list[Any]:
        rpc = self.server.invoke_unary_stream(SERVICE.methods_by_name[method], (), request, None)
        responses = []
        while True:
            try:
                responses.append(rpc.take_response())
            except ValueError:  # grpc_testing: no more responses, the call has ended
                break
        trailing, code, details = rpc.termination()
        if code is not grpc.StatusCode.OK:
            raise CallFailed(failure_of(trailing, code, details))
        return responses

    def fails(self, method: str, request: Message, key: str | None = None) -> Failure:
        with pytest.raises(CallFailed) as caught:
            self.call(method, request, key)
        return caught.value.failure

    # -- shorthands ------------------------------------------------------------------------

    def create_system(self, key: str = "xp", **fields: Any) -> points_pb2.CreateSystemResponse:
        system = points_pb2.PointsSystem(key=key, **fields)
        response: points_pb2.CreateSystemResponse = self.call(
            "CreateSystem", points_pb2.CreateSystemRequest(system=system)
        )
        return response

    def award(self, user: str, amount: int, key: str | None = None, **fields: Any) -> Any:
        request = points_pb2.AwardRequest(
            system_key="xp", user=common_pb2.User(id=user), amount=amount, **fields
        )
        return self.call("Award", request, key)

    def balance(self, user: str, **fields: Any) -> points_pb2.GetBalanceResponse:
        request = points_pb2.GetBalanceRequest(system_key="xp", user_id=user, **fields)
        response: points_pb2.GetBalanceResponse = self.call("GetBalance", request)
        return response


class Clock:
    """The servicer's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def points(store: SqlStore, clock: Clock) -> Points:
    servicer = ErrorMapped(PointsServicer(Tally(store), clock))
    server = grpc_testing.server_from_dictionary(
        {SERVICE: servicer}, grpc_testing.strict_real_time()
    )
    return Points(server)


def stamp(seconds: float) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(T0 + timedelta(seconds=seconds))
    return value


# -- systems -------------------------------------------------------------------------------


class TestSystems:
    def test_create_fills_defaults_and_times(self, points: Points) -> None:
        system = points.create_system("coins", max_points=500).system
        assert (system.key, system.name, system.max_points) == ("coins", "coins", 500)
        assert system.level_basis == points_pb2.LEVEL_BASIS_BALANCE
        assert system.create_time.ToDatetime(tzinfo=T0.tzinfo) == T0
        assert system.update_time == system.create_time

    def test_duplicate_key(self, points: Points) -> None:
        points.create_system()
        request = points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp"))
        failure = points.fails("CreateSystem", request)
        assert (failure.code, failure.reason, failure.domain) == (
            grpc.StatusCode.ALREADY_EXISTS,
            "SYSTEM_EXISTS",
            "tally",
        )
        assert failure.metadata == {"system_key": "xp"}

    def test_unknown_enum_number_is_refused_naming_the_field(self, points: Points) -> None:
        request = points_pb2.CreateSystemRequest(
            system=points_pb2.PointsSystem(key="xp", level_basis=99)  # type: ignore[arg-type]
        )
        failure = points.fails("CreateSystem", request)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
        )
        assert failure.fields == ["system.level_basis"]

    def test_update_with_a_mask_sets_only_named_fields(self, points: Points, clock: Clock) -> None:
        points.create_system("xp", name="XP", description="old")
        clock.now = T0 + timedelta(hours=1)
        request = points_pb2.UpdateSystemRequest(
            system=points_pb2.PointsSystem(
                key="xp", name="ignored", description="new", max_points=9
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description", "max_points"]),
        )
        system = points.call("UpdateSystem", request).system
        assert (system.name, system.description, system.max_points) == ("XP", "new", 9)
        assert system.update_time.ToDatetime(tzinfo=T0.tzinfo) == clock.now
        got = points.call("GetSystem", points_pb2.GetSystemRequest(key="xp")).system
        assert got == system

    def test_get_unknown_system(self, points: Points) -> None:
        failure = points.fails("GetSystem", points_pb2.GetSystemRequest(key="nope"))
        assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "SYSTEM_NOT_FOUND")

    def test_list_pages(self, points: Points) -> None:
        for key in ("c", "a", "b"):
            points.create_system(key)
        first = points.call("ListSystems", points_pb2.ListSystemsRequest(page_size=2))
        assert [s.key for s in first.systems] == ["a", "b"]
        assert first.next_page_token
        rest = points.call(
            "ListSystems",
            points_pb2.ListSystemsRequest(page_size=2, page_token=first.next_page_token),
        )
        assert ([s.key for s in rest.systems], rest.next_page_token) == (["c"], "")


# -- writes --------------------------------------------------------------------------------


class TestAward:
    def test_request_fields_reach_the_entry_and_balance(self, points: Points) -> None:
        points.create_system()
        metadata = struct_pb2.Struct()
        metadata.update({"order": "A-1", "lines": [1, 2]})
        request = points_pb2.AwardRequest(
            system_key="xp",
            user=common_pb2.User(id="alice", display_name="Alice"),
            amount=30,
            reason="welcome",
            metadata=metadata,
            idempotency_key="signup-alice",
            expire_time=stamp(3600),
        )
        response = points.call("Award", request)
        entry = response.entry
        assert entry.type == common_pb2.ENTRY_TYPE_AWARD
        assert (entry.system_key, entry.user_id, entry.amount, entry.base_amount) == (
            "xp",
            "alice",
            30,
            30,
        )
        assert (entry.multiplier, entry.capped, entry.balance_after) == (1.0, False, 30)
        assert (entry.reason, entry.idempotency_key) == ("welcome", "signup-alice")
        assert entry.metadata == metadata
        assert entry.expire_time == stamp(3600)
        assert entry.create_time == stamp(0)
        assert entry.id
        assert entry.sequence > 0
        assert not entry.reverses_entry_id
        balance = response.balance
        assert (balance.balance, balance.total_earned, balance.total_spent) == (30, 30, 0)
        assert balance.last_earned_time == stamp(0)
        assert response.replayed is False
        assert not response.HasField("level_change")

    def test_cap_shows_as_capped_with_the_base_amount(self, points: Points) -> None:
        points.create_system(max_points=100)
        points.award("alice", 90)
        response = points.award("alice", 50)
        assert (response.entry.amount, response.entry.base_amount, response.entry.capped) == (
            10,
            50,
            True,
        )
        assert (response.balance.balance, response.balance.max_points) == (100, 100)

    def test_validate_only_shows_the_result_and_writes_nothing(self, points: Points) -> None:
        points.create_system()
        points.award("alice", 5)
        dry = points.award("alice", 20, validate_only=True)
        assert (dry.entry.amount, dry.balance.balance, dry.entry.id) == (20, 25, "")
        assert points.balance("alice").balance.balance == 5

    def test_idempotency_key_from_call_metadata(self, points: Points) -> None:
        points.create_system()
        first = points.award("alice", 50, key="order-1")
        assert first.entry.idempotency_key == "order-1"
        again = points.award("alice", 50, key="order-1")
        assert again.replayed is True
        assert again.entry == first.entry
        assert again.balance == first.balance
        # The same key in the field is the same request.
        same = points.award("alice", 50, idempotency_key="order-1")
        assert (same.replayed, same.entry.id) == (True, first.entry.id)
        assert points.balance("alice").balance.balance == 50

    def test_same_key_in_field_and_metadata_is_fine(self, points: Points) -> None:
        points.create_system()
        response = points.award("alice", 5, key="k1", idempotency_key="k1")
        assert (response.entry.idempotency_key, response.replayed) == ("k1", False)

    def test_different_keys_in_field_and_metadata_are_a_mismatch(self, points: Points) -> None:
        points.create_system()
        request = points_pb2.AwardRequest(
            system_key="xp", user=common_pb2.User(id="alice"), amount=5, idempotency_key="k1"
        )
        failure = points.fails("Award", request, key="k2")
        assert (failure.code, failure.reason, failure.domain) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "IDEMPOTENCY_KEY_MISMATCH",
            "tally",
        )
        assert failure.fields == ["idempotency_key"]
        # Nothing was written: the user was never created.
        missing = points.fails(
            "GetBalance", points_pb2.GetBalanceRequest(system_key="xp", user_id="alice")
        )
        assert missing.reason == "USER_NOT_FOUND"

    def test_invalid_key_in_metadata_is_idempotency_key_invalid(self, points: Points) -> None:
        points.create_system()
        request = points_pb2.AwardRequest(
            system_key="xp", user=common_pb2.User(id="alice"), amount=5
        )
        failure = points.fails("Award", request, key="not a key")
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "IDEMPOTENCY_KEY_INVALID",
        )
        assert failure.fields == ["idempotency_key"]

    def test_bad_fields_are_all_named(self, points: Points) -> None:
        points.create_system()
        request = points_pb2.AwardRequest(
            system_key="xp",
            user=common_pb2.User(id=""),
            amount=0,
            reason="r" * 501,
            expire_time=stamp(-1),
        )
        failure = points.fails("Award", request)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
        )
        assert failure.fields == ["user.id", "amount", "reason", "expire_time"]


class TestDeductAndReverse:
    def test_deduct_with_key_in_metadata_and_replay(self, points: Points) -> None:
        points.create_system()
        points.award("alice", 50)
        request = points_pb2.DeductRequest(
            system_key="xp", user_id="alice", amount=20, reason="shop"
        )
        first = points.call("Deduct", request, key="buy-1")
        assert first.entry.type == common_pb2.ENTRY_TYPE_DEDUCT
        assert (first.entry.amount, first.entry.idempotency_key) == (-20, "buy-1")
        assert (first.balance.balance, first.balance.total_spent, first.replayed) == (
            30,
            20,
            False,
        )
        again = points.call("Deduct", request, key="buy-1")
        assert (again.replayed, again.entry.id) == (True, first.entry.id)
        assert points.balance("alice").balance.balance == 30

    def test_deduct_key_mismatch(self, points: Points) -> None:
        points.create_system()
        points.award("alice", 50)
        request = points_pb2.DeductRequest(
            system_key="xp", user_id="alice", amount=20, idempotency_key="a"
        )
        assert points.fails("Deduct", request, key="b").reason == "IDEMPOTENCY_KEY_MISMATCH"
        assert points.balance("alice").balance.balance == 50

    def test_insufficient_points(self, points: Points) -> None:
        points.create_system()
        points.award("alice", 5)
        request = points_pb2.DeductRequest(system_key="xp", user_id="alice", amount=6)
        failure = points.fails("Deduct", request)
        assert (failure.code, failure.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "INSUFFICIENT_POINTS",
        )
        assert failure.metadata == {"available": "5", "requested": "6"}

    def test_reverse_an_award(self, points: Points) -> None:
        points.create_system()
        original = points.award("alice", 40).entry
        points.award("alice", 5)
        request = points_pb2.ReverseRequest(entry_id=original.id, reason="mistake")
        result = points.call("Reverse", request, key="undo-1")
        entry = result.entry
        assert entry.type == common_pb2.ENTRY_TYPE_REVERSAL
        assert (entry.amount, entry.reverses_entry_id, entry.reason) == (
            -40,
            original.id,
            "mistake",
        )
        assert (entry.idempotency_key, result.balance.balance, result.balance.total_earned) == (
            "undo-1",
            5,
            5,
        )
        again = points.call("Reverse", request, key="undo-1")
        assert (again.replayed, again.entry.id) == (True, entry.id)
        twice = points.fails("Reverse", points_pb2.ReverseRequest(entry_id=original.id))
        assert (twice.code, twice.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "ALREADY_REVERSED",
        )
        assert twice.metadata == {"entry_id": original.id, "reversal_entry_id": entry.id}

    def test_reverse_key_mismatch_and_unknown_entry(self, points: Points) -> None:
        points.create_system()
        original = points.award("alice", 40).entry
        mismatch = points.fails(
            "Reverse", points_pb2.ReverseRequest(entry_id=original.id, idempotency_key="a"), "b"
        )
        assert mismatch.reason == "IDEMPOTENCY_KEY_MISMATCH"
        unknown = points.fails(
            "Reverse", points_pb2.ReverseRequest(entry_id="6f1c2a7e-0000-4000-8000-000000000000")
        )
        assert (unknown.code, unknown.reason) == (grpc.StatusCode.NOT_FOUND, "ENTRY_NOT_FOUND")
        assert points.balance("alice").balance.balance == 40

    def test_reverse_looks_among_the_named_users_entries(self, points: Points) -> None:
        points.create_system()
        original = points.award("alice", 40).entry
        points.award("bob", 1)
        of_bob = points.fails(
            "Reverse", points_pb2.ReverseRequest(entry_id=original.id, user_id="bob")
        )
        assert (of_bob.code, of_bob.reason) == (grpc.StatusCode.NOT_FOUND, "ENTRY_NOT_FOUND")
        bad = points.fails("Reverse", points_pb2.ReverseRequest(entry_id=original.id, user_id="\n"))
        assert (bad.code, bad.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["user_id"])
        assert points.balance("alice").balance.balance == 40
        request = points_pb2.ReverseRequest(entry_id=original.id, user_id="alice")
        reversed_ = points.call("Reverse", request)
        assert (reversed_.entry.user_id, reversed_.balance.balance) == ("alice", 0)


class TestAwardBatch:
    def test_results_in_input_order_with_per_item_errors(self, points: Points) -> None:
        points.create_system()
        items = [
            points_pb2.AwardBatchItem(system_key="xp", user=common_pb2.User(id="a"), amount=1),
            points_pb2.AwardBatchItem(system_key="xp", user=common_pb2.User(id="b"), amount=0),
            points_pb2.AwardBatchItem(system_key="no", user=common_pb2.User(id="c"), amount=3),
            points_pb2.AwardBatchItem(system_key="xp", user=common_pb2.User(id="d"), amount=4),
        ]
        response = points.call("AwardBatch", points_pb2.AwardBatchRequest(items=items))
        assert (response.processed, response.failed) == (2, 2)
        assert [r.user_id for r in response.results] == ["a", "b", "c", "d"]
        ok_a, bad_b, bad_c, ok_d = response.results
        assert (ok_a.entry.amount, ok_a.balance.balance, ok_a.HasField("error")) == (1, 1, False)
        assert (ok_d.entry.amount, ok_d.HasField("error")) == (4, False)
        assert (bad_b.error.code, bad_b.error.reason) == (
            code_pb2.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
        )
        assert "items[1].amount" in bad_b.error.message
        assert not bad_b.HasField("entry")
        assert (bad_c.error.code, bad_c.error.reason) == (code_pb2.NOT_FOUND, "SYSTEM_NOT_FOUND")
        # `status` is the same code, named in JSON.
        assert [bad_b.error.status, bad_c.error.status] == [bad_b.error.code, bad_c.error.code]
        assert json_format.MessageToDict(bad_c.error)["status"] == "NOT_FOUND"
        # Item errors carry the ErrorInfo metadata a failed Award would.
        assert dict(bad_b.error.metadata) == {"field": "items[1].amount"}
        assert dict(bad_c.error.metadata) == {"system_key": "no"}
        assert not ok_a.error.metadata

    def test_one_metadata_key_covers_the_batch_item_by_item(self, points: Points) -> None:
        points.create_system()
        items = [
            points_pb2.AwardBatchItem(system_key="xp", user=common_pb2.User(id="a"), amount=1),
            points_pb2.AwardBatchItem(
                system_key="xp", user=common_pb2.User(id="b"), amount=2, idempotency_key="own"
            ),
        ]
        request = points_pb2.AwardBatchRequest(items=items)
        first = points.call("AwardBatch", request, key="batch-7")
        assert [r.entry.idempotency_key for r in first.results] == ["batch-7.0", "own"]
        assert [r.replayed for r in first.results] == [False, False]
        again = points.call("AwardBatch", request, key="batch-7")
        assert [r.replayed for r in again.results] == [True, True]
        assert [r.entry.id for r in again.results] == [r.entry.id for r in first.results]
        assert points.balance("a").balance.balance == 1

    def test_empty_batch_is_refused(self, points: Points) -> None:
        failure = points.fails("AwardBatch", points_pb2.AwardBatchRequest())
        assert (failure.code, failure.reason, failure.fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "VALIDATION_FAILED",
            ["items"],
        )


# -- reads ---------------------------------------------------------------------------------


class TestReads:
    def test_recent_entries_default_to_ten_and_zero_means_none(self, points: Points) -> None:
        """recent_entries is `optional`: unset means 10, an explicit 0 means none."""
        points.create_system()
        ids = [points.award("alice", 1).entry.id for _ in range(12)]
        default = points.balance("alice")
        assert [e.id for e in default.recent] == ids[::-1][:10]
        assert default.balance.balance == 12
        assert list(points.balance("alice", recent_entries=0).recent) == []
        assert len(points.balance("alice", recent_entries=3).recent) == 3

    def test_unknown_user(self, points: Points) -> None:
        points.create_system()
        failure = points.fails(
            "GetBalance", points_pb2.GetBalanceRequest(system_key="xp", user_id="ghost")
        )
        assert (failure.code, failure.reason, failure.metadata) == (
            grpc.StatusCode.NOT_FOUND,
            "USER_NOT_FOUND",
            {"system_key": "xp", "user_id": "ghost"},  # as common.proto documents it
        )

    def test_list_transactions_filters_by_type_and_pages(self, points: Points) -> None:
        points.create_system()
        for _ in range(3):
            points.award("alice", 10)
        points.call("Deduct", points_pb2.DeductRequest(system_key="xp", user_id="alice", amount=5))
        awards = points_pb2.ListTransactionsRequest(
            system_key="xp", user_id="alice", page_size=2, types=[common_pb2.ENTRY_TYPE_AWARD]
        )
        first = points.call("ListTransactions", awards)
        assert [e.type for e in first.entries] == [common_pb2.ENTRY_TYPE_AWARD] * 2
        assert first.total_size == 3
        awards.page_token = first.next_page_token
        rest = points.call("ListTransactions", awards)
        assert (len(rest.entries), rest.next_page_token) == (1, "")
        seqs = [e.sequence for e in [*first.entries, *rest.entries]]
        assert seqs == sorted(seqs, reverse=True)

    def test_list_transactions_unknown_type_number(self, points: Points) -> None:
        request = points_pb2.ListTransactionsRequest(
            system_key="xp",
            user_id="alice",
            types=[common_pb2.ENTRY_TYPE_AWARD, 42],  # type: ignore[list-item]
        )
        failure = points.fails("ListTransactions", request)
        assert (failure.reason, failure.fields) == ("VALIDATION_FAILED", ["types[1]"])

    def test_stream_history_oldest_first_within_the_window(
        self, points: Points, clock: Clock
    ) -> None:
        points.create_system()
        for second in range(4):
            clock.now = T0 + timedelta(seconds=second)
            points.award("alice", second + 1)
        request = points_pb2.StreamHistoryRequest(
            system_key="xp", user_id="alice", start_time=stamp(1), end_time=stamp(3)
        )
        responses = points.stream("StreamHistory", request)
        assert [e.amount for r in responses for e in r.entries] == [2, 3]
        everything = points.stream(
            "StreamHistory", points_pb2.StreamHistoryRequest(system_key="xp", user_id="alice")
        )
        assert [e.balance_after for r in everything for e in r.entries] == [1, 3, 6, 10]

    def test_stream_history_fails_before_the_first_entry(self, points: Points) -> None:
        points.create_system()
        request = points_pb2.StreamHistoryRequest(system_key="xp", user_id="ghost")
        with pytest.raises(CallFailed) as caught:
            points.stream("StreamHistory", request)
        assert caught.value.failure.reason == "USER_NOT_FOUND"


# -- errors.to_status_proto ----------------------------------------------------------------


def unpack(status: status_pb2.Status) -> dict[str, Message]:
    """The status details by message name; each kind at most once."""
    kinds: dict[str, Callable[[], Message]] = {
        "ErrorInfo": error_details_pb2.ErrorInfo,
        "BadRequest": error_details_pb2.BadRequest,
        "RetryInfo": error_details_pb2.RetryInfo,
    }
    found: dict[str, Message] = {}
    for detail in status.details:
        name = detail.TypeName().rsplit(".", 1)[-1]
        assert name in kinds, detail.TypeName()
        assert name not in found, detail.TypeName()
        message = kinds[name]()
        assert detail.Unpack(message)
        found[name] = message
    return found


ENTRY = "6f1c2a7e-0000-4000-8000-000000000000"
CASES: list[tuple[TallyError, int, str]] = [
    (domain.ValidationFailed([FieldViolation("amount", "too small")]), 3, "VALIDATION_FAILED"),
    (domain.IdempotencyKeyInvalid([FieldViolation("k", "bad")]), 3, "IDEMPOTENCY_KEY_INVALID"),
    (domain.IdempotencyKeyMismatch([FieldViolation("k", "x")]), 3, "IDEMPOTENCY_KEY_MISMATCH"),
    (domain.SystemNotFound("xp"), 5, "SYSTEM_NOT_FOUND"),
    (domain.UserNotFound("alice", "xp"), 5, "USER_NOT_FOUND"),
    (domain.TriggerNotFound("t1"), 5, "TRIGGER_NOT_FOUND"),
    (domain.LevelNotFound("gold"), 5, "LEVEL_NOT_FOUND"),
    (domain.BoostNotFound("b1"), 5, "BOOST_NOT_FOUND"),
    (domain.EntryNotFound(ENTRY), 5, "ENTRY_NOT_FOUND"),
    (domain.NoMatchingTrigger("quest.done"), 5, "NO_MATCHING_TRIGGER"),
    (domain.SystemExists("xp"), 6, "SYSTEM_EXISTS"),
    (domain.LevelExists("xp", "key", "gold"), 6, "LEVEL_EXISTS"),
    (domain.IdempotencyKeyReused("k1"), 6, "IDEMPOTENCY_KEY_REUSED"),
    (domain.InsufficientPoints(available=3, requested=5), 9, "INSUFFICIENT_POINTS"),
    (domain.AlreadyReversed(ENTRY, "r1"), 9, "ALREADY_REVERSED"),
    (domain.NotReversible(ENTRY, "ENTRY_TYPE_AWARD", "expired"), 9, "NOT_REVERSIBLE"),
    (domain.RateLimited(0.25), 8, "RATE_LIMITED"),
    (domain.ApiKeyMissing(), 16, "API_KEY_MISSING"),
    (domain.ApiKeyInvalid(), 16, "API_KEY_INVALID"),
    (domain.ApiKeyRevoked("4f2a9c0e11b7"), 16, "API_KEY_REVOKED"),
    (domain.TokenInvalid("bad signature"), 16, "TOKEN_INVALID"),
    (domain.TokenExpired("2026-01-01T12:00:00Z"), 16, "TOKEN_EXPIRED"),
    (domain.ScopeInsufficient("read key", scope="read"), 7, "SCOPE_INSUFFICIENT"),
    (domain.StoreUnavailable(), 14, "STORE_UNAVAILABLE"),
]


@pytest.mark.parametrize(("error", "code", "reason"), CASES, ids=[c[2] for c in CASES])
def test_status_code_and_error_info(error: TallyError, code: int, reason: str) -> None:
    status = errors.to_status_proto(error)
    assert (status.code, status.message) == (code, error.message)
    info = unpack(status)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.domain, info.reason) == ("tally", reason)
    assert dict(info.metadata) == error.metadata
    assert errors.status_code(error).value[0] == code
    assert re.fullmatch(r"[A-Z0-9_]{1,63}", reason)  # google.rpc.ErrorInfo's reason format


def test_every_category_has_a_code() -> None:
    assert set(errors.CODES) == set(domain.Category)


def test_every_domain_error_is_covered_above() -> None:
    """A new error class must be added to CASES, so its code is pinned."""

    def leaves(cls: type[TallyError]) -> set[type[TallyError]]:
        found = {cls} if "reason" in vars(cls) else set()
        for sub in cls.__subclasses__():
            if sub.__module__ == domain.__name__:
                found |= leaves(sub)
        return found

    assert leaves(TallyError) == {
        type(e) for e, _, _ in CASES if type(e).__module__ == domain.__name__
    }


def test_error_info_metadata_is_what_callers_branch_on() -> None:
    info = unpack(errors.to_status_proto(domain.InsufficientPoints(available=3, requested=5)))
    assert dict(info["ErrorInfo"].metadata) == {"available": "3", "requested": "5"}  # type: ignore[attr-defined]


def test_validation_errors_carry_every_field_violation_in_order() -> None:
    violations = [
        FieldViolation("user.id", "is required"),
        FieldViolation("amount", "must be between 1 and 1,000,000,000, got 0"),
        FieldViolation("items[2].reason", "must be at most 500 characters, got 501"),
    ]
    for error in (
        domain.ValidationFailed(violations),
        domain.IdempotencyKeyInvalid(violations[:1]),
    ):
        found = unpack(errors.to_status_proto(error))
        bad = found["BadRequest"]
        assert isinstance(bad, error_details_pb2.BadRequest)
        expected = [(v.field, v.description) for v in error.violations]
        assert [(v.field, v.description) for v in bad.field_violations] == expected
        assert "RetryInfo" not in found


def test_only_validation_errors_carry_bad_request() -> None:
    for error, _, _ in CASES:
        found = unpack(errors.to_status_proto(error))
        assert ("BadRequest" in found) == isinstance(error, domain.ValidationFailed)


def test_rate_limited_carries_retry_info() -> None:
    found = unpack(errors.to_status_proto(domain.RateLimited(1.5)))
    retry = found["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay == duration_pb2.Duration(seconds=1, nanos=500_000_000)
    for error, _, _ in CASES:
        has_retry = "RetryInfo" in unpack(errors.to_status_proto(error))
        assert has_retry == isinstance(error, domain.RateLimited)


def test_to_status_packs_the_same_status_into_the_trailers() -> None:
    error = domain.InsufficientPoints(available=3, requested=5)
    status = errors.to_status(error)
    assert status.code is grpc.StatusCode.FAILED_PRECONDITION
    assert status.details == error.message
    (key, value), *_ = status.trailing_metadata
    assert key == DETAILS_KEY
    assert status_pb2.Status.FromString(value) == errors.to_status_proto(error)


def test_an_error_always_fits_in_the_trailers(points: Points) -> None:
    """gRPC refuses trailers past 8 KiB by default; an error about a long key must still
    arrive as itself (its message is already cut to 100 characters)."""
    failure = points.fails("GetSystem", points_pb2.GetSystemRequest(key="k" * 20_000))
    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, "SYSTEM_NOT_FOUND")
    assert len(failure.message) < 300
    assert failure.details_size < 4096


def test_every_reason_is_an_error_reason_of_the_protos() -> None:
    enum = common_pb2.ErrorReason.DESCRIPTOR
    documented = {v.name.removeprefix("ERROR_REASON_") for v in enum.values}
    assert {reason for _, _, reason in CASES} <= documented
