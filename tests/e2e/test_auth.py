"""Who may call, end to end: keys, scopes, systems-limited keys, user tokens, the write
limit and the access log, against the real server over each store."""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from server import app
from server.api.scopes import REQUIRED_SCOPE, USER_TOKEN_RPCS
from server.domain import tokens
from server.domain.access import Scope
from server.services.operations import api_keys
from server.settings import Settings
from server.store.database import SqlStore
from tally.v1 import auth_pb2, auth_pb2_grpc, common_pb2, points_pb2, points_pb2_grpc
from tests.e2e.conftest import WithMetadata, keyed, new_key
from tests.e2e.test_api import error_of

METHODS: dict[str, MethodDescriptor] = {}
for module in ("points_pb2", "levels_pb2", "boosts_pb2", "auth_pb2"):
    file = __import__(f"tally.v1.{module}", fromlist=["DESCRIPTOR"]).DESCRIPTOR
    for service in file.services_by_name.values():
        for m in service.methods:
            METHODS[f"/{service.full_name}/{m.name}"] = m
DENIED = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


class Clock:
    """The server's wall clock, moved by hand (token expiry)."""

    def __init__(self) -> None:
        self.now = app.utc_now()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def served(store: SqlStore, clock: Clock) -> Iterator[app.App]:
    """Keys are reloaded on every call (bound 0 s), so revocation shows at once; one
    write per user is allowed, and the next only after 1,000 s."""
    settings = Settings(
        listen="127.0.0.1:0",
        threads=8,
        key_cache_seconds=0,
        rate_limit_per_second=0.001,
        rate_limit_burst=3,
    )
    built = app.build(settings, store, clock)
    built.start()
    yield built
    built.stop(grace_seconds=1)


@pytest.fixture
def bare(served: app.App) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        yield channel


@pytest.fixture
def admin(bare: grpc.Channel, store: SqlStore) -> points_pb2_grpc.PointsServiceStub:
    stub = points_pb2_grpc.PointsServiceStub(keyed(bare, new_key(store)))
    for key in ("xp", "coins"):
        stub.CreateSystem(points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key=key)))
    return stub


def call(channel: grpc.Channel, method: str, request: Message) -> grpc.StatusCode:
    """Call any RPC by name; its status code."""
    descriptor = METHODS[method]
    response = message_factory.GetMessageClass(descriptor.output_type).FromString
    body = request.SerializeToString()
    try:
        if descriptor.server_streaming:
            list(channel.unary_stream(method, bytes, response)(body))
        else:
            channel.unary_unary(method, bytes, response)(body)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def request_for(method: str, **fields: Any) -> Message:
    message = message_factory.GetMessageClass(METHODS[method].input_type)()
    for name, value in fields.items():
        if name in message.DESCRIPTOR.fields_by_name:
            setattr(message, name, value)
    return message


def failure(
    action: Callable[[], object],
) -> tuple[grpc.StatusCode, str, dict[str, str], list[str]]:
    with pytest.raises(grpc.RpcError) as caught:
        action()
    return error_of(caught.value)


def token_for(
    channel: grpc.Channel, key: str, user: str, ttl: timedelta | None = None
) -> auth_pb2.CreateUserTokenResponse:
    request = auth_pb2.CreateUserTokenRequest(user_id=user)
    if ttl is not None:
        request.ttl.CopyFrom(duration_pb2.Duration(seconds=int(ttl.total_seconds())))
    stub = auth_pb2_grpc.AuthServiceStub(keyed(channel, key))
    response: auth_pb2.CreateUserTokenResponse = stub.CreateUserToken(request)
    return response


def bearer(channel: grpc.Channel, token: str) -> grpc.Channel:
    return grpc.intercept_channel(channel, WithMetadata(("authorization", f"Bearer {token}")))


def balance_request(user: str = "alice", system: str = "xp") -> points_pb2.GetBalanceRequest:
    return points_pb2.GetBalanceRequest(system_key=system, user_id=user)


# -- keys ------------------------------------------------------------------------------------


