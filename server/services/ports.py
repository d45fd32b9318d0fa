"""What the use cases need from storage, as protocols the store implements.

The services depend on these, never on SQLAlchemy, so they can be tested with fakes and
the store can change without touching a rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from server.domain.access import ApiKey
from server.domain.audit import AccountFigures, Difference, Posted, RecordedMove
from server.domain.batch import AccountKey as AccountKey
from server.domain.batch import KeyScope as KeyScope
from server.domain.ledger import Account, CreditLot
from server.domain.model import (
    Boost,
    BoostStatus,
    EntryType,
    Event,
    LedgerEntry,
    Level,
    LevelBasis,
    LevelChange,
    PointsSystem,
    Trigger,
    User,
)


@dataclass(frozen=True)
class StoredResponse:
    """What an idempotency key remembers: the request's fingerprint and its response."""

    request_hash: str
    response: str


@dataclass(frozen=True)
class Standing:
    """What a batch reads once its users are locked: their accounts (with credit lots),
    what the batch's idempotency keys remember, and the running totals of the event
    types its triggers count ((user, event type, reach) -> total)."""

    accounts: dict[AccountKey, Account] = field(default_factory=dict)
    keys: dict[KeyScope, StoredResponse] = field(default_factory=dict)
    totals: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class LockedUsers:
    """The users of a batch of changes, locked (or, for a dry run, read) in one sorted
    order, with those that this unit of work created, and their standing read after the
    lock."""

    users: dict[str, User]
    created: frozenset[str]
    config_version: int  # the configuration's version, as the locking statement saw it
    standing: Standing = field(default_factory=Standing)


@dataclass(frozen=True)
class UserView:
    """One user's standing in one system, read as one snapshot: the user, their account
    (None before their first entry there; credit lots not loaded), a page of their newest
    entries, and the configuration's version."""

    user: User
    account: Account | None
    entries: list[LedgerEntry]
    config_version: int


@dataclass(frozen=True, slots=True)
class ViewAsk:
    """What a read of one user's standing asks for (UserRepository.view's arguments)."""

    user_id: str
    system_key: str
    limit: int
    types: frozenset[EntryType] = frozenset()
    before_sequence: int | None = None

    @property
    def first_page(self) -> bool:
        """The newest entries of every type: what UserRepository.views reads together."""
        return not self.types and self.before_sequence is None


class SystemRepository(Protocol):
    def get(self, key: str) -> PointsSystem | None: ...
    def all(self) -> list[PointsSystem]: ...

    def lock(self, key: str) -> PointsSystem | None:
        """The stored system, locked for an update."""
        ...

    def add(self, system: PointsSystem) -> bool:
        """Insert; False when the key is taken."""
        ...

    def update(self, system: PointsSystem) -> None: ...
    def list_after(self, after_key: str, limit: int) -> list[PointsSystem]: ...
    def version(self) -> int:
        """The configuration's version (see Configuration)."""
        ...

    def bump_version(self) -> int:
        """Raise the configuration's version, in the transaction that changes it."""
        ...


class UserRepository(Protocol):
    def get(self, user_id: str) -> User | None: ...
    def view(
        self,
        user_id: str,
        system_key: str,
        types: frozenset[EntryType],
        before_sequence: int | None,
        limit: int,
    ) -> UserView | None:
        """The user's standing in `system_key` with up to `limit` of their newest entries
        (of these types, all when empty; older than `before_sequence` when given), as one
        snapshot; None when there is no such user."""
        ...

    def views(self, asks: Sequence[ViewAsk]) -> list[UserView | None]:
        """Each ask's view, as `view` reads it: where the store can (ViewsTogether), the
        first pages (ViewAsk.first_page) of many users in one statement."""
        ...

    def lock(
        self,
        user_ids: Sequence[str],
        create: Mapping[str, User],
        keys: Sequence[KeyScope] = (),
        metrics: Sequence[str] = (),
    ) -> LockedUsers:
        """Lock these users for this unit of work, in sorted order, creating those of
        `create` that are new, as `create` gives them (LockedUsers.created says which;
        profile fields and welcomes of users who exist are written by `update`), and read
        their standing (AccountRepository.standing, with these `keys`, and the running
        totals of these `metrics`, as EventRepository.totals reads them).

        The standing is read by a statement of its own that runs after the lock (a lock
        that waited would otherwise see the accounts as they were before it), sent with
        the lock where the store can (one round trip). Reversals are read after this
        returns."""
        ...

    def read(
        self, user_ids: Sequence[str], keys: Sequence[KeyScope] = (), metrics: Sequence[str] = ()
    ) -> LockedUsers:
        """The same users and standing without a lock or a write: what a dry run decides
        on."""
        ...

    def update(self, users: Sequence[User]) -> None:
        """Write these (locked) users' profile fields and the systems they are welcomed in."""
        ...

    def remove(self, user_ids: Sequence[str]) -> None:
        """Remove users this unit of work created (`lock`) whose changes all failed: a
        failed call writes nothing, and the user's first call that succeeds still
        creates, and so welcomes, them."""
        ...


