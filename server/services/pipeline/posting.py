"""Posting a batch of points changes in one unit of work: lock, read, decide, write.

The users of the batch are locked in one sorted order; their accounts and what the
batch's idempotency keys remember are read by one statement (reversals and running event
totals by one more each, when the batch has any); every change is decided by the domain
in arrival order on its user's book (domain/book.py), one user's changes chaining on the
book the previous one left; then the entries, accounts, keys and events of every change
that succeeded are written with one statement each. A change whose decision fails
(insufficient points, a reused key) fails alone; the others are posted. The caller
commits.

A user created by the batch is welcomed by its first change that succeeds: the
USER_IDENTIFIED triggers of the systems that change's caller may use fire then, in the
same decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from server.domain import changes as domain_changes
from server.domain import levels
from server.domain.access import EVERY_SYSTEM, Reach
from server.domain.book import Book
from server.domain.changes import TriggerAward
from server.domain.errors import IdempotencyKeyReused, SystemNotFound, TallyError, UserNotFound
from server.domain.model import (
    Event,
    LedgerEntry,
    LevelChange,
    PointsSystem,
    User,
    UserProfile,
)
from server.domain.rules import Rules
from server.services.held.configuration import Configuration
from server.services.pipeline import idempotency
from server.services.pipeline.results import Result, Written
from server.services.ports import KeyScope, Standing, StoredResponse, UnitOfWork


@dataclass(frozen=True)
class Circumstances:
    """What a decision may consult besides the user's book."""

    rules: Rules
    # Entries of this user already reversed (entry id -> the reversal's id); filled for
    # changes that name the entry they reverse (Change.reverses).
    reversals: Mapping[str, str]
    # USER_IDENTIFIED awards this change's decision made first (the user is new).
    welcome: Sequence[TriggerAward] = ()

    def system(self, key: str) -> PointsSystem:
        system = self.rules.systems.get(key)
        if system is None:
            raise SystemNotFound(key)
        return system


Decide = Callable[[Book, Circumstances], Result | None]
# What a change comes to: its result, its error, or None for a change that found nothing
# to write (settling an account with nothing due).
Outcome = Result | TallyError | None


@dataclass(frozen=True)
class Change:
    """One points change to post: whose, where its key lives, and the rule that decides it."""

    system_key: str  # the system it changes; '' for a change of the user's (an event)
    user_id: str
    decide: Decide
    now: datetime
    # Given: create the user when new, and apply these profile fields. None: the user
    # must exist (USER_NOT_FOUND otherwise).
    profile: UserProfile | None = None
    idempotency_key: str = ""
    request_hash: str = ""
    reverses: str = ""  # the entry a reversal undoes
    reads_metrics: tuple[str, ...] = ()  # event types whose running totals it uses
    # The systems its caller may use: what the change may affect beyond its own system
    # (a new user's welcome, an event's triggers and running totals).
    reach: Reach = EVERY_SYSTEM

    @property
    def key_scope(self) -> KeyScope:
        """Where its idempotency key lives: the user and system; a user-wide key (an
        event's) lives in its caller's reach, so that keys limited to other systems can
        neither replay nor block it."""
        return (self.user_id, self.system_key or self.reach.tag, self.idempotency_key)


@dataclass
class _Decided:
    change: Change
    result: Result | None
    book: Book  # the fork it was decided on: its entries, events and changed accounts
    moves: list[LevelChange]  # the level changes it made, one per system at most