def test_no_key_an_unknown_key_and_a_revoked_key(
    bare: grpc.Channel, store: SqlStore, admin: points_pb2_grpc.PointsServiceStub
) -> None:
    stub = points_pb2_grpc.PointsServiceStub(bare)
    code, reason, metadata, _ = failure(lambda: stub.ListSystems(points_pb2.ListSystemsRequest()))
    assert (code, reason, metadata) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_MISSING",
        {"metadata_key": "x-api-key"},
    )
    made = api_keys.create_key(store, "soon revoked", Scope.READ, (), app.utc_now())
    keyed_stub = points_pb2_grpc.PointsServiceStub(keyed(bare, made.text))
    keyed_stub.ListSystems(points_pb2.ListSystemsRequest())
    api_keys.revoke_key(store, made.key.id, app.utc_now())
    code, reason, metadata, _ = failure(
        lambda: keyed_stub.ListSystems(points_pb2.ListSystemsRequest())
    )
    assert (code, reason, metadata) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "API_KEY_REVOKED",
        {"key_id": made.key.id},
    )
    wrong = made.text[:-4] + ("AAAA" if not made.text.endswith("AAAA") else "BBBB")
    for sent in ("definitely-wrong", wrong, "tally_" + "x" * 4000, " "):
        stub = points_pb2_grpc.PointsServiceStub(keyed(bare, sent))
        code, reason, _, _ = failure(lambda s=stub: s.ListSystems(points_pb2.ListSystemsRequest()))  # type: ignore[misc]
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID"), sent
    empty = points_pb2_grpc.PointsServiceStub(keyed(bare, ""))
    code, reason, _, _ = failure(lambda: empty.ListSystems(points_pb2.ListSystemsRequest()))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_MISSING")


@pytest.mark.parametrize("scope", list(Scope), ids=[s.value for s in Scope])
def test_each_scope_against_every_rpc(
    bare: grpc.Channel, store: SqlStore, admin: points_pb2_grpc.PointsServiceStub, scope: Scope
) -> None:
    """Every RPC of the protos, with an empty request: a key whose scope covers the RPC
    gets past the guard (to an answer, a validation error or UNIMPLEMENTED); any other
    is PERMISSION_DENIED. Nothing is written: empty requests are invalid."""
    channel = keyed(bare, new_key(store, scope))
    for method in METHODS:
        required = REQUIRED_SCOPE[method]
        code = call(channel, method, request_for(method))
        if scope.covers(required):
            assert code not in DENIED, (method, code)
        else:
            assert code is grpc.StatusCode.PERMISSION_DENIED, (method, code)


def test_scope_errors_say_what_was_needed(bare: grpc.Channel, store: SqlStore) -> None:
    stub = points_pb2_grpc.PointsServiceStub(keyed(bare, new_key(store, Scope.READ)))
    award = points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id="a"), amount=1)
    code, reason, metadata, _ = failure(lambda: stub.Award(award))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")
    assert metadata == {"scope": "read", "required_scope": "write"}


def test_a_key_limited_to_one_system(
    bare: grpc.Channel, store: SqlStore, admin: points_pb2_grpc.PointsServiceStub
) -> None:
    admin.Award(points_pb2.AwardRequest(system_key="coins", user=common_pb2.User(id="a"), amount=5))
    stub = points_pb2_grpc.PointsServiceStub(
        keyed(bare, new_key(store, Scope.WRITE, systems=("xp",)))
    )
    listed = stub.ListSystems(points_pb2.ListSystemsRequest())
    assert [s.key for s in listed.systems] == ["xp"]
    assert stub.GetSystem(points_pb2.GetSystemRequest(key="xp")).system.key == "xp"
    denied: list[Callable[[], object]] = [
        lambda: stub.GetSystem(points_pb2.GetSystemRequest(key="coins")),
        lambda: stub.GetBalance(balance_request("a", "coins")),
        lambda: stub.Award(
            points_pb2.AwardRequest(system_key="coins", user=common_pb2.User(id="a"), amount=1)
        ),
    ]
    for action in denied:
        code, reason, _, _ = failure(action)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")
    assert admin.GetBalance(balance_request("a", "coins")).balance.balance == 5
    awarded = stub.Award(
        points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id="a"), amount=2)
    )
    assert awarded.balance.balance == 2


