"""Posting a batch of points changes in one unit of work: lock, read, decide, write.

The users of the batch are locked in one sorted order; their accounts, idempotency keys
and reversals are read by one statement each; every change is decided by the domain in
arrival order, one user's changes chaining on the account the previous one left; then
the entries, accounts and keys of every change that succeeded are written with one
statement each. A change whose decision fails (insufficient points, a reused key) fails
alone; the others are posted. The caller commits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from server.domain.changes import Decision
from server.domain.errors import IdempotencyKeyReused, SystemNotFound, TallyError, UserNotFound
from server.domain.ledger import Account
from server.domain.model import LedgerEntry, PointsSystem, UserProfile
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
    user_ids = [change.user_id for change in changes]
    if dry_run:
        locked = uow.users.read(user_ids)
    else:
        profiles = {c.user_id: c.profile for c in changes if c.profile is not None}
        locked = uow.users.lock(user_ids, profiles, now)
    systems = config.at_version(uow, locked.config_version).systems
    present = sorted(locked.users)
    keys = [c.idempotency_key for c in changes if c.idempotency_key]
    reverses = [c.reverses for c in changes if c.reverses]
    standing = uow.accounts.standing(present, keys) if present else Standing({}, {})
    accounts: dict[AccountKey, Account] = standing.accounts
    stored = standing.keys
    reversals = uow.ledger.reversals_of(present, reverses) if reverses and present else {}

    outcomes: list[Outcome | _Decided | int] = []
    firsts: dict[KeyScope, int] = {}  # key -> the index of the change that used it first
    for index, change in enumerate(changes):
        try:
            # (A dry run creates nobody: a user it would create counts as present.)
            if change.user_id not in locked.users and not (dry_run and change.profile):
                raise UserNotFound(change.user_id, change.system_key)
            scope = (change.user_id, change.system_key, change.idempotency_key)
            if change.idempotency_key:
                earlier = firsts.get(scope)
                if earlier is not None:
                    if changes[earlier].request_hash != change.request_hash:
                        raise IdempotencyKeyReused(change.idempotency_key)
                    outcomes.append(earlier)  # a repeat within the batch replays the first
                    continue
                replayed = idempotency.replay(stored.get(scope), change.request_hash, key=scope[2])
                if replayed is not None:
                    outcomes.append(replayed)
                    continue
            system = systems.get(change.system_key)
            if system is None:
                raise SystemNotFound(change.system_key)
            account_key = (change.user_id, change.system_key)
            account = accounts.get(account_key) or Account(change.system_key, change.user_id)
            decision = change.decide(account, Circumstances(system, reversals))
            if decision.changed:
                accounts[account_key] = decision.account
                for entry in decision.entries:
                    if entry.reverses_entry_id:
                        reversals[entry.reverses_entry_id] = entry.id
            if change.idempotency_key:
                firsts[scope] = index
            outcomes.append(_Decided(change, decision, system))
        except TallyError as error:
            outcomes.append(error)

    decided = [o for o in outcomes if isinstance(o, _Decided)]
    entries = [entry for d in decided for entry in d.decision.entries]
    if dry_run:
        written = {e.id: replace(e, id="") for e in entries}
    else:
        written = {e.id: e for e in uow.ledger.add(entries)}
    results: list[Outcome] = []
    remembered: dict[KeyScope, StoredResponse] = {}
    for change, outcome in zip(changes, outcomes, strict=True):
        if isinstance(outcome, int):  # a repeat of an earlier change in this batch
            first = results[outcome]
            outcome = replace(first, replayed=True) if isinstance(first, WriteResult) else first
        elif isinstance(outcome, _Decided):
            outcome = _result(outcome, written)
            if change.idempotency_key and outcome is not None and not dry_run:
                scope = (change.user_id, change.system_key, change.idempotency_key)
                remembered[scope] = idempotency.remember(outcome, change.request_hash)
        results.append(outcome)
    if not dry_run:
        touched = {(d.change.user_id, d.change.system_key) for d in decided if d.decision.changed}
        uow.accounts.save([accounts[key] for key in sorted(touched)], now)
        uow.idempotency.add(remembered, now)
    return results


def _result(decided: _Decided, written: Mapping[str, LedgerEntry]) -> WriteResult | None:
    """The response of a decided change: its own (last) entry, and the balance after it."""
    decision = decided.decision
    if not decision.entries:
        return None
    balance = decision.account.to_balance(decided.system.max_points)
    return WriteResult(written[decision.entries[-1].id], balance)
