"""No request can produce INTERNAL: arbitrary field values get a clear status, and
whatever was accepted leaves every account equal to the sum of its ledger."""

from __future__ import annotations

import base64
import json
import math

import grpc
import pytest
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from server.store.database import SqlStore
from server.store.models import AccountRow, LedgerEntryRow
from tally.v1 import common_pb2, points_pb2
from tally.v1.points_pb2_grpc import PointsServiceStub
from tests.strategies import FORBIDDEN, INT64, structs, texts, timestamps


def award_requests() -> st.SearchStrategy[points_pb2.AwardRequest]:
    return st.builds(
        points_pb2.AwardRequest,
        system_key=st.sampled_from(["xp", "nope", "XP", ""]),
        user=st.builds(
            common_pb2.User,
            id=texts,
            display_name=texts,
            email=texts,
            attributes=st.dictionaries(texts, texts, max_size=2),
        ),
        amount=st.one_of(INT64, st.integers(-5, 5), st.just(1_000_000_000)),
        reason=texts,
        metadata=structs(),
        idempotency_key=st.sampled_from(["", "k1", "k 2", "a" * 256, "ok:key.1"]),
        expire_time=timestamps(),
        validate_only=st.booleans(),
    )


def deduct_requests() -> st.SearchStrategy[points_pb2.DeductRequest]:
    return st.builds(
        points_pb2.DeductRequest,
        system_key=st.sampled_from(["xp", "nope"]),
        user_id=texts,
        amount=st.one_of(INT64, st.integers(-5, 50)),
        reason=texts,
        metadata=structs(),
        idempotency_key=st.sampled_from(["", "d1", "bad key"]),
    )


def forged_tokens(query: str) -> st.SearchStrategy[str]:
    """Page tokens rebuilt by hand: the format is opaque, not secret."""

    def encode(position: object) -> str:
        raw = json.dumps({"p": position, "q": query}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    positions = st.one_of(st.integers(), texts, st.none(), st.floats(allow_nan=False))
    return positions.map(encode)


def read_requests() -> st.SearchStrategy[tuple[str, object]]:
    return st.one_of(
        st.tuples(
            st.just("GetBalance"),
            st.builds(points_pb2.GetBalanceRequest, system_key=texts, user_id=texts),
        ),
        st.tuples(
            st.just("ListTransactions"),
            st.builds(
                points_pb2.ListTransactionsRequest,
                system_key=st.sampled_from(["xp", "nope"]),
                user_id=texts,
                page_size=st.integers(-(2**31), 2**31 - 1),
                page_token=texts,
                types=st.lists(st.integers(0, 2**31 - 1), max_size=3),
            ),
        ),
        st.tuples(
            st.just("GetSystem"),
            st.builds(points_pb2.GetSystemRequest, key=texts),
        ),
        st.tuples(
            st.just("ListSystems"),
            st.builds(
                points_pb2.ListSystemsRequest,
                page_size=st.integers(-(2**31), 2**31 - 1),
                page_token=texts | forged_tokens("systems"),
            ),
        ),
        st.tuples(
            st.just("Reverse"),
            st.builds(points_pb2.ReverseRequest, entry_id=texts, reason=texts),
        ),
        st.tuples(
            st.just("CreateSystem"),
            st.builds(
                points_pb2.CreateSystemRequest,
                system=st.builds(
                    points_pb2.PointsSystem,
                    key=texts,
                    name=texts,
                    max_points=INT64,
                    level_basis=st.integers(0, 2**31 - 1),
                ),
            ),
        ),
    )


def call(points: PointsServiceStub, method: str, request: object) -> None:
    try:
        rpc = getattr(points, method)
        result = rpc(request, timeout=10)
        if method == "StreamHistory":
            list(result)
    except grpc.RpcError as error:
        assert error.code() not in FORBIDDEN, (method, request, error.details())  # noqa: PT017
        assert len(error.details() or "") < 1000  # noqa: PT017


def ledger_is_whole(store: SqlStore) -> None:
    """Every account (a user in a system) holds the sum of its entries."""
    e, a = LedgerEntryRow, AccountRow
    with store.engine.connect() as connection:
        sums = {
            (system, user): total
            for system, user, total in connection.execute(
                select(e.system_key, e.user_id, func.sum(e.amount)).group_by(
                    e.system_key, e.user_id
                )
            ).all()
        }
        balances = {
            (system, user): balance
            for system, user, balance in connection.execute(
                select(a.system_key, a.user_id, a.balance)
            ).all()
        }
    assert balances == sums


@pytest.fixture
def seeded(points: PointsServiceStub) -> PointsServiceStub:
    points.CreateSystem(points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp")))
    return points


FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(request=award_requests())
def test_awards_never_fail_internally(
    seeded: PointsServiceStub, store: SqlStore, request: points_pb2.AwardRequest
) -> None:
    call(seeded, "Award", request)
    ledger_is_whole(store)


@FUZZ
@given(request=deduct_requests())
def test_deducts_never_fail_internally(
    seeded: PointsServiceStub, store: SqlStore, request: points_pb2.DeductRequest
) -> None:
    call(seeded, "Deduct", request)
    ledger_is_whole(store)


@FUZZ
@given(method_and_request=read_requests())
def test_other_calls_never_fail_internally(
    seeded: PointsServiceStub, method_and_request: tuple[str, object]
) -> None:
    call(seeded, *method_and_request)


def test_nan_metadata_is_invalid(seeded: PointsServiceStub) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"x": math.nan})
    with pytest.raises(grpc.RpcError) as caught:
        seeded.Award(
            points_pb2.AwardRequest(
                system_key="xp", user=common_pb2.User(id="a"), amount=1, metadata=metadata
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
