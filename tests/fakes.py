"""An in-memory store behind the ports (services/ports.py), for the use cases' unit tests.

`FakeStore` hands out units of work over dict-backed tables, with the semantics the use
cases rely on from the real stores:
- A write unit of work works on a private copy of the tables and publishes it on
  `commit`; leaving it without one (or `rollback`) discards what it wrote. After a commit
  or rollback it goes on in a new transaction, as SqlUnitOfWork does.
- Write units of work run one at a time (SQLite's BEGIN IMMEDIATE, or every user locked),
  so the users a batch locks stay its own to the commit, and numbers (ledger and level
  change sequences) are taken in commit order: every number up to the last issued is
  final, as on SQLite (FeedRepository.writers is None).
- A read unit of work sees the tables as committed when it began, all of it one snapshot.
  It refuses writes and locks: a use case that writes in a read has a bug (on PostgreSQL
  the write would commit at once, in autocommit; on SQLite it would be rolled back).
- The unique constraints of store/models.py hold (IntegrityError): an entry id, one
  reversal per entry, an idempotency key per (user, scope), a level's key and threshold
  per system, an API key's id and hash.
- What goes in and comes out is a copy: a caller that changes an account, a user's
  attributes or an entry's metadata changes nothing stored.

Not faked (NotImplementedError): AnalyticsRepository and AuditRepository, whose methods are
aggregates the store computes in SQL (tests/integration/test_analytics.py, test_verify.py
prove them on the real stores), and SnapshotStore.
"""

from __future__ import annotations

import bisect
import copy
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Self, TypeVar

from server.domain.access import ApiKey
from server.domain.audit import Difference, Posted, RecordedMove
from server.domain.errors import TransientStoreError
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
    Welcomed,
)
from server.services.ports import (
    AccountKey,
    AccountTally,
    BalanceCounts,
    EarningsTotals,
    KeyScope,
    LockedUsers,
    Span,
    Standing,
    StoredResponse,
    UserRange,
    UserView,
    ViewAsk,
)

T = TypeVar("T")
LotKey = tuple[str, str, str]  # (user_id, system_key, entry_id)
TotalKey = tuple[str, str, str]  # (user_id, event_type, reach)
WRITE_WAIT_SECONDS = 10.0


class IntegrityError(Exception):
    """A unique constraint of the real schema would refuse this write."""


class ReadOnlyViolation(AssertionError):
    """A write or a lock in a read unit of work: a bug in the use case."""


@dataclass
class _Tables:
    """Everything stored. Values are never changed in place (they are replaced), so a
    shallow copy of each table is a snapshot."""

    config_version: int = 1  # as the migration leaves it
    systems: dict[str, PointsSystem] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    accounts: dict[AccountKey, Account] = field(default_factory=dict)  # lots kept apart
    lots: dict[LotKey, CreditLot] = field(default_factory=dict)
    entries: dict[str, LedgerEntry] = field(default_factory=dict)  # in sequence order
    last_sequence: int = 0
    keys: dict[KeyScope, StoredResponse] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)
    totals: dict[TotalKey, Decimal] = field(default_factory=dict)
    events: dict[tuple[str, str], Event] = field(default_factory=dict)  # (user_id, id)
    levels: dict[str, Level] = field(default_factory=dict)
    level_changes: list[LevelChange] = field(default_factory=list)
    last_level_change: int = 0
    boosts: dict[str, Boost] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)

    def copy(self) -> _Tables:
        return _Tables(
            config_version=self.config_version,
            systems=dict(self.systems),
            users=dict(self.users),
            accounts=dict(self.accounts),
            lots=dict(self.lots),
            entries=dict(self.entries),
            last_sequence=self.last_sequence,
            keys=dict(self.keys),
            triggers=dict(self.triggers),
            totals=dict(self.totals),
            events=dict(self.events),
            levels=dict(self.levels),
            level_changes=list(self.level_changes),
            last_level_change=self.last_level_change,
            boosts=dict(self.boosts),
            api_keys=dict(self.api_keys),
        )


