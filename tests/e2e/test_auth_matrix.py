"""The credential matrix, generated from the scope table: every RPC of every Tally service
(from the proto descriptors) x every kind of credential x the caller's own system or
another (and its own user or another, for user tokens), against one real server per
store. A new RPC is in it by construction (tests/api/test_guard.py requires its entry in
server/api/scopes.py).

Each cell asserts what API.md's Auth section allows: an allowed call gets past the guard
and the system checks (any answer but UNAUTHENTICATED or PERMISSION_DENIED: the requests
are minimal, so NOT_FOUND or INVALID_ARGUMENT are fine); a refused one gets the exact code
and reason. Requests are filled from their descriptors: whatever names a system names "a"
or "b", whatever names a user names "u".
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory, text_format
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from server import app
from server.api.scopes import REQUIRED_SCOPE, USER_TOKEN_RPCS
from server.domain.access import Scope
from server.services.operations import api_keys
from server.settings import Settings
from server.store.database import SqlStore
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc
from tests.api.test_guard import proto_methods
from tests.e2e.conftest import keyed
from tests.e2e.test_api import error_of
from tests.e2e.test_auth import Clock, bearer, token_for
from tests.faults.hostile import BASES

OWN, OTHER = "a", "b"  # a limited key's system, and one it may not use
USER, OTHER_USER = "u", "v"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
# Messages whose `key` field is a points system's key (elsewhere `key` is a level's, an
# attribute's...).
SYSTEM_KEYED = {"tally.v1.GetSystemRequest", "tally.v1.PointsSystem"}
CODES = {code.value[0]: code for code in grpc.StatusCode}
NOBODY_ID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Credential:
    """One kind of caller. `scope` and `systems` for API keys; `token_user` for tokens;
    `refused` for credentials refused whatever the call (the reason)."""

    name: str
    scope: Scope | None = None
    systems: tuple[str, ...] = ()
    token_user: str | None = None
    refused: str = ""


CREDENTIALS = [
    Credential("no key", refused="API_KEY_MISSING"),
    Credential("bad key", refused="API_KEY_INVALID"),
    Credential("revoked key", refused="API_KEY_REVOKED"),
    Credential("expired token", refused="TOKEN_EXPIRED"),
    *(Credential(f"{s.value} key", scope=s) for s in Scope),
    *(Credential(f"{s.value} key of a", scope=s, systems=(OWN,)) for s in Scope),
    Credential("token of u", token_user=USER),
    Credential("token of v", token_user=OTHER_USER),  # asks for u: another user
    Credential("token of u, key of a", systems=(OWN,), token_user=USER),
]


@dataclass(frozen=True)
class Cell:
    method: str
    credential: Credential
    system: str | None  # the system the request names (None: it names none)


def _is_system(descriptor: Any, field: Any) -> bool:
    return field.type == FieldDescriptor.TYPE_STRING and (
        field.name == "system_key" or (field.name == "key" and descriptor.full_name in SYSTEM_KEYED)
    )


def fill(message: Message, system: str, depth: int = 0) -> bool:
    """Name `system` and the user "u" wherever the message (and the messages in it) has a
    field for them; whether it named a system. A message that names its object by an id
    (UpdateTrigger's trigger) does not also name a system: its system_key is left as is."""
    descriptor = message.DESCRIPTOR
    by_id = "id" in descriptor.fields_by_name and bool(getattr(message, "id", ""))
    named = False
    for field in descriptor.fields:
        if _is_system(descriptor, field) and not field.is_repeated:
            if not by_id:
                setattr(message, field.name, system)
                named = True
        elif field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
            if field.name == "user_id" or (
                field.name == "id" and descriptor.full_name == "tally.v1.User"
            ):
                setattr(message, field.name, USER)
        elif field.message_type is not None and depth < 2:
            if field.message_type.GetOptions().map_entry:
                continue
            if field.message_type.full_name.startswith("google.protobuf."):
                continue
            inner = getattr(message, field.name)
            for one in inner if field.is_repeated else [inner]:
                named = fill(one, system, depth + 1) or named
    return named


def request_for(
    method: str, descriptor: MethodDescriptor, system: str, n: int = 0
) -> tuple[Message, bool]:
    """The fault suite's good request of the RPC (tests/faults/hostile.py BASES; an empty
    one for an RPC it has none of), naming `system` and the user "u" (the ids it names, of
    an entry, a trigger or a boost, are ids of nothing), and whether it names a system."""
    request = message_factory.GetMessageClass(descriptor.input_type)()
    bases = BASES.get(method.rsplit("/", 1)[-1])
    if bases:
        text = bases[0].replace("{n}", str(n))
        for placeholder in ("{entry}", "{trigger}", "{boost}", "{level}"):
            text = text.replace(placeholder, NOBODY_ID)
        text_format.Parse(text, request)
    return request, fill(request, system)


def expected(cell: Cell) -> str:
    """ "" when the call is allowed, else the reason it is refused with."""
    cred, method = cell.credential, cell.method
    if cred.refused:
        return cred.refused
    other_system = cell.system == OTHER and bool(cred.systems)
    if cred.token_user is not None:
        if method not in USER_TOKEN_RPCS:
            return "SCOPE_INSUFFICIENT"
        if USER_TOKEN_RPCS[method] is not None and cred.token_user != USER:
            return "SCOPE_INSUFFICIENT"
        return "SCOPE_INSUFFICIENT" if other_system else ""
    assert cred.scope is not None
    if not cred.scope.covers(REQUIRED_SCOPE[method]):
        return "SCOPE_INSUFFICIENT"
    return "SCOPE_INSUFFICIENT" if other_system else ""


def cells(methods: dict[str, MethodDescriptor]) -> list[Cell]:
    found: list[Cell] = []
    for method, descriptor in sorted(methods.items()):
        names = request_for(method, descriptor, OWN)[1]
        systems: list[str | None] = [OWN, OTHER] if names else [None]
        for credential in CREDENTIALS:
            found.extend(Cell(method, credential, system) for system in systems)
    return found


@pytest.fixture
def matrix_server(store: SqlStore) -> Iterator[tuple[app.App, Clock]]:
    clock = Clock()
    settings = Settings(
        listen="127.0.0.1:0", threads=16, rate_limit_per_second=10_000, rate_limit_burst=10_000
    )
    built = app.build(settings, store, clock)
    built.start()
    yield built, clock
    built.stop(grace_seconds=1)


def channels(bare: grpc.Channel, store: SqlStore, clock: Clock) -> dict[str, grpc.Channel]:
    """A channel per credential, each sending it."""
    now = app.utc_now()

    def key(scope: Scope, systems: tuple[str, ...] = ()) -> str:
        return api_keys.create_key(store, "matrix", scope, systems, now).text

    made: dict[str, grpc.Channel] = {"no key": bare, "bad key": keyed(bare, "tally_" + "A" * 43)}
    revoked = api_keys.create_key(store, "matrix revoked", Scope.ADMIN, (), now)
    api_keys.revoke_key(store, revoked.key.id, now)
    made["revoked key"] = keyed(bare, revoked.text)
    write_key, write_key_of_a = key(Scope.WRITE), key(Scope.WRITE, (OWN,))
    for credential in CREDENTIALS:
        if credential.scope is not None:
            made[credential.name] = keyed(bare, key(credential.scope, credential.systems))
        elif credential.token_user is not None:
            issuer = write_key_of_a if credential.systems else write_key
            made[credential.name] = bearer(
                bare, token_for(bare, issuer, credential.token_user).token
            )
    short = token_for(bare, write_key, USER, timedelta(seconds=1)).token
    made["expired token"] = bearer(bare, short)
    clock.now += timedelta(seconds=2)  # past the short token's expiry only
    return made


def answer(
    channel: grpc.Channel, descriptor: MethodDescriptor, method: str, request: Message
) -> tuple[grpc.StatusCode, str]:
    response = message_factory.GetMessageClass(descriptor.output_type).FromString
    body = request.SerializeToString()
    try:
        if descriptor.server_streaming:
            for _ in channel.unary_stream(method, bytes, response)(body, timeout=10):
                break  # past the guard: the first message is enough
        else:
            return item_error(channel.unary_unary(method, bytes, response)(body, timeout=10))
    except grpc.RpcError as error:
        code, reason, _, _ = error_of(error)
        return code, reason
    return grpc.StatusCode.OK, ""


def item_error(response: Message) -> tuple[grpc.StatusCode, str]:
    """A bulk call's answer: the first item's error (a `BatchItemError`, with a code and a
    reason) when it has one, else OK. AwardBatch reports per item, not for the call."""
    for field in response.DESCRIPTOR.fields:
        if field.message_type is None or not field.is_repeated:
            continue
        for item in getattr(response, field.name):
            if "error" in item.DESCRIPTOR.fields_by_name and item.HasField("error"):
                return CODES[item.error.code], item.error.reason
    return grpc.StatusCode.OK, ""


def test_every_rpc_every_credential_every_system(
    matrix_server: tuple[app.App, Clock], store: SqlStore
) -> None:
    server, clock = matrix_server
    methods = proto_methods()
    assert set(methods) <= set(REQUIRED_SCOPE)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as bare:
        admin = points_pb2_grpc.PointsServiceStub(keyed(bare, access_key(store)))
        for system in (OWN, OTHER):
            admin.CreateSystem(
                points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key=system))
            )
            admin.Award(
                points_pb2.AwardRequest(system_key=system, user=common_pb2.User(id=USER), amount=1)
            )
        by_credential = channels(bare, store, clock)
        matrix = cells(methods)

        def run(numbered: tuple[int, Cell]) -> tuple[Cell, grpc.StatusCode, str]:
            n, cell = numbered
            descriptor = methods[cell.method]
            request, _ = request_for(cell.method, descriptor, cell.system or OWN, n)
            channel = by_credential[cell.credential.name]
            return (cell, *answer(channel, descriptor, cell.method, request))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(run, enumerate(matrix)))
    wrong = []
    for cell, code, reason in results:
        want = expected(cell)
        if not want:
            ok = code not in (UNAUTHENTICATED, DENIED)
        else:
            code_wanted = DENIED if want == "SCOPE_INSUFFICIENT" else UNAUTHENTICATED
            ok = (code, reason) == (code_wanted, want)
        if not ok:
            where = cell.method.rsplit("/", 1)[-1], cell.credential.name, cell.system
            wrong.append((*where, want or "allowed", code.name, reason))
    assert wrong == [], "\n".join(map(str, wrong))
    refused = sum(1 for cell, _, _ in results if expected(cell))
    assert len(matrix) == len(results) >= 13 * len(methods)
    assert 0 < refused < len(matrix)


def access_key(store: SqlStore) -> str:
    return api_keys.create_key(store, "matrix admin", Scope.ADMIN, (), app.utc_now()).text
