"""Each process's key ring: every API key held in memory, and the user tokens keys issue.

A key is `tally_` and 256 random bits (base64url); the store keeps its SHA-256 only, so
a key is shown once, when it is made (operations/keys.py). Each process holds every key in
a `KeyRing` and checks calls against it without a store read; the ring reloads when it is
older than `max_age` seconds, so a revoked key is refused by every process within that
bound (plus one reload). A key the ring does not hold is looked for by itself (its hash, or
a token's key id: one indexed read, no lock held, no waiting for other calls), so a key
made a moment ago by `tally-server keys create` works at once; one the store does not have
either is remembered for MISS_REMEMBER_SECONDS (at most MAX_REMEMBERED_MISSES of them), so
a caller repeating garbage is answered from memory. Those reads share one budget per
process (LOOK_UPS_PER_SECOND, never waited for): beyond it an unknown key is refused at
once, and a key made since the last load is found by the next reload, within `max_age`.
So made-up keys cost each call a hash and a dictionary look-up, and the store at most
LOOK_UPS_PER_SECOND point reads a second.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from server.domain import tokens
from server.domain.access import ApiKey, Caller, Scope
from server.domain.errors import (
    ApiKeyInvalid,
    ApiKeyRevoked,
    ScopeInsufficient,
    TokenExpired,
    TokenInvalid,
)
from server.services.ports import Store, UnitOfWork
from server.services.transactions import in_transaction

KEY_PREFIX = "tally_"
KEY_BYTES = 32
# Longer than any key this server makes; longer ones are refused before hashing.
MAX_KEY_CHARS = 256
DEFAULT_MAX_AGE = 5.0
# Keys (or token key ids) the store was asked for in vain are answered from memory for
# this long; at most this many are remembered, the oldest forgotten first.
MISS_REMEMBER_SECONDS = 60.0
MAX_REMEMBERED_MISSES = 10_000
# Store reads a second (and at once) for keys a process does not hold; beyond, unknown
# keys are refused from memory until the bucket fills again.
LOOK_UPS_PER_SECOND = 20.0
FIRST_KEY_NAME = "first-run admin"
# Longer than any key id (the store's column): a token naming a longer one is not looked for.
MAX_KEY_ID_CHARS = 32


def hash_key(text: str) -> str:
    """What the store keeps of a key: a key has 256 random bits, so a plain SHA-256
    (no salt, no stretching) is as good as any and costs a microsecond per call."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class _Held:
    loaded: float  # monotonic time of the load; -inf before the first
    by_hash: dict[str, ApiKey] = field(default_factory=dict)
    by_id: dict[str, ApiKey] = field(default_factory=dict)

    def adding(self, key: ApiKey) -> _Held:
        """These keys and `key` (found since the load), loaded when these were."""
        return _Held(self.loaded, {**self.by_hash, key.key_hash: key}, {**self.by_id, key.id: key})