def _own(value: T) -> T:
    """A private copy of a value holding dicts (a user's attributes, an entry's metadata)."""
    return copy.deepcopy(value)


def _kept(user: User) -> User:
    """The user as its row keeps it: where they are welcomed goes through its stored form
    (model.Welcomed.name), as the store's does."""
    return replace(_own(user), welcomed=Welcomed.named(user.welcomed.name))


def _bare(account: Account) -> Account:
    """The account as its row keeps it: no lots, nothing pending."""
    kept = account.copy()
    kept.lots = []
    kept.changed_lots = {}
    return kept


class FakeStore:
    """The Store port in memory (see the module's docstring for what it keeps of a real
    store's semantics). `fail_commits` makes that many of the next commits fail with a
    TransientStoreError, leaving nothing written, as a lost connection before COMMIT
    would. `sharded` makes it say that reads not naming their user fan out (as Citus's
    do, ports.Sharding); `reads_by_entry_id` counts such reads of an entry."""

    def __init__(self, *, sharded: bool = False) -> None:
        self.committed = _Tables()
        self.commits = 0  # commits that published something (of write units of work)
        self.fail_commits = 0
        self.sharded = sharded
        self.reads_by_entry_id = 0  # ledger.get without the entry's user
        self._writer = threading.Lock()

    def unit_of_work(self, *, write: bool) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, write=write)

    def fans_out(self) -> bool:
        return self.sharded

    # -- the unit of work's side -----------------------------------------------------------

    def _begin_write(self) -> None:
        if not self._writer.acquire(timeout=WRITE_WAIT_SECONDS):
            raise AssertionError(
                "a write unit of work waited for another: one opened inside another?"
            )

    def _end_write(self) -> None:
        self._writer.release()

    def _publish(self, tables: _Tables) -> None:
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise TransientStoreError("commit failed (FakeStore.fail_commits)")
        self.committed = tables
        self.commits += 1


class FakeUnitOfWork:
    """One transaction over the fake's tables; rolls back unless committed."""

    def __init__(self, store: FakeStore, *, write: bool) -> None:
        self.store = store
        self.write = write
        self._tables: _Tables | None = None
        self.systems = FakeSystemRepository(self)
        self.users = FakeUserRepository(self)
        self.accounts = FakeAccountRepository(self)
        self.ledger = FakeLedgerRepository(self)
        self.idempotency = FakeIdempotencyRepository(self)
        self.triggers = FakeTriggerRepository(self)
        self.events = FakeEventRepository(self)
        self.levels = FakeLevelRepository(self)
        self.boosts = FakeBoostRepository(self)
        self.api_keys = FakeApiKeyRepository(self)
        self.feeds = FakeFeedRepository(self)
        self.analytics = UnfakedAnalyticsRepository()
        self.audit = UnfakedAuditRepository()

    def __enter__(self) -> Self:
        if self.write:
            self.store._begin_write()
            self._tables = self.store.committed.copy()
        else:
            self._tables = self.store.committed  # replaced whole on commit: a snapshot
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._tables = None  # what was not committed is gone
        if self.write:
            self.store._end_write()

    def commit(self) -> None:
        tables = self.tables
        if self.write:
            self.store._publish(tables)
            self._tables = tables.copy()

    def rollback(self) -> None:
        if self.tables is not None and self.write:
            self._tables = self.store.committed.copy()

    # -- for the repositories --------------------------------------------------------------

    @property
    def tables(self) -> _Tables:
        if self._tables is None:
            raise AssertionError("a unit of work used outside its `with` block")
        return self._tables

    def writable(self, what: str) -> _Tables:
        if not self.write:
            raise ReadOnlyViolation(f"{what} in a read unit of work")
        return self.tables


class _Repository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def _read(self) -> _Tables:
        return self._uow.tables

    def _write(self, what: str) -> _Tables:
        return self._uow.writable(f"{type(self).__name__}.{what}")