@dataclass
class _Batch:
    """What a batch has read once its users are locked, and what its decisions have
    changed so far: each change is decided on the state the changes before it left."""

    changes: Sequence[Change]
    users: dict[str, User]  # as locked, then with the profile fields of decided changes
    # Users the batch may change: those that existed, then each new one from the first
    # change that creates it (a change before it finds no user, as it would alone).
    present: set[str]
    new: set[str]  # users this batch creates (not yet welcomed)
    rules: Rules
    books: dict[str, Book]
    stored: Mapping[KeyScope, StoredResponse]
    reversals: dict[str, str]
    dry_run: bool
    firsts: dict[KeyScope, int] = field(default_factory=dict)  # key -> its first change
    profiled: set[str] = field(default_factory=set)  # users whose profile fields changed

    def decide(self, index: int, change: Change) -> Outcome | _Decided | int:
        """The change's outcome, its decision to write, or (for a repeat of a key used
        earlier in the batch) the index of the change whose result it replays."""
        if change.user_id not in self.present:
            if change.profile is None:
                raise UserNotFound(change.user_id, change.system_key)
            self.present.add(change.user_id)  # created (a dry run: would be) by this change
        scope = change.key_scope
        if change.idempotency_key:
            earlier = self.firsts.get(scope)
            if earlier is not None:
                if self.changes[earlier].request_hash != change.request_hash:
                    raise IdempotencyKeyReused(change.idempotency_key)
                return earlier
            replayed = idempotency.replay(
                self.stored.get(scope),
                change.request_hash,
                key=scope[2],
                triggers=self.rules.triggers,
            )
            if replayed is not None:
                return replayed
        if change.system_key and change.system_key not in self.rules.systems:
            raise SystemNotFound(change.system_key)
        user = self._user(change)
        book = self.books.get(user.id)
        if book is None:
            book = Book(user, {}, identified=user.id not in self.new)
        fork = book.fork(user)
        welcome = domain_changes.identify(fork, self.rules, change.now, change.reach)
        result = change.decide(fork, Circumstances(self.rules, self.reversals, welcome))
        moves = self._moves(book, fork, change.now)
        if result is not None and moves:
            result = result.with_levels(moves)
        self.books[user.id] = fork
        for entry in fork.entries:
            if entry.reverses_entry_id:
                self.reversals[entry.reverses_entry_id] = entry.id
        if change.idempotency_key:
            self.firsts[scope] = index
        if change.profile is not None and not self.dry_run and user is not self.users[user.id]:
            self.users[user.id] = user
            self.profiled.add(user.id)
        return _Decided(change, result, fork, list(moves.values()))

    def _moves(self, before: Book, after: Book, now: datetime) -> dict[str, LevelChange]:
        """By system, the level moves of a decision: each changed account's level before
        and after it (the move is dated and named by its last entry there)."""
        moves = {}
        last = {entry.system_key: entry.id for entry in after.entries}
        for key in sorted(after.changed & set(last)):
            ladder = self.rules.levels.get(key)
            if ladder:
                system = self.rules.systems[key]
                move = levels.crossed(
                    ladder, system, before.accounts.get(key), after.accounts[key], last[key], now
                )
                if move is not None:
                    moves[key] = move
        return moves

    def _user(self, change: Change) -> User:
        """The user as the change names it: as stored, with the change's profile fields
        (a dry run's new user: as the change would create it)."""
        user = self.users.get(change.user_id)
        if user is None:
            assert change.profile is not None, "a change that creates its user names it"
            return User.new(change.profile, change.now)
        return user if change.profile is None else user.with_profile(change.profile)


def post(
    uow: UnitOfWork,
    changes: Sequence[Change],
    config: Configuration,
    *,
    dry_run: bool = False,
    written: list[LedgerEntry] | None = None,
) -> list[Outcome]:
    """Decide and write `changes` in `uow` (which the caller commits); outcomes in order.
    Every entry written is also appended to `written`, when given (for the writer's
    count of entries by type, which outcomes alone do not show: settling an account, or
    a welcome, writes entries no result names).

    A dry run decides the same way on an unlocked read and writes nothing: its entries
    have no sequence."""
    now = max(change.now for change in changes)
    batch = _read(uow, changes, config, now, dry_run=dry_run)
    outcomes: list[Outcome | _Decided | int] = []
    for index, change in enumerate(changes):
        try:
            outcomes.append(batch.decide(index, change))
        except TallyError as error:
            outcomes.append(error)
    return _write(uow, batch, outcomes, now, written)