def test_made_up_keys_and_forged_tokens_do_not_stall_a_real_key(store: SqlStore) -> None:
    """250 calls with random keys and 200 tokens of made-up key ids in flight: a real
    key's call answers within a second or two, and a key made in the store after the
    server started works on its first call (issue 21, H2)."""
    real = new_key(store, Scope.READ)
    built = app.build(Settings(listen="127.0.0.1:0"), store)  # the default threads
    built.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            stub = points_pb2_grpc.PointsServiceStub(channel)
            listing = points_pb2.ListSystemsRequest()

            def as_key(key: str) -> tuple[tuple[str, str]]:
                return (("x-api-key", key),)

            stub.ListSystems(listing, metadata=as_key(real), timeout=10)  # keys loaded
            later = new_key(store, Scope.READ)  # as `keys create` would, while serving
            stub.ListSystems(listing, metadata=as_key(later), timeout=10)
            expiry = app.utc_now() + timedelta(hours=1)
            forged = [
                tokens.sign(
                    tokens.TokenClaims(secrets.token_hex(6), "alice", expiry),
                    secrets.token_bytes(32),
                )
                for _ in range(200)
            ]
            abuse = [
                stub.ListSystems.future(
                    listing, metadata=as_key("tally_" + secrets.token_urlsafe(32)), timeout=30
                )
                for _ in range(250)
            ] + [
                stub.GetBalance.future(
                    balance_request(),
                    metadata=(("authorization", f"Bearer {token}"),),
                    timeout=30,
                )
                for token in forged
            ]
            time.sleep(0.5)
            started = time.monotonic()
            stub.ListSystems(listing, metadata=as_key(real), timeout=10)
            took = time.monotonic() - started
            reasons = Counter(error_of(f.exception())[1] for f in abuse)
            assert reasons == {"API_KEY_INVALID": 250, "TOKEN_INVALID": 200}
            assert took < 1.5, f"a real key's call took {took:.2f} s under made-up keys"
            time.sleep(0.2)  # the look-up budget has some reads again
            fresh = new_key(store, Scope.READ)
            stub.ListSystems(listing, metadata=as_key(fresh), timeout=10)
    finally:
        built.stop(grace_seconds=1)


# -- user tokens -------------------------------------------------------------------------------


def test_a_token_reads_its_own_users_points_and_nothing_else(
    bare: grpc.Channel, store: SqlStore, admin: points_pb2_grpc.PointsServiceStub
) -> None:
    admin.Award(
        points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id="alice"), amount=7)
    )
    made = token_for(bare, new_key(store, Scope.WRITE), "alice")
    as_alice = bearer(bare, made.token)
    stub = points_pb2_grpc.PointsServiceStub(as_alice)
    assert stub.GetBalance(balance_request()).balance.balance == 7
    for method in METHODS:
        code = call(as_alice, method, request_for(method, user_id="alice", key="xp"))
        if method in USER_TOKEN_RPCS:
            assert code not in DENIED, (method, code)
        else:
            assert code is grpc.StatusCode.PERMISSION_DENIED, (method, code)
    for method, field in USER_TOKEN_RPCS.items():
        if field is not None and method in METHODS:
            code = call(as_alice, method, request_for(method, user_id="bob", system_key="xp"))
            assert code is grpc.StatusCode.PERMISSION_DENIED, method
    code, reason, _, _ = failure(lambda: stub.GetBalance(balance_request("bob")))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")


def test_a_token_keeps_its_keys_systems(
    bare: grpc.Channel, store: SqlStore, admin: points_pb2_grpc.PointsServiceStub
) -> None:
    made = token_for(bare, new_key(store, Scope.WRITE, systems=("xp",)), "alice")
    stub = points_pb2_grpc.PointsServiceStub(bearer(bare, made.token))
    code, reason, _, _ = failure(lambda: stub.GetBalance(balance_request("alice", "coins")))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")


def test_create_user_token_needs_a_write_key_and_checks_ttl(
    bare: grpc.Channel, store: SqlStore, clock: Clock
) -> None:
    code, reason, _, _ = failure(lambda: token_for(bare, new_key(store, Scope.READ), "alice"))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SCOPE_INSUFFICIENT")
    write = new_key(store, Scope.WRITE)
    made = token_for(bare, write, "alice")
    assert made.expire_time.ToDatetime().timestamp() == pytest.approx(
        (clock.now + timedelta(hours=1)).timestamp(), abs=0.001
    )
    code, reason, _, fields = failure(lambda: token_for(bare, write, "alice", timedelta(days=2)))
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDATION_FAILED",
        ["ttl"],
    )