class FakeSystemRepository(_Repository):
    def get(self, key: str) -> PointsSystem | None:
        return self._read.systems.get(key)

    def all(self) -> list[PointsSystem]:
        return [self._read.systems[k] for k in sorted(self._read.systems)]

    def lock(self, key: str) -> PointsSystem | None:
        return self._write("lock").systems.get(key)

    def add(self, system: PointsSystem) -> bool:
        tables = self._write("add")
        if system.key in tables.systems:
            return False
        tables.systems[system.key] = system
        return True

    def update(self, system: PointsSystem) -> None:
        tables = self._write("update")
        if system.key in tables.systems:
            tables.systems[system.key] = system

    def list_after(self, after_key: str, limit: int) -> list[PointsSystem]:
        return [s for s in self.all() if s.key > after_key][:limit]

    def version(self) -> int:
        return self._read.config_version

    def bump_version(self) -> int:
        tables = self._write("bump_version")
        tables.config_version += 1
        return tables.config_version


class FakeUserRepository(_Repository):
    def get(self, user_id: str) -> User | None:
        user = self._read.users.get(user_id)
        return None if user is None else _own(user)

    def view(
        self,
        user_id: str,
        system_key: str,
        types: frozenset[EntryType],
        before_sequence: int | None,
        limit: int,
    ) -> UserView | None:
        tables = self._read
        user = tables.users.get(user_id)
        if user is None:
            return None
        account = tables.accounts.get((user_id, system_key))
        entries = _page(tables, system_key, user_id, types, before_sequence, limit)
        return UserView(
            _own(user),
            None if account is None else _bare(account),
            entries,
            tables.config_version,
        )

    def views(self, asks: Sequence[ViewAsk]) -> list[UserView | None]:
        return [
            self.view(a.user_id, a.system_key, a.types, a.before_sequence, a.limit) for a in asks
        ]

    def lock(
        self,
        user_ids: Sequence[str],
        create: Mapping[str, User],
        keys: Sequence[KeyScope] = (),
        metrics: Sequence[str] = (),
    ) -> LockedUsers:
        tables = self._write("lock")
        found: dict[str, User] = {}
        created: set[str] = set()
        for user_id in sorted({*user_ids, *create}):
            user = tables.users.get(user_id)
            if user is None and user_id in create:
                user = create[user_id]
                tables.users[user_id] = _kept(user)
                created.add(user_id)
            if user is not None:
                found[user_id] = _own(user)
        standing = self._standing(sorted(found), keys, metrics)
        return LockedUsers(found, frozenset(created), tables.config_version, standing)

    def read(
        self, user_ids: Sequence[str], keys: Sequence[KeyScope] = (), metrics: Sequence[str] = ()
    ) -> LockedUsers:
        tables = self._read
        found = {i: _own(tables.users[i]) for i in sorted(set(user_ids)) if i in tables.users}
        standing = self._standing(sorted(found), keys, metrics)
        return LockedUsers(found, frozenset(), tables.config_version, standing)

    def _standing(
        self, user_ids: list[str], keys: Sequence[KeyScope], metrics: Sequence[str]
    ) -> Standing:
        standing = FakeAccountRepository(self._uow).standing(user_ids, keys)
        if metrics:
            standing.totals.update(FakeEventRepository(self._uow).totals(user_ids, metrics))
        return standing

    def remove(self, user_ids: Sequence[str]) -> None:
        tables = self._write("remove")
        for user_id in user_ids:
            tables.users.pop(user_id, None)

    def update(self, users: Sequence[User]) -> None:
        tables = self._write("update")
        for user in users:
            stored = tables.users.get(user.id)
            if stored is not None:  # an UPDATE of profile fields and welcomes, not create_time
                tables.users[user.id] = replace(
                    stored,
                    display_name=user.display_name,
                    email=user.email,
                    attributes=dict(user.attributes),
                    welcomed=_kept(user).welcomed,
                )


