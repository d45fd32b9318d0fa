"""Who calls, and whether they may: the one check of credentials for every call.

Every Tally service's call must carry an API key (`x-api-key` metadata) or a user token
(`authorization: Bearer TOKEN`); health checking and server reflection need neither.
The key is checked against the process's key ring (no store read), the RPC against the
scope table (api/scopes.py), a token's RPC against what tokens may call and its request's
user against the token's. The call then runs with its `Caller` established
(services/held/callers.py), for the use cases' checks that depend on the request.

A stream also gets a check of its caller's key against the key ring (at most once per
RECHECK_SECONDS), which live feeds run as they go: a revoked key's followers end
UNAUTHENTICATED `API_KEY_REVOKED` (a user token's, `TOKEN_INVALID`, as its next call
would be answered) within the key ring's bound plus RECHECK_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import grpc

from server.api import access_log
from server.api.scopes import REQUIRED_SCOPE, USER_TOKEN_RPCS
from server.api.wrapping import Streaming, Unary, WrappingInterceptor, iterate_in
from server.domain.access import Caller, Scope
from server.domain.errors import ApiKeyMissing, ScopeInsufficient, TokenInvalid, quote
from server.services.held import callers
from server.services.held.key_ring import KeyRing

API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
# Services that answer anyone: load balancers and `buf curl --list-methods` hold no key.
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# How often, at most, an open stream re-checks its caller's key.
RECHECK_SECONDS = 1.0

Metadata = Sequence[tuple[str, str | bytes]]


class Guard(WrappingInterceptor):
    """Authenticates and authorizes each call; inside the error interceptor, which turns
    its refusals into statuses."""

    def __init__(self, keys: KeyRing, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.keys = keys
        self.clock = clock

    def applies_to(self, method: str) -> bool:
        return not method.startswith(OPEN_SERVICES)

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            caller = self.caller_of(method, context.invocation_metadata() or (), request)
            return callers.context_of(caller).run(behaviour, request, context)

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            caller = self.caller_of(method, context.invocation_metadata() or (), request)
            call_context = callers.context_of(caller, _Recheck(self.keys, caller))
            yield from iterate_in(call_context, call_context.run(behaviour, request, context))

        return stream

    def caller_of(self, method: str, metadata: Metadata, request: Any) -> Caller:
        """The caller, when they may make this call; UNAUTHENTICATED or PERMISSION_DENIED
        otherwise."""
        caller = self._authenticate(metadata)
        access_log.note_key(caller.key_id)
        name = method.rsplit("/", 1)[-1]
        if caller.is_user_token:
            if method not in USER_TOKEN_RPCS:
                raise ScopeInsufficient(f"a user token may not call {name}", rpc=name)
            field = USER_TOKEN_RPCS[method]
            if field is not None and getattr(request, field) != caller.user_id:
                raise ScopeInsufficient(
                    f"this user token reads only user {quote(caller.user_id)}", field=field
                )
        else:
            caller.require(REQUIRED_SCOPE.get(method, Scope.ADMIN), name)
        return caller

    def _authenticate(self, metadata: Metadata) -> Caller:
        key = _value(metadata, API_KEY_HEADER)
        if key:
            return self.keys.authenticate_key(key)
        authorization = _value(metadata, AUTHORIZATION_HEADER)
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise TokenInvalid("authorization must be 'Bearer TOKEN'")
            return self.keys.authenticate_token(token.strip(), self.clock())
        raise ApiKeyMissing()


class _Recheck:
    """A stream's check that its caller's key still holds, run at most once per
    RECHECK_SECONDS (a stream's items are taken by one thread at a time)."""

    def __init__(self, keys: KeyRing, caller: Caller) -> None:
        self.keys = keys
        self.caller = caller
        self._due = time.monotonic() + RECHECK_SECONDS

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + RECHECK_SECONDS
        self.keys.check_live(self.caller)


def _value(metadata: Metadata, name: str) -> str | None:
    for key, value in metadata:
        if key == name:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None