def test_expired_forged_and_orphaned_tokens(
    bare: grpc.Channel, store: SqlStore, admin: points_pb2_grpc.PointsServiceStub, clock: Clock
) -> None:
    made = api_keys.create_key(store, "front end", Scope.WRITE, (), app.utc_now())
    short = token_for(bare, made.text, "alice", timedelta(seconds=1)).token
    lasting = token_for(bare, made.text, "alice").token
    stub = points_pb2_grpc.PointsServiceStub(bearer(bare, short))
    with pytest.raises(grpc.RpcError) as not_found:  # alice has no points yet: past the guard
        stub.GetBalance(balance_request())
    assert not_found.value.code() is grpc.StatusCode.NOT_FOUND
    clock.now += timedelta(seconds=2)
    code, reason, _, _ = failure(lambda: stub.GetBalance(balance_request()))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")
    head, payload, signature = lasting.split(".")
    flipped = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    for sent in (f"{head}.{payload}.{flipped}", f"{head}.{payload[:-2]}.{signature}", "x" * 4000):
        forged = points_pb2_grpc.PointsServiceStub(bearer(bare, sent))
        code, reason, _, _ = failure(lambda f=forged: f.GetBalance(balance_request()))  # type: ignore[misc]
        assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    basic = grpc.intercept_channel(bare, WithMetadata(("authorization", "Basic abc")))
    code, reason, _, _ = failure(
        lambda: points_pb2_grpc.PointsServiceStub(basic).GetBalance(balance_request())
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    api_keys.revoke_key(store, made.key.id, app.utc_now())
    alive = points_pb2_grpc.PointsServiceStub(bearer(bare, lasting))
    code, reason, _, _ = failure(lambda: alive.GetBalance(balance_request()))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


# -- write limits, open services, the log ------------------------------------------------------


def test_a_burst_over_the_limit_is_refused_with_retry_info_and_writes_nothing(
    admin: points_pb2_grpc.PointsServiceStub,
) -> None:
    def award(key: str) -> points_pb2.AwardResponse:
        request = points_pb2.AwardRequest(
            system_key="xp", user=common_pb2.User(id="alice"), amount=1, idempotency_key=key
        )
        response: points_pb2.AwardResponse = admin.Award(request)
        return response

    for i in range(3):  # the burst
        award(f"k{i}")
    with pytest.raises(grpc.RpcError) as refused:
        award("k3")
    code, reason, metadata, _ = error_of(refused.value)
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert metadata["user_id"] == "alice"
    status = rpc_status.from_call(refused.value)
    assert status is not None
    retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    info = error_details_pb2.RetryInfo()
    assert len(retry) == 1
    assert retry[0].Unpack(info)
    assert 900 < info.retry_delay.seconds <= 1000  # one write per 1,000 s
    got = admin.GetBalance(balance_request("alice"))
    assert got.balance.balance == 3
    assert [e.idempotency_key for e in got.recent] == ["k2", "k1", "k0"]
    other = points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id="bob"), amount=1)
    assert admin.Award(other).balance.balance == 1  # bob has his own bucket


def test_health_and_reflection_need_no_key(bare: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(bare)
    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert {"tally.v1.PointsService", "tally.v1.AuthService", "grpc.health.v1.Health"} <= names


def test_one_log_line_per_call_with_the_key_id_and_never_the_key(
    bare: grpc.Channel, store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    made = api_keys.create_key(store, "logged", Scope.WRITE, (), app.utc_now())
    stub = points_pb2_grpc.PointsServiceStub(keyed(bare, made.text))
    with caplog.at_level(logging.INFO, logger="tally.access"):
        stub.ListSystems(points_pb2.ListSystemsRequest())
        token = token_for(bare, made.text, "alice").token
        with pytest.raises(grpc.RpcError):
            stub.CreateSystem(points_pb2.CreateSystemRequest())
        with pytest.raises(grpc.RpcError):
            points_pb2_grpc.PointsServiceStub(bare).ListSystems(points_pb2.ListSystemsRequest())
    # The fields are the record's own (a JSON log shows them as fields: tests/e2e/test_logs.py)
    lines = [vars(r) for r in caplog.records if r.name == "tally.access"]
    assert [
        (line["method"].rsplit("/", 1)[-1], line["code"], line["key_id"]) for line in lines
    ] == [
        ("ListSystems", "OK", made.key.id),
        ("CreateUserToken", "OK", made.key.id),
        ("CreateSystem", "PERMISSION_DENIED", made.key.id),
        ("ListSystems", "UNAUTHENTICATED", ""),
    ]
    assert all(isinstance(line["ms"], float) for line in lines)
    logged = caplog.text
    assert made.text not in logged
    assert token not in logged
