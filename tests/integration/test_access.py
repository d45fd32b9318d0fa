"""API keys, the key ring and user tokens, on both stores."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from server.domain import tokens
from server.domain.access import TRUSTED, Caller, Scope
from server.domain.errors import (
    ApiKeyInvalid,
    ApiKeyRevoked,
    ScopeInsufficient,
    TokenExpired,
    TokenInvalid,
    ValidationFailed,
)
from server.services.held import key_ring
from server.services.held.key_ring import (
    LOOK_UPS_PER_SECOND,
    MISS_REMEMBER_SECONDS,
    KeyRing,
    hash_key,
)
from server.services.operations import api_keys
from server.store.database import SqlStore
from tests.conftest import T0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ring(store: SqlStore, clock: Clock) -> KeyRing:
    return KeyRing(store, max_age=5.0, clock=clock)


def make(store: SqlStore, scope: Scope = Scope.WRITE, *systems: str) -> api_keys.CreatedKey:
    return api_keys.create_key(store, f"{scope.value} key", scope, systems, T0)


class TestKeys:
    def test_a_key_is_random_shown_once_and_stored_as_a_hash(self, store: SqlStore) -> None:
        one, two = make(store), make(store)
        assert one.text.startswith("tally_")
        assert len(one.text) == 6 + 43
        assert one.text != two.text
        assert one.key.id != two.key.id
        with store.engine.connect() as connection:
            stored = " ".join(
                str(v) for row in connection.execute(text("SELECT * FROM api_keys")) for v in row
            )
        assert one.text not in stored
        assert one.text.removeprefix("tally_") not in stored
        assert hash_key(one.text) in stored
        listed = api_keys.list_keys(store)
        assert {k.id for k in listed} == {one.key.id, two.key.id}
        assert {k.key_hash for k in listed} == {
            hash_key(one.text),
            hash_key(two.text),
        }

    def test_systems_and_name_are_checked(self, store: SqlStore) -> None:
        with pytest.raises(ValidationFailed) as bad:
            api_keys.create_key(store, "", Scope.READ, ["xp", "Not A Key"], T0)
        assert [v.field for v in bad.value.violations] == ["name", "systems"]
        assert api_keys.list_keys(store) == []

    def test_revoke_once(self, store: SqlStore) -> None:
        key = make(store).key
        assert api_keys.revoke_key(store, key.id, T0)
        assert not api_keys.revoke_key(store, key.id, T0)
        assert not api_keys.revoke_key(store, "nosuchkey", T0)
        (listed,) = api_keys.list_keys(store)
        assert listed.revoke_time == T0

    def test_the_first_key_is_made_once_on_an_empty_store(self, store: SqlStore) -> None:
        first = api_keys.create_first_key(store, T0)
        assert first is not None
        assert first.key.scope is Scope.ADMIN
        assert api_keys.create_first_key(store, T0) is None
        api_keys.revoke_key(store, first.key.id, T0)
        assert api_keys.create_first_key(store, T0) is None  # revoked on purpose: no new one


class TestKeyRing:
    def test_a_key_names_its_caller(self, store: SqlStore, ring: KeyRing) -> None:
        made = make(store, Scope.READ, "xp", "coins")
        caller = ring.authenticate_key(made.text)
        assert caller == Caller(made.key.id, Scope.READ, frozenset({"xp", "coins"}))

    def test_checks_within_the_bound_read_the_store_once(
        self, store: SqlStore, ring: KeyRing, clock: Clock
    ) -> None:
        made = make(store)
        for _ in range(100):
            ring.authenticate_key(made.text)
            clock.now += 0.04
        assert ring.loads == 1
        clock.now += 1.0  # past the 5 s bound
        ring.authenticate_key(made.text)
        assert ring.loads == 2

    def test_a_revoked_key_is_refused_once_the_bound_has_passed(
        self, store: SqlStore, ring: KeyRing, clock: Clock
    ) -> None:
        made = make(store)
        ring.authenticate_key(made.text)
        api_keys.revoke_key(store, made.key.id, T0)
        ring.authenticate_key(made.text)  # still trusted: the bound is 5 s
        clock.now += 5.01
        with pytest.raises(ApiKeyRevoked) as refused:
            ring.authenticate_key(made.text)
        assert refused.value.metadata == {"key_id": made.key.id}

    def test_a_new_key_works_at_once_without_reloading_every_key(
        self, store: SqlStore, ring: KeyRing
    ) -> None:
        ring.authenticate_key(make(store).text)
        fresh = make(store)  # made by `keys create` in another process, a moment later
        assert ring.authenticate_key(fresh.text).key_id == fresh.key.id
        second = make(store)  # and another one right after it
        assert ring.authenticate_key(second.text).key_id == second.key.id
        assert (ring.loads, ring.look_ups) == (1, 2)  # each read by itself, once
        for _ in range(10):
            ring.authenticate_key(second.text)
        assert (ring.loads, ring.look_ups) == (1, 2)  # held from then on

    def test_a_repeated_unknown_key_is_answered_from_memory(
        self, store: SqlStore, ring: KeyRing, clock: Clock
    ) -> None:
        ring.authenticate_key(make(store).text)
        for _ in range(50):
            with pytest.raises(ApiKeyInvalid):
                ring.authenticate_key("tally_" + "x" * 43)
        assert (ring.loads, ring.look_ups) == (1, 1)
        clock.now += MISS_REMEMBER_SECONDS + 0.01  # forgotten: looked for once more
        with pytest.raises(ApiKeyInvalid):
            ring.authenticate_key("tally_" + "x" * 43)
        assert ring.look_ups == 2

    def test_unknown_keys_share_a_budget_of_store_reads_and_never_wait(
        self, store: SqlStore, ring: KeyRing, clock: Clock
    ) -> None:
        ring.authenticate_key(make(store).text)
        for i in range(3 * int(LOOK_UPS_PER_SECOND)):
            with pytest.raises(ApiKeyInvalid):
                ring.authenticate_key(f"tally_made-up-{i}")
        assert (ring.loads, ring.look_ups) == (1, LOOK_UPS_PER_SECOND)
        fresh = make(store)
        with pytest.raises(ApiKeyInvalid):  # over the budget: refused from memory
            ring.authenticate_key(fresh.text)
        assert ring.look_ups == LOOK_UPS_PER_SECOND
        clock.now += 1.5 / LOOK_UPS_PER_SECOND  # the bucket has a read again
        assert ring.authenticate_key(fresh.text).key_id == fresh.key.id
        later = make(store)
        for i in range(int(LOOK_UPS_PER_SECOND)):
            with pytest.raises(ApiKeyInvalid):
                ring.authenticate_key(f"tally_more-made-up-{i}")
        clock.now += 5.01  # however spent the budget, the next reload finds every key
        assert ring.authenticate_key(later.text).key_id == later.key.id
        assert ring.loads == 2

    def test_the_unknown_keys_remembered_are_bounded(
        self, store: SqlStore, ring: KeyRing, clock: Clock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(key_ring, "MAX_REMEMBERED_MISSES", 3)
        ring.authenticate_key(make(store).text)
        for i in range(5):
            with pytest.raises(ApiKeyInvalid):
                ring.authenticate_key(f"tally_made-up-{i}")
        assert len(ring._misses) == 3
        with pytest.raises(ApiKeyInvalid):
            ring.authenticate_key("tally_made-up-4")  # among the newest: remembered
        assert ring.look_ups == 5
        with pytest.raises(ApiKeyInvalid):
            ring.authenticate_key("tally_made-up-0")  # the oldest: forgotten, read again
        assert ring.look_ups == 6

    def test_an_unknown_token_key_id_is_looked_for_by_itself(
        self, store: SqlStore, ring: KeyRing
    ) -> None:
        ring.authenticate_key(make(store).text)  # loaded before the issuer was made
        issuing = KeyRing(store)  # another process
        made = make(store)
        token, _ = issuing.issue_token(issuing.authenticate_key(made.text), "alice", None, T0)
        assert ring.authenticate_token(token, T0).user_id == "alice"
        assert (ring.loads, ring.look_ups) == (1, 1)
        forged = tokens.sign(tokens.TokenClaims("nosuchkey", "alice", T0), b"k" * 32)
        for _ in range(20):
            with pytest.raises(TokenInvalid):
                ring.authenticate_token(forged, T0)
        assert (ring.loads, ring.look_ups) == (1, 2)
        too_long = tokens.sign(tokens.TokenClaims("k" * 33, "alice", T0), b"k" * 32)
        with pytest.raises(TokenInvalid):  # no key has such an id: not looked for
            ring.authenticate_token(too_long, T0)
        assert ring.look_ups == 2

    @settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(sent=st.text(max_size=600))
    def test_any_text_is_an_invalid_key(self, ring: KeyRing, sent: str) -> None:
        with pytest.raises(ApiKeyInvalid):
            ring.authenticate_key(sent)


class TestUserTokens:
    def test_a_token_acts_for_its_user_with_its_keys_systems(
        self, store: SqlStore, ring: KeyRing
    ) -> None:
        made = make(store, Scope.WRITE, "xp")
        issuer = ring.authenticate_key(made.text)
        token, expire_time = ring.issue_token(issuer, "alice", None, T0)
        assert expire_time == T0 + timedelta(hours=1)
        caller = ring.authenticate_token(token, T0 + timedelta(minutes=59))
        assert caller == Caller(made.key.id, Scope.READ, frozenset({"xp"}), user_id="alice")

    def test_an_old_token_is_expired(self, store: SqlStore, ring: KeyRing) -> None:
        issuer = ring.authenticate_key(make(store).text)
        token, expire_time = ring.issue_token(issuer, "alice", timedelta(seconds=1), T0)
        ring.authenticate_token(token, T0)
        with pytest.raises(TokenExpired) as expired:
            ring.authenticate_token(token, expire_time)
        assert expired.value.metadata == {"expire_time": "2026-01-01T12:00:01Z"}

    def test_an_altered_or_forged_token_is_invalid(self, store: SqlStore, ring: KeyRing) -> None:
        made = make(store)
        issuer = ring.authenticate_key(made.text)
        token, _ = ring.issue_token(issuer, "alice", None, T0)
        prefix, payload, signature = token.split(".")
        claims, _, _ = tokens.read_claims(token)
        as_bob = tokens.sign(tokens.TokenClaims(made.key.id, "bob", claims.expire_time), b"k" * 32)
        altered = [
            f"{prefix}.{payload}.{signature[:-2]}AA",  # signature changed
            f"{prefix}.{as_bob.split('.')[1]}.{signature}",  # payload swapped for bob's
            as_bob,  # signed with a guessed secret
            tokens.sign(tokens.TokenClaims("nosuchkey", "alice", claims.expire_time), b"k"),
        ]
        for bad in altered:
            with pytest.raises(TokenInvalid):
                ring.authenticate_token(bad, T0)

    def test_a_token_of_no_key_and_one_with_a_bad_signature_are_told_the_same(
        self, store: SqlStore, ring: KeyRing
    ) -> None:
        """Nothing in the answer says whether a token's key id names a key."""
        made = make(store)
        token, _ = ring.issue_token(ring.authenticate_key(made.text), "alice", None, T0)
        claims, _, _ = tokens.read_claims(token)
        forged = [
            tokens.sign(claims, b"k" * 32),  # a real key id, a guessed secret
            tokens.sign(tokens.TokenClaims("0123456789ab", "alice", claims.expire_time), b"k"),
        ]
        told = []
        for bad in forged:
            with pytest.raises(TokenInvalid) as refused:
                ring.authenticate_token(bad, T0)
            told.append((refused.value.message, refused.value.metadata))
        assert told[0] == told[1]
        assert made.key.id not in told[0][0]

    def test_under_a_server_secret_the_stored_secrets_cannot_sign_tokens(
        self, store: SqlStore, clock: Clock
    ) -> None:
        server_secret = b"s" * 32
        ring = KeyRing(store, clock=clock, token_secret=server_secret)
        made = make(store)  # a key made before or after the secret was set: the same
        issuer = ring.authenticate_key(made.text)
        token, _ = ring.issue_token(issuer, "alice", None, T0)
        assert ring.authenticate_token(token, T0).user_id == "alice"
        with store.engine.connect() as connection:  # what a copy of the store holds
            stored = bytes.fromhex(
                connection.execute(
                    text("SELECT token_secret FROM api_keys WHERE id = :id"), {"id": made.key.id}
                ).scalar_one()
            )
        claims = tokens.TokenClaims(made.key.id, "bob", T0 + timedelta(hours=1))
        from_dump = tokens.sign(claims, stored)
        with pytest.raises(TokenInvalid):
            ring.authenticate_token(from_dump, T0)
        unset = KeyRing(store, clock=clock)  # no server secret: as before, and so
        assert unset.authenticate_token(from_dump, T0).user_id == "bob"  # the dump signs
        before, _ = unset.issue_token(issuer, "alice", None, T0)
        with pytest.raises(TokenInvalid):  # tokens made before the secret was set
            ring.authenticate_token(before, T0)
        other_worker = KeyRing(store, clock=clock, token_secret=server_secret)
        assert other_worker.authenticate_token(token, T0).user_id == "alice"
        other_server = KeyRing(store, clock=clock, token_secret=b"t" * 32)
        with pytest.raises(TokenInvalid):
            other_server.authenticate_token(token, T0)

    def test_a_revoked_keys_tokens_stop_working(
        self, store: SqlStore, ring: KeyRing, clock: Clock
    ) -> None:
        made = make(store)
        token, _ = ring.issue_token(ring.authenticate_key(made.text), "alice", None, T0)
        api_keys.revoke_key(store, made.key.id, T0)
        clock.now += 5.01
        with pytest.raises(TokenInvalid, match="revoked"):
            ring.authenticate_token(token, T0)

    def test_ttl_and_user_are_checked(self, store: SqlStore, ring: KeyRing) -> None:
        issuer = ring.authenticate_key(make(store).text)
        for ttl in (timedelta(0), timedelta(seconds=-1), timedelta(hours=24, seconds=1)):
            with pytest.raises(ValidationFailed) as bad:
                ring.issue_token(issuer, "alice", ttl, T0)
            assert [v.field for v in bad.value.violations] == ["ttl"]
        with pytest.raises(ValidationFailed) as bad:
            ring.issue_token(issuer, " ", None, T0)
        assert [v.field for v in bad.value.violations] == ["user_id"]
        ring.issue_token(issuer, "alice", timedelta(hours=24), T0)  # the longest allowed

    def test_only_api_keys_issue_tokens(self, store: SqlStore, ring: KeyRing) -> None:
        issuer = ring.authenticate_key(make(store).text)
        token, _ = ring.issue_token(issuer, "alice", None, T0)
        as_token = ring.authenticate_token(token, T0)
        for caller in (TRUSTED, as_token):
            with pytest.raises(ScopeInsufficient):
                ring.issue_token(caller, "alice", None, T0)

    @settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(sent=st.text(max_size=3000) | st.from_regex(r"t1\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"))
    def test_any_text_is_an_invalid_token(self, ring: KeyRing, sent: str) -> None:
        with pytest.raises(TokenInvalid):
            ring.authenticate_token(sent, T0)