class AccountRepository(Protocol):
    def standing(self, user_ids: Sequence[str], keys: Sequence[KeyScope]) -> Standing:
        """Every account of these users and what these idempotency keys (each where it
        lives: user, scope, key) remember, in one statement; a second loads credit lots
        where there are any."""
        ...

    def due_for_expiry(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(system_key, user_id) of accounts holding credit that lapsed by `now`."""
        ...

    def due_for_accrual(self, system_key: str, now: datetime, limit: int) -> list[str]:
        """Users of the system with a TIME_INTERVAL firing due by `now`."""
        ...

    def stale_for_accrual(
        self, system_key: str, epoch: int, after_user: str, limit: int
    ) -> list[str]:
        """Users of the system (after `after_user`, in id order) whose accrual was worked
        out before configuration version `epoch`: a TIME_INTERVAL trigger changed since."""
        ...

    def save(
        self,
        accounts: Sequence[Account],
        now: datetime,
        lots: Mapping[AccountKey, Sequence[CreditLot]] | None = None,
    ) -> None:
        """Upsert the accounts and write back the credit lots created or changed: `lots`
        by account, as a decision reports them (None: each account's `changed_lots`).
        Nothing given is changed."""
        ...

    def systems_of(self, user_id: str) -> frozenset[str]:
        """The systems in which the user has an account."""
        ...


class LedgerRepository(Protocol):
    def add(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        """Append entries in order, in one insert; returns them with their sequences."""
        ...

    def get(self, entry_id: str, user_id: str = "") -> LedgerEntry | None:
        """The entry with this id; with `user_id`, only if it is that user's (a read of
        the user's rows alone: under Citus one shard, where the id alone asks every one).
        Read before a write, never in it: an entry's owner never changes."""
        ...

    def reversals_of(self, user_ids: Sequence[str], entry_ids: Sequence[str]) -> dict[str, str]:
        """Of these entries (of these users), those already reversed: entry id -> the id
        of the reversal."""
        ...

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

    def feed(
        self, system_key: str, after_sequence: int, through_sequence: int, limit: int
    ) -> list[LedgerEntry]:
        """Up to `limit` entries (of one system; of all when empty), in sequence order,
        with after_sequence < sequence <= through_sequence."""
        ...


class FeedRepository(Protocol):
    """What the feeds' watermarks are made of (services/held/feed.py)."""

    def last_issued(self, feed: str) -> int:
        """The highest number the feed has handed out (committed or not)."""
        ...

    def writers(self) -> frozenset[str] | None:
        """The transactions of this database holding a transaction id now, which may
        hold numbers not yet committed; None where the store commits numbers in order,
        so that every number up to last_issued is final."""
        ...

    def running(self, writers: frozenset[str]) -> frozenset[str]:
        """Those of these transactions still running."""
        ...


Span = tuple[datetime, datetime]  # [start, end), UTC


@dataclass(frozen=True)
class BalanceCounts:
    """Users by balance bucket: bucket 0 holds balances <= 0, bucket i >= 1 holds
    balances in [(i - 1) * width + 1, i * width], width = max(1, ceil(top / buckets))."""

    top: int  # the highest balance counted (0 when none)
    users: dict[int, int]  # bucket -> users


@dataclass(frozen=True)
class EarningsTotals:
    """What a system's users earned in a window (see AnalyticsRepository.earnings)."""

    per_period: list[tuple[int, int]]  # (points, distinct earners), one per span
    top_earners: list[tuple[str, int]]  # (user_id, points), most first, ties by id
    new_users: int
    first_days_points: int  # earned by the new users in their first 14 days, together
    per_trigger: list[tuple[str, int, int]]  # (trigger_id or "", awards, points)


class AnalyticsRepository(Protocol):
    """Aggregates computed by the store, never by reading a ledger into the server.
    Periods are given as UTC spans (computed in the domain, so that every store buckets
    by local dates alike)."""

    def balance_counts(
        self, system_key: str, buckets: int, attributes: Sequence[tuple[str, str]]
    ) -> BalanceCounts:
        """The balances of the system's accounts (of users with all these attributes)."""
        ...

    def user_changes(
        self, system_key: str, user_id: str, periods: Sequence[Span]
    ) -> tuple[int, list[int]]:
        """The user's balance before the first period, and the net change in each."""
        ...

    def earnings(
        self, system_key: str, periods: Sequence[Span], top: int, first_days: int
    ) -> EarningsTotals:
        """Earned points ("earned": awards, less reversals of awards) per period and over
        the window the periods tile: top earners, new users (first entry in the window)
        and what they earned in their first `first_days` days, and per trigger."""
        ...


UserRange = tuple[str, str | None]  # user ids `after` < id <= `through` (None: no bound)


@dataclass(frozen=True)
class AccountTally:
    """One account as its row keeps it (None: no row) and as its entries add up (None:
    no entries), with what the lots check needs of each."""

    system_key: str
    user_id: str
    stored: AccountFigures | None
    ledger: AccountFigures | None
    next_expire_time: datetime | None  # as stored
    expiring_awards: int  # AWARD entries with an expiry


class AuditRepository(Protocol):
    """What `tally-server verify` reads, one range of users at a time, all in one
    snapshot (Store.snapshot). Aggregates are computed by the store; what streams
    (entries to replay, events, keys) is read as it is consumed."""

    def users_after(self, after: str, system_key: str, limit: int) -> list[str]:
        """The user ids of the next `limit` accounts (in `system_key`, when given) of
        users above `after`, in order; a user with several accounts appears for each."""
        ...

    def accounts(self, users: UserRange, system_key: str) -> list[AccountTally]:
        """Every account of these users, and every (system, user) with entries but no
        account, with their figures stored and summed."""
        ...

    def entry_problems(self, users: UserRange, system_key: str) -> list[Difference]:
        """Entries whose balance_after is not the previous entry's (in sequence order)
        plus their amount, or is negative; reversals of entries that are not there, not
        of their account, not an award or deduction, or not of the same amount; entries
        reversed more than once."""
        ...

    def lots(self, users: UserRange, system_key: str) -> dict[AccountKey, list[CreditLot]]:
        """The credit lots of these users, by (user_id, system_key)."""
        ...

    def postings(
        self, accounts: Sequence[AccountKey]
    ) -> Iterator[tuple[AccountKey, Iterator[Posted]]]:
        """Each of these accounts with its entries in sequence order, streamed."""
        ...

    def level_moves(self, users: UserRange, system_key: str) -> list[RecordedMove]:
        """These users' recorded level changes with the figures at their entries."""
        ...

    def metric_totals(self, users: UserRange) -> dict[tuple[str, str, str], Decimal]:
        """(user_id, event_type, reach) -> the running total kept."""
        ...

    def event_values(self, users: UserRange) -> Iterator[tuple[str, str, str, Decimal]]:
        """(user_id, event_type, reach, value) of every recorded event, streamed."""
        ...

    def stored_responses(
        self, users: UserRange, system_key: str
    ) -> Iterator[tuple[str, str, str, str]]:
        """(user_id, scope, key, response) of every used idempotency key (of `system_key`
        alone when given), streamed."""
        ...

    def present(self, user_ids: Sequence[str], entry_ids: Sequence[str]) -> set[str]:
        """Of these entry ids (of these users), those in the ledger."""
        ...

    def present_events(self, user_ids: Sequence[str], event_ids: Sequence[str]) -> set[str]:
        """Of these event ids (of these users), those recorded."""
        ...


class TriggerRepository(Protocol):
    """Triggers are configuration: read whole into memory (Configuration), written here."""

    def all(self) -> list[Trigger]: ...
    def lock(self, trigger_id: str) -> Trigger | None:
        """The stored trigger, locked for an update."""
        ...

    def add(self, trigger: Trigger) -> None: ...
    def update(self, trigger: Trigger) -> None: ...


class LevelRepository(Protocol):
    """Levels are configuration (read whole into memory); level changes are per user."""

    def all(self) -> list[Level]: ...
    def add(self, level: Level) -> None: ...
    def update(self, level: Level) -> None: ...
    def delete(self, level_id: str) -> None: ...
    def add_changes(self, changes: Sequence[LevelChange]) -> list[LevelChange]:
        """Append level changes in order, in one insert; returns them with sequences."""
        ...

    def changes_after(
        self, system_key: str, after_sequence: int, through_sequence: int, limit: int
    ) -> list[LevelChange]:
        """Level changes of a system (of all when empty) with after < sequence <=
        through, in sequence order (the WatchLevelChanges feed)."""
        ...

    def counts(self, system_key: str, basis: LevelBasis, thresholds: Sequence[int]) -> list[int]:
        """How many of the system's accounts have a basis value in each range between
        consecutive thresholds: [below the first, first..second, ..., last and above]."""
        ...


class BoostRepository(Protocol):
    def live(self, now: datetime) -> list[Boost]:
        """Boosts neither archived nor ended by `now` (what the configuration holds)."""
        ...

    def live_counts(
        self, system_key: str, user_ids: Sequence[str], now: datetime
    ) -> dict[str, int]:
        """How many boosts of each of these users (\"\" for the system's global ones) are
        live in the system at `now` (neither archived nor ended); users with none are
        absent."""
        ...

    def get(self, boost_id: str) -> Boost | None: ...
    def lock(self, boost_id: str) -> Boost | None: ...
    def add(self, added: Sequence[Boost]) -> None: ...
    def archive(self, boost_id: str, when: datetime) -> None: ...
    def page(
        self,
        system_key: str,
        user_id: str,
        statuses: frozenset[BoostStatus],
        before: tuple[datetime, str] | None,
        limit: int,
        now: datetime,
    ) -> list[Boost]:
        """A system's boosts (only a user's, when given), newest first, of these statuses
        at `now` (all when empty), older than the (create_time, id) cursor."""
        ...


class EventRepository(Protocol):
    """Recorded events and users' running totals of each event type, by reach (the
    systems the recording callers could use: domain/access.Reach, '' for every one)."""

    def totals(
        self, user_ids: Sequence[str], event_types: Sequence[str]
    ) -> dict[tuple[str, str, str], Decimal]:
        """(user_id, event_type, reach) -> the running total, for those the users have."""
        ...

    def save_totals(
        self, totals: Mapping[tuple[str, str, str], Decimal], now: datetime
    ) -> None: ...
    def add(self, events: Sequence[Event]) -> None: ...
    def window(
        self,
        event_types: Sequence[str],
        start_time: datetime,
        end_time: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[tuple[Event, dict[str, str]]]:
        """Events of these types with start_time <= create_time < end_time, in the order
        they were recorded (after the (create_time, id) cursor), each with its user's
        attributes."""
        ...


class IdempotencyRepository(Protocol):
    """Keys are read with the accounts (AccountRepository.standing); written here."""

    def add(self, keys: Mapping[KeyScope, StoredResponse], now: datetime) -> None: ...


class ApiKeyRepository(Protocol):
    def all(self) -> list[ApiKey]:
        """Every key, revoked ones too (there are few), oldest first."""
        ...

    def find(self, *, key_hash: str | None = None, key_id: str | None = None) -> ApiKey | None:
        """The key (revoked or not) with this hash or this id: one indexed read, for a key
        a process does not hold yet."""
        ...

    def add(self, key: ApiKey) -> None: ...
    def revoke(self, key_id: str, now: datetime) -> bool:
        """Revoke a live key; False when there is none by that id."""
        ...


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
    @property
    def triggers(self) -> TriggerRepository: ...
    @property
    def events(self) -> EventRepository: ...
    @property
    def levels(self) -> LevelRepository: ...
    @property
    def boosts(self) -> BoostRepository: ...
    @property
    def api_keys(self) -> ApiKeyRepository: ...
    @property
    def feeds(self) -> FeedRepository: ...
    @property
    def analytics(self) -> AnalyticsRepository: ...
    @property
    def audit(self) -> AuditRepository: ...

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


@runtime_checkable
class WriteGroups(Protocol):
    def write_groups(self, user_ids: Sequence[str]) -> Sequence[int]:
        """The write group of each user: changes of one group may share a transaction,
        and changes of different groups never do (under Citus: the worker that holds the
        user's shard, so that a batch commits on one worker, in one phase). A store
        without groups (one database) is one group."""
        ...


@runtime_checkable
class ViewsTogether(Protocol):
    def views_together(self) -> bool:
        """Whether many users' views read faster as one statement than one each
        (UserRepository.views): so on one PostgreSQL, where one statement saves the
        round trips and the per-statement work of each; not under Citus, where it would
        span shards, nor on SQLite, in-process."""
        ...


@runtime_checkable
class Sharding(Protocol):
    def fans_out(self) -> bool:
        """Whether a read of per-user rows that does not name their user (an entry by its
        id alone) asks every shard: under Citus, where those rows are distributed by user,
        one statement on each of them. A store without this (one database) answers such a
        read with one index probe, as any other."""
        ...


class SnapshotStore(Protocol):
    def snapshot(self) -> UnitOfWork:
        """A read-only unit of work in which every statement sees the same committed
        state, however long it runs (an audit of the whole store)."""
        ...
