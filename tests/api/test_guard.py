"""The guard's tables and its handling of whatever metadata a caller sends."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tally.v1
from server import app
from server.api.guard import Guard
from server.api.scopes import REQUIRED_SCOPE, USER_TOKEN_RPCS
from server.domain.access import Scope
from server.domain.errors import ScopeInsufficient, Unauthenticated
from server.services.held.key_ring import KeyRing
from server.services.operations import api_keys
from server.store.database import SqlStore
from tally.v1 import points_pb2


def proto_methods() -> dict[str, MethodDescriptor]:
    """Every RPC of every service in every generated tally.v1 module."""
    found: dict[str, MethodDescriptor] = {}
    for info in pkgutil.iter_modules(tally.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"tally.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found[f"/{service.full_name}/{method.name}"] = method
    return found


def test_every_rpc_of_the_protos_has_a_scope() -> None:
    methods = proto_methods()
    assert len(methods) >= 30  # the four services
    missing = sorted(set(methods) - set(REQUIRED_SCOPE))
    assert not missing, f"add these RPCs to server/api/scopes.py: {missing}"


def test_user_tokens_may_call_what_the_contract_lists() -> None:
    assert {m.rsplit("/", 1)[-1] for m in USER_TOKEN_RPCS} == {
        "GetBalance",
        "ListTransactions",
        "StreamHistory",
        "GetUserPointsSummary",
        "GetUserLevel",
        "GetMultiplier",
        "GetSystem",
        "ListLevels",
    }
    assert all(REQUIRED_SCOPE[m] is Scope.READ for m in USER_TOKEN_RPCS)
    methods = proto_methods()
    for method, field in USER_TOKEN_RPCS.items():
        # the guard reads a token's user from the request: a request stream has none
        assert not methods[method].client_streaming, method
        request = methods[method].input_type
        if field is None:
            assert "user_id" not in request.fields_by_name, method
        else:
            assert request.fields_by_name[field].type == FieldDescriptor.TYPE_STRING, method


@pytest.fixture
def guard(store: SqlStore) -> Guard:
    return Guard(KeyRing(store, max_age=60), app.utc_now)


metadata_values = st.text(max_size=300) | st.binary(max_size=300)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.none() | metadata_values,
    authorization=st.none() | metadata_values | st.text(max_size=300).map("Bearer ".__add__),
)
def test_any_metadata_is_unauthenticated_never_another_error(
    guard: Guard, key: str | bytes | None, authorization: str | bytes | None
) -> None:
    metadata: list[tuple[str, str | bytes]] = []
    if key is not None:
        metadata.append(("x-api-key", key))
    if authorization is not None:
        metadata.append(("authorization", authorization))
    request = points_pb2.GetBalanceRequest(system_key="xp", user_id="alice")
    with pytest.raises(Unauthenticated):
        guard.caller_of("/tally.v1.PointsService/GetBalance", metadata, request)


def test_a_method_missing_from_the_table_needs_admin(guard: Guard, store: SqlStore) -> None:
    write = api_keys.create_key(store, "w", Scope.WRITE, (), app.utc_now()).text
    admin = api_keys.create_key(store, "a", Scope.ADMIN, (), app.utc_now()).text
    with pytest.raises(ScopeInsufficient):
        guard.caller_of("/tally.v1.PointsService/SomethingNew", [("x-api-key", write)], None)
    guard.caller_of("/tally.v1.PointsService/SomethingNew", [("x-api-key", admin)], None)
