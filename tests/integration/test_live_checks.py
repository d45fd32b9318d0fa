"""A revoked key's open streams end: the key ring's check of a caller that lasts, and the
call context that carries it, on both stores."""

from __future__ import annotations

import pytest

from server.domain.access import Caller, Scope
from server.domain.errors import ApiKeyRevoked, TokenInvalid
from server.services.held import callers
from server.services.held.key_ring import KeyRing
from server.services.operations import api_keys
from server.store.database import SqlStore
from tests.conftest import T0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_keys_callers_fail_the_check_once_the_bound_has_passed(
    store: SqlStore,
) -> None:
    clock = Clock()
    ring = KeyRing(store, max_age=5.0, clock=clock)
    made = api_keys.create_key(store, "reader", Scope.READ, (), T0)
    caller = ring.authenticate_key(made.text)
    token = Caller(made.key.id, Scope.READ, user_id="alice")
    ring.check_live(caller)
    ring.check_live(token)

    assert api_keys.revoke_key(store, made.key.id, T0)
    clock.now += 4.9  # within the bound the ring trusts what it holds
    ring.check_live(caller)
    clock.now += 0.2
    with pytest.raises(ApiKeyRevoked) as revoked:
        ring.check_live(caller)
    assert revoked.value.metadata == {"key_id": made.key.id}
    with pytest.raises(TokenInvalid):
        ring.check_live(token)
    with pytest.raises(ApiKeyRevoked):  # a key the ring never held
        ring.check_live(Caller("nosuchkey", Scope.READ))


def test_the_call_context_carries_the_check_and_without_one_it_passes() -> None:
    def revoked() -> None:
        raise ApiKeyRevoked("k")

    callers.check_still_allowed()  # no call: the trusted caller
    context = callers.context_of(Caller("k", Scope.READ), revoked)
    with pytest.raises(ApiKeyRevoked):
        context.run(callers.check_still_allowed)
    callers.check_still_allowed()  # it did not leak out of the call