def _read(
    uow: UnitOfWork,
    changes: Sequence[Change],
    config: Configuration,
    now: datetime,
    *,
    dry_run: bool,
) -> _Batch:
    """Lock (or, for a dry run, read) the batch's users, then read what it decides on."""
    user_ids = [change.user_id for change in changes]
    profiles: dict[str, UserProfile] = {}  # a new user is made from its first change
    for change in changes:
        if change.profile is not None:
            profiles.setdefault(change.user_id, change.profile)
    if dry_run:
        locked = uow.users.read(user_ids)
        new = set(profiles) - set(locked.users)
    else:
        locked = uow.users.lock(user_ids, profiles, now)
        new = set(locked.created)
    rules = config.at_version(uow, locked.config_version).rules
    found = sorted(locked.users)
    keys = [c.idempotency_key for c in changes if c.idempotency_key]
    reverses = [c.reverses for c in changes if c.reverses]
    metrics = sorted({m for c in changes for m in c.reads_metrics})
    standing = uow.accounts.standing(found, keys) if found else Standing({}, {})
    reversals = uow.ledger.reversals_of(found, reverses) if reverses and found else {}
    totals = uow.events.totals(found, metrics) if metrics and found else {}
    books: dict[str, Book] = {}
    for (user_id, system_key), account in standing.accounts.items():
        book = books.get(user_id)
        if book is None:
            book = books[user_id] = Book(locked.users[user_id], {}, identified=user_id not in new)
        book.accounts[system_key] = account
    for (user_id, event_type, reach), total in totals.items():
        book = books.get(user_id)
        if book is None:
            book = books[user_id] = Book(locked.users[user_id], {}, identified=user_id not in new)
        book.metrics[(event_type, reach)] = total
    return _Batch(
        changes,
        dict(locked.users),
        set(locked.users) - new,
        new,
        rules,
        books,
        standing.keys,
        reversals,
        dry_run,
    )


def _write(
    uow: UnitOfWork,
    batch: _Batch,
    outcomes: list[Outcome | _Decided | int],
    now: datetime,
    kept: list[LedgerEntry] | None,
) -> list[Outcome]:
    """Write the decided changes' entries, accounts, events and keys (nothing for a dry
    run), and turn every outcome into the change's result."""
    decided = [o for o in outcomes if isinstance(o, _Decided)]
    entries = [entry for d in decided for entry in d.book.entries]
    moves = [move for d in decided for move in d.moves]
    if batch.dry_run:  # nothing is written: the entries have no id and no sequence
        written = Written(
            {e.id: replace(e, id="") for e in entries},
            {m.entry_id: replace(m, entry_id="") for m in moves},
        )
    else:
        written = Written(
            {e.id: e for e in uow.ledger.add(entries)},
            {m.entry_id: m for m in uow.levels.add_changes(moves)},
        )
        if kept is not None:
            kept.extend(entries)
    results: list[Outcome] = []
    remembered: dict[KeyScope, StoredResponse] = {}
    for change, outcome in zip(batch.changes, outcomes, strict=True):
        if isinstance(outcome, int):  # a repeat of an earlier change in this batch
            first = results[outcome]
            outcome = first if isinstance(first, TallyError) or first is None else _replayed(first)
        elif isinstance(outcome, _Decided):
            outcome = None if outcome.result is None else outcome.result.written(written)
            if change.idempotency_key and outcome is not None and not batch.dry_run:
                remembered[change.key_scope] = idempotency.remember(outcome, change.request_hash)
        results.append(outcome)
    if not batch.dry_run:
        touched = sorted({(d.book.user.id, key) for d in decided for key in d.book.changed})
        uow.accounts.save([batch.books[user_id].accounts[key] for user_id, key in touched], now)
        metrics = sorted({(d.book.user.id, m) for d in decided for m in d.book.changed_metrics})
        uow.events.save_totals({(u, *m): batch.books[u].metrics[m] for u, m in metrics}, now)
        events: list[Event] = [event for d in decided for event in d.book.events]
        uow.events.add(events)
        uow.idempotency.add(remembered, now)
        uow.users.update([batch.users[user_id] for user_id in sorted(batch.profiled)])
    return results


def _replayed(result: Result) -> Result:
    return replace(result, replayed=True)