class LookUpBudget:
    """How many keys a process may look for in the store that it does not hold: a token
    bucket of `rate` a second (and as many at once), shared by every caller. Never waits:
    `take` is False when the bucket is empty."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.clock = clock
        self._tokens = rate
        self._counted = clock()
        self._lock = threading.Lock()  # held for the arithmetic only

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            self._tokens = min(self.rate, self._tokens + (now - self._counted) * self.rate)
            self._counted = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class KeyRing:
    """Every key, held in memory by a process and reloaded at most `max_age` seconds
    after the last load: the staleness bound of a revocation.

    `token_secret` is the server secret user tokens are signed under (tokens.signing_secret;
    None or empty: each key's stored secret, as before there was one)."""

    def __init__(
        self,
        store: Store,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
        token_secret: bytes | None = None,
        look_ups_per_second: float = LOOK_UPS_PER_SECOND,
    ) -> None:
        self.store = store
        self.max_age = max_age
        self.clock = clock
        self.token_secret = token_secret or None
        self.loads = 0
        self.look_ups = 0  # keys looked for one by one (this process, since it started)
        self._held = _Held(float("-inf"))
        self._mutex = threading.Lock()  # one reload at a time
        self._swap = threading.Lock()  # replacing what is held (never held over a read)
        self._budget = LookUpBudget(look_ups_per_second, clock)
        # ("hash" or "id", what was looked for in vain) -> when; oldest first
        self._misses: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._misses_lock = threading.Lock()

    # -- callers ---------------------------------------------------------------------------

    def authenticate_key(self, text: str) -> Caller:
        """The caller an `x-api-key` names; API_KEY_INVALID or API_KEY_REVOKED."""
        if not text.startswith(KEY_PREFIX) or len(text) > MAX_KEY_CHARS:
            raise ApiKeyInvalid()
        digest = hash_key(text)
        key = self._held_now().by_hash.get(digest) or self._look_up("hash", digest)
        if key is None:
            raise ApiKeyInvalid()
        if key.revoked:
            raise ApiKeyRevoked(key.id)
        return Caller.of_key(key)

    def authenticate_token(self, token: str, now: datetime) -> Caller:
        """The caller a user token names: checked by its signature under the issuing
        key's secret; TOKEN_INVALID or TOKEN_EXPIRED. A token whose key id names no key
        is told what one with a bad signature is (tokens.NOT_VERIFIED)."""
        claims, payload, mac = tokens.read_claims(token)
        key = self._held_now().by_id.get(claims.key_id)
        if key is None and len(claims.key_id) <= MAX_KEY_ID_CHARS:
            key = self._look_up("id", claims.key_id)
        # No key: checked against a secret no token has, so that it is refused as, and
        # in about the time of, a token with a bad signature.
        tokens.verify(payload, mac, self._signing_secret(key) if key else _NO_SECRET)
        if key is None:  # nothing is signed under _NO_SECRET: not reached
            raise TokenInvalid(tokens.NOT_VERIFIED)
        if key.revoked:  # said only to a holder of a token the key really signed
            raise TokenInvalid("the key that issued it was revoked")
        if claims.expire_time <= now:
            raise TokenExpired(claims.expire_time.isoformat().replace("+00:00", "Z"))
        return Caller(key.id, Scope.READ, key.systems, user_id=claims.user_id)

    def issue_token(
        self, caller: Caller, user_id: str, ttl: timedelta | None, now: datetime
    ) -> tuple[str, datetime]:
        """A token for `user_id`, signed with the caller's key's secret: (token, expiry)."""
        lifetime = tokens.check_request(user_id, ttl)
        key = self._held_now().by_id.get(caller.key_id)
        if key is None or caller.is_user_token:
            raise ScopeInsufficient("user tokens are issued by API keys", key_id=caller.key_id)
        expire_time = now + lifetime
        claims = tokens.TokenClaims(key.id, user_id, expire_time)
        return tokens.sign(claims, self._signing_secret(key)), expire_time

    def _signing_secret(self, key: ApiKey) -> bytes:
        return tokens.signing_secret(key.token_secret, self.token_secret)

    # -- holding the keys ------------------------------------------------------------------

    def _held_now(self) -> _Held:
        held = self._held
        if self.clock() - held.loaded <= self.max_age:
            return held
        return self._reload(lambda h: self.clock() - h.loaded > self.max_age)

    def _look_up(self, kind: str, value: str) -> ApiKey | None:
        """A key the ring does not hold, by its hash or its id (`kind`), read from the
        store by itself (one indexed read, no lock held) and then held; None when the
        store has none, when it was looked for in vain less than MISS_REMEMBER_SECONDS
        ago, or when this process's look-ups are over their budget (a key made since the
        last load is then found by the next one, within `max_age`)."""
        missed = (kind, value)
        with self._misses_lock:
            when = self._misses.get(missed)
            if when is not None and self.clock() - when < MISS_REMEMBER_SECONDS:
                return None
        if not self._budget.take():
            return None
        self.look_ups += 1

        def read(uow: UnitOfWork) -> ApiKey | None:
            if kind == "hash":
                return uow.api_keys.find(key_hash=value)
            return uow.api_keys.find(key_id=value)

        found = in_transaction(self.store, read, write=False)
        if found is None:
            self._remember_miss(missed)
            return None
        with self._swap:
            self._held = self._held.adding(found)
        return found

    def _remember_miss(self, missed: tuple[str, str]) -> None:
        with self._misses_lock:
            self._misses.pop(missed, None)
            self._misses[missed] = self.clock()
            while len(self._misses) > MAX_REMEMBERED_MISSES:
                self._misses.popitem(last=False)

    def _reload(self, needed: Callable[[_Held], bool]) -> _Held:
        with self._mutex:  # one thread reloads; the others wait for what it reads
            held = self._held
            if not needed(held):
                return held
            return self._load()

    def _load(self) -> _Held:
        """Read every key (the caller holds the mutex)."""
        loaded = self.clock()
        keys = in_transaction(self.store, lambda uow: uow.api_keys.all(), write=False)
        self.loads += 1
        held = _Held(loaded, {k.key_hash: k for k in keys}, {k.id: k for k in keys})
        with self._swap:
            self._held = held
        return held

    # -- callers that last (open streams) --------------------------------------------------

    def check_live(self, caller: Caller) -> None:
        """Whether the key behind `caller` still holds, as the keys held now say (reloaded
        when older than `max_age`): API_KEY_REVOKED when it was revoked (or is gone); for a
        user token, TOKEN_INVALID, as a new call with it is answered. An open stream asks
        this as it goes, so that it ends within the bound a new call is refused in."""
        key = self._held_now().by_id.get(caller.key_id)
        if key is not None and not key.revoked:
            return
        if caller.is_user_token:
            raise TokenInvalid("the key that issued it was revoked")
        raise ApiKeyRevoked(caller.key_id)


# The secret a token naming no known key is checked against: nothing is signed with it.
_NO_SECRET = secrets.token_bytes(32)
