"""Points-change use cases: award, deduct, award in batches, reverse, and settle what
falls due (lapsed credit, TIME_INTERVAL accruals). Each validates its command, states
the change for the domain to decide, and hands it to the process's writer, which posts
it with whatever else is queued. Events (services/events.py) post the same way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from server.domain import changes, commands, levels, validation
from server.domain.book import Book
from server.domain.errors import EntryNotFound, FieldViolation, TallyError, ValidationFailed
from server.domain.ledger import Account
from server.domain.levels import Ladder
from server.domain.model import Balance, PointsSystem
from server.domain.rules import Rules
from server.services import callers, idempotency
from server.services.ports import UnitOfWork
from server.services.posting import Change, Circumstances, Decide, Outcome
from server.services.results import Result, WriteResult
from server.services.tally import Tally
from server.services.transactions import in_transaction

MAX_BATCH_ITEMS = 100
SWEEP_BATCH = 500


def award(tally: Tally, cmd: commands.Award, now: datetime) -> WriteResult:
    validation.award(cmd, now)
    return _one(tally, _award_change(tally, cmd, now), dry_run=cmd.validate_only)


def _award_change(tally: Tally, cmd: commands.Award, now: datetime) -> Change:
    """The change an Award states, once `cmd` is known valid: for a caller who may use
    the system, when it exists, within the user's write limit."""
    caller = callers.current()
    caller.check_system(cmd.system_key)
    tally.system(cmd.system_key)
    tally.limits.take(cmd.system_key, cmd.user.id)

    def decide(book: Book, given: Circumstances) -> WriteResult:
        system = given.system(cmd.system_key)
        entry = changes.award(book, given.rules, system, cmd, now)
        return WriteResult(entry, balance_in(book, system, given.rules))

    return Change(
        cmd.system_key,
        cmd.user.id,
        decide,
        now,
        profile=cmd.user,
        idempotency_key=cmd.idempotency_key,
        request_hash=idempotency.fingerprint("Award", cmd),
        reach=caller.reach,  # a new user is welcomed in the caller's systems alone
    )


def deduct(tally: Tally, cmd: commands.Deduct, now: datetime) -> WriteResult:
    validation.deduct(cmd)
    callers.current().check_system(cmd.system_key)
    tally.system(cmd.system_key)
    tally.limits.take(cmd.system_key, cmd.user_id)

    def decide(book: Book, given: Circumstances) -> WriteResult:
        system = given.system(cmd.system_key)
        entry = changes.deduct(book, given.rules, system, cmd, now)
        return WriteResult(entry, balance_in(book, system, given.rules))

    change = Change(
        cmd.system_key,
        cmd.user_id,
        decide,
        now,
        idempotency_key=cmd.idempotency_key,
        request_hash=idempotency.fingerprint("Deduct", cmd),
    )
    return _one(tally, change, dry_run=cmd.validate_only)


def award_batch(
    tally: Tally, items: Sequence[commands.Award | TallyError], now: datetime
) -> list[WriteResult | TallyError]:
    """Every valid item posted together: one item's failure never undoes another.

    An item may arrive already failed (the API layer could not convert it); its error is
    its result. Results are in input order."""
    if not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise ValidationFailed(
            [FieldViolation("items", f"must hold 1 to {MAX_BATCH_ITEMS} items, got {len(items)}")]
        )
    results: list[WriteResult | TallyError | Change] = []
    for index, item in enumerate(items):
        if isinstance(item, TallyError):
            results.append(item)
            continue
        try:
            validation.award(item, now, prefix=f"items[{index}].")
            results.append(_award_change(tally, item, now))
        except TallyError as error:
            results.append(error)
    queued = [r for r in results if isinstance(r, Change)]
    posted = iter(tally.writer.post(queued) if queued else [])
    return [_item(next(posted)) if isinstance(r, Change) else r for r in results]


def reverse(tally: Tally, cmd: commands.Reverse, now: datetime) -> WriteResult:
    validation.reverse(cmd)
    original = in_transaction(tally.store, lambda uow: uow.ledger.get(cmd.entry_id), write=False)
    # An entry of a system the caller may not use is not theirs to see either.
    if original is None or not callers.current().allows_system(original.system_key):
        raise EntryNotFound(cmd.entry_id)
    tally.limits.take(original.system_key, original.user_id)

    def decide(book: Book, given: Circumstances) -> WriteResult:
        system = given.system(original.system_key)
        earlier = given.reversals.get(original.id)
        entry = changes.reverse(
            book, given.rules, system, original, cmd, now, earlier_reversal_id=earlier
        )
        return WriteResult(entry, balance_in(book, system, given.rules))

    change = Change(
        original.system_key,
        original.user_id,
        decide,
        now,
        idempotency_key=cmd.idempotency_key,
        request_hash=idempotency.fingerprint("Reverse", cmd),
        reverses=original.id,
    )
    return _one(tally, change, dry_run=False)


