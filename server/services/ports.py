"""What the use cases need from storage, as protocols the store implements.

The services depend on these, never on SQLAlchemy, so they can be tested with fakes and
the store can change without touching a rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from server.domain.ledger import Account
from server.domain.model import EntryType, LedgerEntry, PointsSystem, User, UserProfile


@dataclass(frozen=True)
class StoredResponse:
    """What an idempotency key remembers: the request's fingerprint and its response."""

    request_hash: str
    response: str


@dataclass(frozen=True)
class LockedUser:
    """A user locked for a change to their points, with what the change reads: their
    account and the call's idempotency key, read by one statement once the lock is held
    (never by the locking statement, which would see them as they were before a wait)."""

    user: User
    account: Account | None  # their account in the system; None before their first entry
    stored: StoredResponse | None  # what the call's idempotency key remembers


class SystemRepository(Protocol):
    def get(self, key: str) -> PointsSystem | None:
        """The system, possibly from a cache a second or so old (see SystemCache)."""
        ...

    def lock(self, key: str) -> PointsSystem | None:
        """The stored system, locked for an update."""
        ...

    def add(self, system: PointsSystem) -> bool:
        """Insert; False when the key is taken."""
        ...

    def update(self, system: PointsSystem) -> None: ...
    def list_after(self, after_key: str, limit: int) -> list[PointsSystem]: ...


class UserRepository(Protocol):
    def get(self, user_id: str) -> User | None: ...
    def get_with_account(self, user_id: str, system_key: str) -> tuple[User, Account | None] | None:
        """The user and their account in `system_key` (None before their first entry
        there), in one read; None when there is no such user."""
        ...

    def lock_for_change(self, user_id: str, system_key: str, key: str) -> LockedUser | None:
        """Lock the user's row for this unit of work (None when there is no such user),
        reading their account in `system_key` and what idempotency key `key` (scoped to
        the system and the user) remembers."""
        ...

    def lock_or_create(
        self, profile: UserProfile, now: datetime, system_key: str, key: str
    ) -> LockedUser:
        """lock_for_change, creating the user when new, and applying the profile fields
        the call gave."""
        ...


class AccountRepository(Protocol):
    def get(self, system_key: str, user_id: str) -> Account | None:
        """The account with its credit lots loaded when it has any."""
        ...

    def due_for_expiry(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(system_key, user_id) of accounts holding credit that lapsed by `now`."""
        ...

    def save(self, account: Account, now: datetime) -> None: ...


class LedgerRepository(Protocol):
    def add(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        """Append entries in order; returns them with their sequence numbers."""
        ...

    def get(self, entry_id: str) -> LedgerEntry | None: ...
    def find_reversal(self, user_id: str, entry_id: str) -> LedgerEntry | None: ...
    def page(
        self,
        system_key: str,
        user_id: str,
        types: frozenset[EntryType],
        before_sequence: int | None,
        limit: int,
    ) -> list[LedgerEntry]:
        """Entries newest first, strictly older than `before_sequence` when given."""
        ...

    def last_sequence(self, system_key: str, user_id: str) -> int: ...
    def chunk(
        self,
        system_key: str,
        user_id: str,
        after_sequence: int,
        through_sequence: int,
        start_time: datetime | None,
        end_time: datetime | None,
        limit: int,
    ) -> list[LedgerEntry]:
        """Entries oldest first with after_sequence < sequence <= through_sequence."""
        ...


class IdempotencyRepository(Protocol):
    """Keys are read with the user's lock (UserRepository.lock_for_change); stored here."""

    def add(
        self, user_id: str, scope: str, key: str, stored: StoredResponse, now: datetime
    ) -> None: ...


class UnitOfWork(Protocol):
    """One transaction. Rolls back on exit unless `commit` was called."""

    @property
    def systems(self) -> SystemRepository: ...
    @property
    def users(self) -> UserRepository: ...
    @property
    def accounts(self) -> AccountRepository: ...
    @property
    def ledger(self) -> LedgerRepository: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class Store(Protocol):
    def unit_of_work(self, *, write: bool) -> UnitOfWork:
        """A new unit of work; `write` ones take the user's lock (or SQLite's write lock)."""
        ...
