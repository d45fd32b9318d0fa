"""Posting a batch of points changes in one unit of work: lock, read, decide, write.

The users of the batch are locked in one sorted order; their accounts and what the
batch's idempotency keys remember are read by one statement (reversals by another, when
the batch reverses something); every change is decided by the domain in arrival order,
one user's changes chaining on the account the previous one left; then the entries,
accounts and keys of every change that succeeded are written with one statement each.
A change whose decision fails (insufficient points, a reused key) fails alone; the
others are posted. The caller commits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from server.domain.changes import Decision
from server.domain.errors import IdempotencyKeyReused, SystemNotFound, TallyError, UserNotFound
from server.domain.ledger import Account
from server.domain.model import LedgerEntry, PointsSystem, User, UserProfile
from server.services import idempotency
from server.services.configuration import Configuration
from server.services.ports import AccountKey, KeyScope, Standing, StoredResponse, UnitOfWork
from server.services.results import WriteResult


@dataclass(frozen=True)
class Circumstances:
    """What a decision may consult besides the account."""

    system: PointsSystem
    # Entries of this user already reversed (entry id -> the reversal's id); filled for
    # changes that name the entry they reverse (Change.reverses).
    reversals: Mapping[str, str]


Decide = Callable[[Account, Circumstances], Decision]
# What a change comes to: its result, its error, or None for a change that found nothing
# to write (settling an account with no lapsed credit).
Outcome = WriteResult | TallyError | None


@dataclass(frozen=True)
class Change:
    """One points change to post: whose, in which system, and the rule that decides it."""

    system_key: str
    user_id: str
    decide: Decide
    now: datetime
    # Given: create the user when new, and apply these profile fields. None: the user
    # must exist (USER_NOT_FOUND otherwise).
    profile: UserProfile | None = None
    idempotency_key: str = ""
    request_hash: str = ""
    reverses: str = ""  # the entry a reversal undoes


@dataclass
class _Decided:
    change: Change
    decision: Decision
    system: PointsSystem


@dataclass
class _Batch:
    """What a batch has read once its users are locked, and what its decisions have
    changed so far: each change is decided on the state the changes before it left."""

    changes: Sequence[Change]
    users: dict[str, User]  # as locked, then with the profile fields of decided changes
    # Users the batch may change: those that existed, then each new one from the first
    # change that creates it (a change before it finds no user, as it would alone).
    present: set[str]
    systems: Mapping[str, PointsSystem]
    accounts: dict[AccountKey, Account]
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
        scope = (change.user_id, change.system_key, change.idempotency_key)
        if change.idempotency_key:
            earlier = self.firsts.get(scope)
            if earlier is not None:
                if self.changes[earlier].request_hash != change.request_hash:
                    raise IdempotencyKeyReused(change.idempotency_key)
                return earlier
            replayed = idempotency.replay(self.stored.get(scope), change.request_hash, key=scope[2])
            if replayed is not None:
                return replayed
        system = self.systems.get(change.system_key)
        if system is None:
            raise SystemNotFound(change.system_key)
        account_key = (change.user_id, change.system_key)
        account = self.accounts.get(account_key) or Account(change.system_key, change.user_id)
        decision = change.decide(account, Circumstances(system, self.reversals))
        if decision.changed:
            self.accounts[account_key] = decision.account
            for entry in decision.entries:
                if entry.reverses_entry_id:
                    self.reversals[entry.reverses_entry_id] = entry.id
        if change.idempotency_key:
            self.firsts[scope] = index
        if change.profile is not None and not self.dry_run:
            self._apply_profile(change.profile)
        return _Decided(change, decision, system)

    def _apply_profile(self, profile: UserProfile) -> None:
        """A decided change's profile fields (replays and failures change no profile)."""
        user = self.users[profile.id]
        updated = user.with_profile(profile)
        if updated is not user:
            self.users[profile.id] = updated
            self.profiled.add(profile.id)


def post(
    uow: UnitOfWork,
    changes: Sequence[Change],
    config: Configuration,
    *,
    dry_run: bool = False,
) -> list[Outcome]:
    """Decide and write `changes` in `uow` (which the caller commits); outcomes in order.

    A dry run decides the same way on an unlocked read and writes nothing: its entries
    have no id and no sequence."""
    now = max(change.now for change in changes)
    batch = _read(uow, changes, config, now, dry_run=dry_run)
    outcomes: list[Outcome | _Decided | int] = []
    for index, change in enumerate(changes):
        try:
            outcomes.append(batch.decide(index, change))
        except TallyError as error:
            outcomes.append(error)
    return _write(uow, batch, outcomes, now)


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
    if dry_run:
        locked = uow.users.read(user_ids)
    else:
        profiles: dict[str, UserProfile] = {}  # a new user is made from its first change
        for change in changes:
            if change.profile is not None:
                profiles.setdefault(change.user_id, change.profile)
        locked = uow.users.lock(user_ids, profiles, now)
    systems = config.at_version(uow, locked.config_version).systems
    found = sorted(locked.users)
    keys = [c.idempotency_key for c in changes if c.idempotency_key]
    reverses = [c.reverses for c in changes if c.reverses]
    standing = uow.accounts.standing(found, keys) if found else Standing({}, {})
    reversals = uow.ledger.reversals_of(found, reverses) if reverses and found else {}
    return _Batch(
        changes,
        dict(locked.users),
        set(locked.users) - locked.created,
        systems,
        standing.accounts,
        standing.keys,
        reversals,
        dry_run,
    )


def _write(
    uow: UnitOfWork, batch: _Batch, outcomes: list[Outcome | _Decided | int], now: datetime
) -> list[Outcome]:
    """Write the decided changes' entries, accounts and keys (nothing for a dry run), and
    turn every outcome into the change's result."""
    decided = [o for o in outcomes if isinstance(o, _Decided)]
    entries = [entry for d in decided for entry in d.decision.entries]
    if batch.dry_run:
        written = {e.id: replace(e, id="") for e in entries}
    else:
        written = {e.id: e for e in uow.ledger.add(entries)}
    results: list[Outcome] = []
    remembered: dict[KeyScope, StoredResponse] = {}
    for change, outcome in zip(batch.changes, outcomes, strict=True):
        if isinstance(outcome, int):  # a repeat of an earlier change in this batch
            first = results[outcome]
            outcome = replace(first, replayed=True) if isinstance(first, WriteResult) else first
        elif isinstance(outcome, _Decided):
            outcome = _result(outcome, written)
            if change.idempotency_key and outcome is not None and not batch.dry_run:
                scope = (change.user_id, change.system_key, change.idempotency_key)
                remembered[scope] = idempotency.remember(outcome, change.request_hash)
        results.append(outcome)
    if not batch.dry_run:
        touched = {(d.change.user_id, d.change.system_key) for d in decided if d.decision.changed}
        uow.accounts.save([batch.accounts[key] for key in sorted(touched)], now)
        uow.idempotency.add(remembered, now)
        uow.users.update([batch.users[user_id] for user_id in sorted(batch.profiled)])
    return results


def _result(decided: _Decided, written: Mapping[str, LedgerEntry]) -> WriteResult | None:
    """The response of a decided change: its own (last) entry, and the balance after it."""
    decision = decided.decision
    if not decision.entries:
        return None
    balance = decision.account.to_balance(decided.system.max_points)
    return WriteResult(written[decision.entries[-1].id], balance)