def settle(tally: Tally, system_key: str, user_id: str, now: datetime) -> None:
    """Write what fell due by `now` (nothing when someone got there first)."""
    settle_many(tally, [(system_key, user_id)], now)


def settle_many(tally: Tally, accounts: Sequence[tuple[str, str]], now: datetime) -> None:
    def decide_for(system_key: str) -> Decide:
        def decide(book: Book, given: Circumstances) -> None:
            changes.settle(book, given.rules, given.system(system_key), now)

        return decide

    outcomes = tally.writer.post(
        [Change(key, user_id, decide_for(key), now) for key, user_id in accounts]
    )
    for outcome in outcomes:
        if isinstance(outcome, TallyError):
            raise outcome


def expire_due(tally: Tally, now: datetime, *, limit: int = SWEEP_BATCH) -> int:
    """Write off lapsed credit of accounts nobody has touched since (the periodic sweep),
    in batches posted like any other changes. Returns the accounts settled."""
    due = in_transaction(
        tally.store, lambda uow: uow.accounts.due_for_expiry(now, limit), write=False
    )
    if due:
        settle_many(tally, due, now)
    return len(due)


def accrue_due(tally: Tally, now: datetime, *, limit: int = SWEEP_BATCH) -> int:
    """Write the TIME_INTERVAL firings due for accounts nobody has touched (the periodic
    sweep), in batches of up to `limit` accounts. Returns the accounts settled.

    Accounts with a firing due are found by index. After a TIME_INTERVAL trigger of a
    system changed (its epoch), one pass over the system's accounts settles those worked
    out before, which may have firings nothing scheduled; the process then remembers the
    epoch as done (another process, or a restart, makes the pass again, harmlessly)."""
    rules = in_transaction(tally.store, tally.config.for_read, write=False).rules
    settled = 0
    for system_key, epoch in sorted(rules.interval_epochs.items()):

        def due(uow: UnitOfWork, key: str = system_key) -> list[str]:
            return uow.accounts.due_for_accrual(key, now, limit)

        previous: list[str] = []
        # (a batch that comes back unchanged was settled by nobody: stop rather than spin)
        while (users := in_transaction(tally.store, due, write=False)) and users != previous:
            settle_many(tally, [(system_key, user_id) for user_id in users], now)
            settled += len(users)
            if len(users) < limit:
                break
            previous = users
        if tally.accrued_epochs.get(system_key) != epoch:
            settled += _settle_stale(tally, system_key, epoch, now, limit)
            tally.accrued_epochs[system_key] = epoch
    return settled


def _settle_stale(tally: Tally, system_key: str, epoch: int, now: datetime, limit: int) -> int:
    """Settle every account of the system worked out before `epoch`, in user id order."""
    after, settled = "", 0
    while True:

        def stale(uow: UnitOfWork, cursor: str = after) -> list[str]:
            return uow.accounts.stale_for_accrual(system_key, epoch, cursor, limit)

        users = in_transaction(tally.store, stale, write=False)
        if users:
            settle_many(tally, [(system_key, user_id) for user_id in users], now)
            settled += len(users)
        if len(users) < limit:
            return settled
        after = users[-1]


def balance_in(book: Book, system: PointsSystem, rules: Rules) -> Balance:
    """The user's balance in `system` as the decision at hand leaves it, with their level."""
    return balance_of(book.accounts[system.key], system, rules)


def balance_of(account: Account, system: PointsSystem, rules: Rules) -> Balance:
    ladder = rules.levels.get(system.key, Ladder())
    level = levels.level_of(ladder, levels.basis(account, system)) if ladder else None
    return account.to_balance(system.max_points, level)


def post_one(tally: Tally, change: Change, *, dry_run: bool) -> Result:
    """Post one change (a dry run: decide it, writing nothing) and return its result;
    its error is raised."""
    outcome = tally.writer.dry_run(change) if dry_run else tally.writer.post([change])[0]
    if isinstance(outcome, TallyError):
        raise outcome
    assert outcome is not None, "a change of one call answers"
    return outcome


def _one(tally: Tally, change: Change, *, dry_run: bool) -> WriteResult:
    return _written(post_one(tally, change, dry_run=dry_run))


def _item(outcome: Outcome) -> WriteResult | TallyError:
    return outcome if isinstance(outcome, TallyError) else _written(outcome)


def _written(outcome: Outcome) -> WriteResult:
    if isinstance(outcome, TallyError):
        raise outcome
    assert isinstance(outcome, WriteResult), "an award, deduction or reversal writes an entry"
    return outcome
