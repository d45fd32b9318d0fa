"""Posting a batch of points changes in one unit of work: prepare, decide, commit.

Prepare: the users of the batch are locked in one sorted order, and their accounts and
what the batch's idempotency keys remember are read by one statement sent with the lock
(reversals and running event totals by one more each, when the batch has any). Decide:
the domain decides the whole batch at once, from those values alone (domain/batch.py:
which change fails, which replays, what each writes). Commit: the entries, accounts, keys
and events the decision names are written with one statement each (under Citus, one a
shard of the batch's worker: see store/statements/tables.py, RowsInsert). The caller
commits; on PostgreSQL the writes after the ledger's go with its COMMIT, so a batch of
existing users costs three round trips (store/execution.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial

from server.domain import batch
from server.domain.batch import (
    Answer,
    BatchDecision,
    BatchInput,
    Command,
    Decided,
    Outcome,
    Remembered,
)
from server.domain.model import LedgerEntry, User
from server.domain.results import Written
from server.domain.rules import Rules
from server.services.held.configuration import Configuration
from server.services.pipeline import codec, idempotency
from server.services.ports import KeyScope, StoredResponse, UnitOfWork

# What the writer and the use cases post: a command of the domain's (domain/batch.py).
Change = Command

__all__ = ["Change", "Outcome", "post"]


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
    given = _prepare(uow, changes, config, now, dry_run=dry_run)
    decision = batch.decide(given)
    if dry_run:  # nothing is written: the entries have no id and no sequence
        return decision.outcomes(
            Written(
                {e.id: replace(e, id="") for e in decision.entries},
                {m.entry_id: replace(m, entry_id="") for m in decision.level_changes},
            )
        )
    return _commit(uow, changes, decision, now, written, created=given.new)


def _prepare(
    uow: UnitOfWork,
    changes: Sequence[Change],
    config: Configuration,
    now: datetime,
    *,
    dry_run: bool,
) -> BatchInput:
    """Lock (or, for a dry run, read) the batch's users, then read what it decides on.

    A new user is made as its first change would make it, welcome included (by the rules
    the process holds): the decision takes it as welcomed nowhere and writes it again
    only when its welcome turned out otherwise (another change created it, or the lock
    found other rules: domain/batch.py), so a new user costs no second write."""
    user_ids = [change.user_id for change in changes]
    create: dict[str, User] = {}  # a new user is made from its first change
    held = config.snapshot.rules  # the rules the lock will find, usually
    for change in changes:
        if change.profile is not None and change.user_id not in create:
            made = User.new(change.profile, now)
            create[change.user_id] = made.welcomed_by(change.reach, held)
    keys = [k for c in changes if c.idempotency_key for k in batch.key_scopes_read(c)]
    metrics = sorted({m for c in changes for m in c.reads_metrics})
    if dry_run:
        locked = uow.users.read(user_ids, keys, metrics)
        new = frozenset(create) - set(locked.users)
    else:
        locked = uow.users.lock(user_ids, create, keys, metrics)
        new = locked.created
    rules = config.at_version(uow, locked.config_version).rules
    found = sorted(locked.users)
    reverses = [c.reverses for c in changes if c.reverses]
    standing = locked.standing
    reversals = uow.ledger.reversals_of(found, reverses) if reverses and found else {}
    return BatchInput(
        commands=changes,
        users=locked.users,
        new=new,
        rules=rules,
        accounts=standing.accounts,
        totals=standing.totals,
        remembered={scope: _remembered(s, rules) for scope, s in standing.keys.items()},
        reversals=reversals,
        id_seed=str(uuid.uuid4()),  # the batch's ids are drawn here, once
    )


def _remembered(stored: StoredResponse, rules: Rules) -> Remembered:
    """A stored response as the decision replays it (decoded only when it is)."""
    return Remembered(stored.request_hash, partial(codec.loads, stored.response, rules.triggers))


def _commit(
    uow: UnitOfWork,
    changes: Sequence[Change],
    decision: BatchDecision,
    now: datetime,
    kept: list[LedgerEntry] | None,
    *,
    created: frozenset[str],
) -> list[Outcome]:
    """Write what the decision says, and each change's outcome in its stored form; the
    users the lock `created` for changes that all failed are removed again."""
    written = Written(
        {e.id: e for e in uow.ledger.add(decision.entries)},
        {m.entry_id: m for m in uow.levels.add_changes(decision.level_changes)},
    )
    if kept is not None:
        kept.extend(decision.entries)
    outcomes = decision.outcomes(written)
    remembered: dict[KeyScope, StoredResponse] = {}
    for scope, (index, request_hash) in decision.remember.items():
        outcome = outcomes[index]
        assert outcome is not None, "a key keeps a result"
        assert not isinstance(outcome, Exception), "a key keeps a result"
        remembered[scope] = idempotency.remember(outcome, request_hash)
    uow.accounts.save(decision.accounts, now, decision.lots)
    uow.events.save_totals(decision.totals, now)
    uow.events.add(decision.events)
    uow.idempotency.add(remembered, now)
    uow.users.update(decision.users)
    made = {c.user_id for c, a in zip(changes, decision.answers, strict=True) if _made(a)}
    uow.users.remove(sorted(created - made))
    return outcomes


def _made(answer: Answer) -> bool:
    """Whether a change's answer wrote (or would have written) its user: it was decided.
    (A repeat follows a decided change of its user; a replay needs an existing user.)"""
    return isinstance(answer, Decided)