class FakeAccountRepository(_Repository):
    def standing(self, user_ids: Sequence[str], keys: Sequence[KeyScope]) -> Standing:
        tables = self._read
        users, wanted = set(user_ids), set(keys)
        accounts = {
            key: _bare(account) for key, account in tables.accounts.items() if key[0] in users
        }
        with_lots = {user_id for (user_id, _), a in accounts.items() if a.needs_lots}
        for (user_id, system_key, _), lot in tables.lots.items():
            holder = accounts.get((user_id, system_key))
            if user_id in with_lots and holder is not None:
                holder.lots.append(replace(lot))
        stored = {
            scope: response
            for scope, response in tables.keys.items()
            if scope[0] in users and scope in wanted
        }
        return Standing(accounts, stored)

    def due_for_expiry(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        due = [
            a
            for a in self._read.accounts.values()
            if a.next_expire_time is not None and a.next_expire_time <= now
        ]
        due.sort(key=lambda a: a.next_expire_time or now)
        return [(a.system_key, a.user_id) for a in due[:limit]]

    def due_for_accrual(self, system_key: str, now: datetime, limit: int) -> list[str]:
        due = [
            a
            for a in self._read.accounts.values()
            if a.system_key == system_key
            and a.next_accrual_time is not None
            and a.next_accrual_time <= now
        ]
        due.sort(key=lambda a: a.next_accrual_time or now)
        return [a.user_id for a in due[:limit]]

    def stale_for_accrual(
        self, system_key: str, epoch: int, after_user: str, limit: int
    ) -> list[str]:
        return sorted(
            a.user_id
            for a in self._read.accounts.values()
            if a.system_key == system_key and a.user_id > after_user and a.accrual_version < epoch
        )[:limit]

    def save(
        self,
        accounts: Sequence[Account],
        now: datetime,
        lots: Mapping[AccountKey, Sequence[CreditLot]] | None = None,
    ) -> None:
        """Upsert the accounts (an existing row keeps its create_time) and write back
        their changed lots (`lots` by account, as a decision reports them, else each
        account's changed_lots): those with something left upserted, emptied ones
        deleted. The accounts given are left as they are."""
        tables = self._write("save")
        for account in accounts:
            key = (account.user_id, account.system_key)
            kept = _bare(account)
            existing = tables.accounts.get(key)
            create_time = existing.create_time if existing is not None else None
            kept.create_time = create_time or account.create_time or now
            tables.accounts[key] = kept
            changed = (
                account.changed_lots.values()
                if lots is None
                else lots.get((account.user_id, account.system_key), ())
            )
            for lot in changed:
                lot_key = (account.user_id, account.system_key, lot.entry_id)
                if lot.remaining > 0:
                    tables.lots[lot_key] = replace(lot)
                else:
                    tables.lots.pop(lot_key, None)

    def systems_of(self, user_id: str) -> frozenset[str]:
        return frozenset(s for (u, s) in self._read.accounts if u == user_id)


def _page(
    tables: _Tables,
    system_key: str,
    user_id: str,
    types: frozenset[EntryType],
    before_sequence: int | None,
    limit: int,
) -> list[LedgerEntry]:
    """The user's entries in a system, newest first (LedgerRepository.page)."""
    found = [
        e
        for e in reversed(tables.entries.values())
        if e.user_id == user_id
        and e.system_key == system_key
        and (not types or e.type in types)
        and (before_sequence is None or e.sequence < before_sequence)
    ]
    return [_own(e) for e in found[:limit]]


class FakeLedgerRepository(_Repository):
    def add(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        tables = self._write("add")
        reversed_by = {
            (e.user_id, e.reverses_entry_id): e.id
            for e in tables.entries.values()
            if e.reverses_entry_id
        }
        numbered = []
        for entry in entries:
            if entry.id in tables.entries:
                raise IntegrityError(f"entry {entry.id} exists")
            if entry.reverses_entry_id:
                reversal = (entry.user_id, entry.reverses_entry_id)
                if reversal in reversed_by:
                    raise IntegrityError(f"entry {entry.reverses_entry_id} is reversed already")
                reversed_by[reversal] = entry.id
            tables.last_sequence += 1
            stored = replace(_own(entry), sequence=tables.last_sequence)
            tables.entries[entry.id] = stored
            numbered.append(_own(stored))
        return numbered

    def get(self, entry_id: str, user_id: str = "") -> LedgerEntry | None:
        if not user_id:
            self._uow.store.reads_by_entry_id += 1
        entry = self._read.entries.get(entry_id)
        if entry is None or (user_id and entry.user_id != user_id):
            return None
        return _own(entry)

    def reversals_of(self, user_ids: Sequence[str], entry_ids: Sequence[str]) -> dict[str, str]:
        users, ids = set(user_ids), set(entry_ids)
        return {
            e.reverses_entry_id: e.id
            for e in self._read.entries.values()
            if e.user_id in users and e.reverses_entry_id in ids
        }

    def page(
        self,
        system_key: str,
        user_id: str,
        types: frozenset[EntryType],
        before_sequence: int | None,
        limit: int,
    ) -> list[LedgerEntry]:
        return _page(self._read, system_key, user_id, types, before_sequence, limit)

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
        found = [
            e
            for e in self._read.entries.values()
            if e.user_id == user_id
            and e.system_key == system_key
            and after_sequence < e.sequence <= through_sequence
            and (start_time is None or e.create_time >= start_time)
            and (end_time is None or e.create_time < end_time)
        ]
        return [_own(e) for e in found[:limit]]

    def feed(
        self, system_key: str, after_sequence: int, through_sequence: int, limit: int
    ) -> list[LedgerEntry]:
        found = [
            e
            for e in self._read.entries.values()
            if after_sequence < e.sequence <= through_sequence
            and (not system_key or e.system_key == system_key)
        ]
        return [_own(e) for e in found[:limit]]


class FakeFeedRepository(_Repository):
    """Numbers are taken by one writer at a time and published with its commit, so every
    number up to the last one issued is final (as on SQLite)."""

    def last_issued(self, feed: str) -> int:
        tables = self._read
        return {"ledger": tables.last_sequence, "level_changes": tables.last_level_change}[feed]

    def writers(self) -> frozenset[str] | None:
        return None

    def running(self, writers: frozenset[str]) -> frozenset[str]:
        return frozenset()


class FakeIdempotencyRepository(_Repository):
    def add(self, keys: Mapping[KeyScope, StoredResponse], now: datetime) -> None:
        tables = self._write("add")
        for scope, stored in keys.items():
            if scope in tables.keys:
                raise IntegrityError(f"idempotency key {scope} exists")
            tables.keys[scope] = stored


class FakeTriggerRepository(_Repository):
    def all(self) -> list[Trigger]:
        return sorted(self._read.triggers.values(), key=lambda t: (t.create_time, t.id))

    def lock(self, trigger_id: str) -> Trigger | None:
        return self._write("lock").triggers.get(trigger_id)

    def add(self, trigger: Trigger) -> None:
        tables = self._write("add")
        if trigger.id in tables.triggers:
            raise IntegrityError(f"trigger {trigger.id} exists")
        tables.triggers[trigger.id] = trigger

    def update(self, trigger: Trigger) -> None:
        tables = self._write("update")
        if trigger.id in tables.triggers:
            tables.triggers[trigger.id] = trigger


class FakeEventRepository(_Repository):
    def totals(
        self, user_ids: Sequence[str], event_types: Sequence[str]
    ) -> dict[tuple[str, str, str], Decimal]:
        users, types = set(user_ids), set(event_types)
        return {
            key: total
            for key, total in self._read.totals.items()
            if key[0] in users and key[1] in types
        }

    def save_totals(self, totals: Mapping[tuple[str, str, str], Decimal], now: datetime) -> None:
        self._write("save_totals").totals.update(totals)

    def add(self, events: Sequence[Event]) -> None:
        tables = self._write("add")
        for event in events:
            key = (event.user_id, event.id)
            if key in tables.events:
                raise IntegrityError(f"event {event.id} exists")
            tables.events[key] = _own(event)

    def window(
        self,
        event_types: Sequence[str],
        start_time: datetime,
        end_time: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[tuple[Event, dict[str, str]]]:
        tables = self._read
        types = set(event_types)
        found = sorted(
            (
                e
                for e in tables.events.values()
                if e.event_type in types
                and start_time <= e.create_time < end_time
                and (after is None or (e.create_time, e.id) > after)
                and e.user_id in tables.users
            ),
            key=lambda e: (e.create_time, e.id),
        )
        return [(_own(e), dict(tables.users[e.user_id].attributes)) for e in found[:limit]]


class FakeLevelRepository(_Repository):
    def all(self) -> list[Level]:
        return sorted(self._read.levels.values(), key=lambda lv: (lv.system_key, lv.points))

    def add(self, level: Level) -> None:
        tables = self._write("add")
        if level.id in tables.levels:
            raise IntegrityError(f"level {level.id} exists")
        self._check_unique(tables, level)
        tables.levels[level.id] = level

    def update(self, level: Level) -> None:
        tables = self._write("update")
        if level.id in tables.levels:
            self._check_unique(tables, level)
            tables.levels[level.id] = level

    def delete(self, level_id: str) -> None:
        self._write("delete").levels.pop(level_id, None)

    @staticmethod
    def _check_unique(tables: _Tables, level: Level) -> None:
        for other in tables.levels.values():
            same_system = other.id != level.id and other.system_key == level.system_key
            if same_system and (other.key == level.key or other.points == level.points):
                raise IntegrityError(f"level {level.key} of {level.system_key} exists")

    def add_changes(self, changes: Sequence[LevelChange]) -> list[LevelChange]:
        tables = self._write("add_changes")
        numbered = []
        for change in changes:
            tables.last_level_change += 1
            numbered.append(replace(change, sequence=tables.last_level_change))
        tables.level_changes.extend(numbered)
        return numbered

    def changes_after(
        self, system_key: str, after_sequence: int, through_sequence: int, limit: int
    ) -> list[LevelChange]:
        return [
            c
            for c in self._read.level_changes
            if after_sequence < c.sequence <= through_sequence
            and (not system_key or c.system_key == system_key)
        ][:limit]

    def counts(self, system_key: str, basis: LevelBasis, thresholds: Sequence[int]) -> list[int]:
        counts = [0] * (len(thresholds) + 1)
        for account in self._read.accounts.values():
            if account.system_key == system_key:
                value = account.balance if basis is LevelBasis.BALANCE else account.total_earned
                counts[bisect.bisect_right(thresholds, value)] += 1
        return counts


def _boost_status(boost: Boost, now: datetime) -> BoostStatus:
    """As the store's page statement derives it (statements.BOOST_STATUS_WHERE)."""
    if boost.archive_time is not None:
        return BoostStatus.ARCHIVED
    if boost.end_time is not None and boost.end_time <= now:
        return BoostStatus.ENDED
    if boost.start_time > now:
        return BoostStatus.SCHEDULED
    return BoostStatus.ACTIVE


def _live(boost: Boost, now: datetime) -> bool:
    return boost.archive_time is None and (boost.end_time is None or boost.end_time > now)


class FakeBoostRepository(_Repository):
    def live(self, now: datetime) -> list[Boost]:
        live = [b for b in self._read.boosts.values() if _live(b, now)]
        return sorted(live, key=lambda b: (b.create_time, b.id))

    def live_counts(
        self, system_key: str, user_ids: Sequence[str], now: datetime
    ) -> dict[str, int]:
        users = set(user_ids)
        counts: dict[str, int] = {}
        for boost in self._read.boosts.values():
            if boost.system_key == system_key and boost.user_id in users and _live(boost, now):
                counts[boost.user_id] = counts.get(boost.user_id, 0) + 1
        return counts

    def get(self, boost_id: str) -> Boost | None:
        return self._read.boosts.get(boost_id)

    def lock(self, boost_id: str) -> Boost | None:
        return self._write("lock").boosts.get(boost_id)

    def add(self, added: Sequence[Boost]) -> None:
        tables = self._write("add")
        for boost in added:
            if boost.id in tables.boosts:
                raise IntegrityError(f"boost {boost.id} exists")
            tables.boosts[boost.id] = boost

    def archive(self, boost_id: str, when: datetime) -> None:
        tables = self._write("archive")
        boost = tables.boosts.get(boost_id)
        if boost is not None:
            tables.boosts[boost_id] = replace(boost, archive_time=when)

    def page(
        self,
        system_key: str,
        user_id: str,
        statuses: frozenset[BoostStatus],
        before: tuple[datetime, str] | None,
        limit: int,
        now: datetime,
    ) -> list[Boost]:
        found = sorted(
            (
                b
                for b in self._read.boosts.values()
                if b.system_key == system_key
                and (not user_id or b.user_id == user_id)
                and (before is None or (b.create_time, b.id) < before)
                and (not statuses or _boost_status(b, now) in statuses)
            ),
            key=lambda b: (b.create_time, b.id),
            reverse=True,
        )
        return found[:limit]


class FakeApiKeyRepository(_Repository):
    def all(self) -> list[ApiKey]:
        return sorted(self._read.api_keys.values(), key=lambda k: (k.create_time, k.id))

    def find(self, *, key_hash: str | None = None, key_id: str | None = None) -> ApiKey | None:
        if (key_hash is None) == (key_id is None):
            raise ValueError("find one key by key_hash or by key_id")
        keys = self._read.api_keys
        if key_id is not None:
            return keys.get(key_id)
        return next((k for k in keys.values() if k.key_hash == key_hash), None)

    def add(self, key: ApiKey) -> None:
        tables = self._write("add")
        if key.id in tables.api_keys or any(
            k.key_hash == key.key_hash for k in tables.api_keys.values()
        ):
            raise IntegrityError(f"API key {key.id} exists")
        tables.api_keys[key.id] = key

    def revoke(self, key_id: str, now: datetime) -> bool:
        tables = self._write("revoke")
        key = tables.api_keys.get(key_id)
        if key is None or key.revoke_time is not None:
            return False
        tables.api_keys[key_id] = replace(key, revoke_time=now)
        return True


UNFAKED = "computed by the store in SQL: proved on the real stores by tests/integration/{}"


class UnfakedAnalyticsRepository:
    """Aggregates (tests/integration/test_analytics.py): not worth a second implementation
    in Python that would only prove itself."""

    def balance_counts(
        self, system_key: str, buckets: int, attributes: Sequence[tuple[str, str]]
    ) -> BalanceCounts:
        raise NotImplementedError(UNFAKED.format("test_analytics.py"))

    def user_changes(
        self, system_key: str, user_id: str, periods: Sequence[Span]
    ) -> tuple[int, list[int]]:
        raise NotImplementedError(UNFAKED.format("test_analytics.py"))

    def earnings(
        self, system_key: str, periods: Sequence[Span], top: int, first_days: int
    ) -> EarningsTotals:
        raise NotImplementedError(UNFAKED.format("test_analytics.py"))


class UnfakedAuditRepository:
    """What `tally-server verify` reads (tests/integration/test_verify.py): checks of the
    stored rows against each other, which a fake that stores domain values cannot break."""

    def users_after(self, after: str, system_key: str, limit: int) -> list[str]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def accounts(self, users: UserRange, system_key: str) -> list[AccountTally]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def entry_problems(self, users: UserRange, system_key: str) -> list[Difference]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def lots(self, users: UserRange, system_key: str) -> dict[AccountKey, list[CreditLot]]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def postings(
        self, accounts: Sequence[AccountKey]
    ) -> Iterator[tuple[AccountKey, Iterator[Posted]]]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def level_moves(self, users: UserRange, system_key: str) -> list[RecordedMove]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def metric_totals(self, users: UserRange) -> dict[tuple[str, str, str], Decimal]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def event_values(self, users: UserRange) -> Iterator[tuple[str, str, str, Decimal]]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def stored_responses(
        self, users: UserRange, system_key: str
    ) -> Iterator[tuple[str, str, str, str]]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def present(self, user_ids: Sequence[str], entry_ids: Sequence[str]) -> set[str]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))

    def present_events(self, user_ids: Sequence[str], event_ids: Sequence[str]) -> set[str]:
        raise NotImplementedError(UNFAKED.format("test_verify.py"))
