"""Who makes a call, and what they may do: scopes, API keys and the caller of a call.

An API key has a scope (`read` < `write` < `admin`) and may be limited to some points
systems. A user token acts for one user, with its issuing key's systems, and may only
read. Checks that depend on the request (which system, which user) are made by the use
cases, with the `Caller` the interceptor established for the call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from server.domain.errors import ScopeInsufficient, quote


class Scope(Enum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return SCOPE_RANKS[self]

    def covers(self, required: Scope) -> bool:
        return self.rank >= required.rank


SCOPE_RANKS = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


@dataclass(frozen=True)
class ApiKey:
    """A stored key: never the key itself, only its hash (and the secret its user tokens
    are signed with)."""

    id: str
    name: str
    scope: Scope
    systems: frozenset[str]  # empty: every system
    key_hash: str
    token_secret: bytes
    create_time: datetime
    revoke_time: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoke_time is not None


@dataclass(frozen=True)
class Reach:
    """The points systems a call may affect: every one (`systems` empty), or those named.

    Users are shared by every system, but a key limited to some systems must move nothing
    outside them: a user's running event totals are kept per reach (an event counts toward
    the systems its caller may use), and a user-wide idempotency key (RecordEvent's) lives
    in its caller's reach, so that one key's call cannot replay or block another's."""

    systems: frozenset[str] = frozenset()

    @classmethod
    def named(cls, name: str) -> Reach:
        return cls(frozenset(name.split(",")) if name else frozenset())

    @property
    def name(self) -> str:
        """How the store keeps it: the systems sorted, comma-separated ('' for every one)."""
        return ",".join(sorted(self.systems))

    @property
    def tag(self) -> str:
        """A short, fixed-length name for keying (a user-wide idempotency key's scope): '@*'
        for every system, else '@' and a digest of the name. No system key starts with '@',
        so it never meets a system's own scope, and '' (LEGACY_USER_SCOPE) is left to the
        keys kept before scopes had reaches."""
        if not self.systems:
            return "@*"
        return "@" + hashlib.sha256(self.name.encode()).hexdigest()[:40]

    def allows(self, system_key: str) -> bool:
        return not self.systems or system_key in self.systems

    def meets(self, other: Reach) -> bool:
        """Whether the two share a system: what a call of `other` counted toward is then,
        in part, what a call of this reach may see."""
        return not self.systems or not other.systems or bool(self.systems & other.systems)


EVERY_SYSTEM = Reach()
# Where RecordEvent's keys were kept before they were scoped by reach (migration 0014):
# such a key is still honoured, by every caller, so that a retry across the upgrade
# replays rather than runs again (the response replayed shows the caller's systems only).
LEGACY_USER_SCOPE = ""


@dataclass(frozen=True)
class Caller:
    """Who makes the current call: an API key's id, scope and systems, and for a user
    token the one user it acts for. `systems` empty means every system."""

    key_id: str
    scope: Scope
    systems: frozenset[str] = frozenset()
    user_id: str | None = None  # set for a user token

    @classmethod
    def of_key(cls, key: ApiKey) -> Caller:
        return cls(key.id, key.scope, key.systems)

    @property
    def is_user_token(self) -> bool:
        return self.user_id is not None

    @property
    def reach(self) -> Reach:
        return Reach(self.systems)

    def allows_system(self, system_key: str) -> bool:
        return not self.systems or system_key in self.systems

    def check_system(self, system_key: str) -> None:
        """SCOPE_INSUFFICIENT unless the caller may name this system."""
        if not self.allows_system(system_key):
            raise ScopeInsufficient(
                f"API key {self.key_id} may not use points system {quote(system_key)}",
                system_key=system_key[:100],
                key_id=self.key_id,
            )

    def visible(self, system_keys: Iterable[str]) -> list[str]:
        """Of these systems, those the caller may see, in the order given (RecordEvent
        runs the triggers of these only)."""
        return [key for key in system_keys if self.allows_system(key)]

    def require(self, scope: Scope, why: str) -> None:
        """SCOPE_INSUFFICIENT unless the caller's scope covers `scope` (for checks that
        depend on the request, e.g. a global boost needs admin where one user's needs
        write)."""
        if not self.scope.covers(scope):
            raise ScopeInsufficient(
                f"{why} needs {_article(scope.value)} {scope.value} key; "
                f"this one is {self.scope.value}",
                scope=self.scope.value,
                required_scope=scope.value,
            )


# Code that runs in the server process itself (the expiry sweep, tests of the use cases,
# `--insecure-no-auth`): every scope, every system.
TRUSTED = Caller(key_id="", scope=Scope.ADMIN)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
