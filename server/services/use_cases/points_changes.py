"""Points-change use cases: award, deduct, award in batches, reverse. Each validates its
command, states the change as a value for the domain to decide (domain/batch.py), and
hands it to the process's writer, which posts it with whatever else is queued. Events
(use_cases/events.py) post the same way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from server.domain import commands, validation
from server.domain.batch import AwardPoints, Command, DeductPoints, Outcome, ReverseEntry
from server.domain.errors import EntryNotFound, FieldViolation, TallyError, ValidationFailed
from server.domain.results import WriteResult
from server.services.held import callers
from server.services.pipeline import idempotency
from server.services.pipeline.writer import post_one
from server.services.ports import Sharding
from server.services.tally import Tally
from server.services.transactions import in_transaction

MAX_BATCH_ITEMS = 100


def award(tally: Tally, cmd: commands.Award, now: datetime) -> WriteResult:
    validation.award(cmd, now)
    return _one(tally, _award_change(tally, cmd, now), dry_run=cmd.validate_only)


def _award_change(tally: Tally, cmd: commands.Award, now: datetime) -> AwardPoints:
    """The change an Award states, once `cmd` is known valid: for a caller who may use
    the system, when it exists, within the user's write limit."""
    caller = callers.current()
    caller.check_system(cmd.system_key)
    tally.system(cmd.system_key)
    tally.limits.take(cmd.system_key, cmd.user.id)
    return AwardPoints(
        cmd,
        now,
        request_hash=idempotency.fingerprint("Award", cmd),
        reach=caller.reach,  # the user is welcomed in the caller's systems alone
    )


def deduct(tally: Tally, cmd: commands.Deduct, now: datetime) -> WriteResult:
    validation.deduct(cmd)
    callers.current().check_system(cmd.system_key)
    tally.system(cmd.system_key)
    tally.limits.take(cmd.system_key, cmd.user_id)
    # (its reach too: a caller limited to some systems finds a user only through an
    # account in one of them; a deduction welcomes no one)
    change = DeductPoints(
        cmd,
        now,
        request_hash=idempotency.fingerprint("Deduct", cmd),
        reach=callers.current().reach,
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
    results: list[WriteResult | TallyError | AwardPoints] = []
    for index, item in enumerate(items):
        if isinstance(item, TallyError):
            results.append(item)
            continue
        try:
            validation.award(item, now, prefix=f"items[{index}].")
            results.append(_award_change(tally, item, now))
        except TallyError as error:
            results.append(error)
    queued = [r for r in results if isinstance(r, AwardPoints)]
    posted = iter(tally.writer.post(queued) if queued else [])
    return [_item(next(posted)) if isinstance(r, AwardPoints) else r for r in results]


def reverse(tally: Tally, cmd: commands.Reverse, now: datetime) -> WriteResult:
    validation.reverse(cmd)
    if not cmd.user_id:
        _take_lookup_by_id(tally)
    # The entry (and so its user) is read before the write: an entry's owner never
    # changes, and the write then touches that user's rows alone (one shard under Citus).
    original = in_transaction(
        tally.store, lambda uow: uow.ledger.get(cmd.entry_id, cmd.user_id), write=False
    )
    # An entry of a system the caller may not use, or of another user than the one
    # named, is not theirs to see either.
    if original is None or not callers.current().allows_system(original.system_key):
        raise EntryNotFound(cmd.entry_id)
    tally.limits.take(original.system_key, original.user_id)
    change = ReverseEntry(
        cmd,
        original,
        now,
        request_hash=idempotency.fingerprint("Reverse", cmd),
        reach=callers.current().reach,
    )
    return _one(tally, change, dry_run=False)


def _take_lookup_by_id(tally: Tally) -> None:
    """A token of the caller's look-ups of an entry by id alone, taken before the look-up,
    where that look-up fans out (ports.Sharding: under Citus one statement on each of
    the ledger's shards), or RATE_LIMITED with nothing read or written.

    Such a look-up costs every shard whether the entry is found or not (a replay too: the
    entry is read before its idempotency key), and comes before the user's write token,
    which needs the entry's user: without this bound a caller could make every call, with
    ids that name nothing, cost a query on every shard and never be refused. The bucket
    is the caller's API key (its id), since an id that names nothing has no user to
    charge, and one key's look-ups must not refuse another's; calls with no key (the
    process's own, --insecure-no-auth) share one. A Reverse naming its user reads that
    user's shard alone and is never charged.

    Only where the look-up fans out: on one database (SQLite, PostgreSQL) it is one probe
    of the ledger's index on id, what a read naming an unknown user costs, and such reads
    are not limited; a bound there would refuse callers to spare no one. The price is that
    a caller reversing by id alone may be refused on Citus and not on PostgreSQL: naming
    the user avoids it, and a retry after the RetryInfo succeeds.
    """
    if isinstance(tally.store, Sharding) and tally.store.fans_out():
        tally.entry_lookups.take(callers.current().key_id)


def _one(tally: Tally, change: Command, *, dry_run: bool) -> WriteResult:
    return _written(post_one(tally.writer, change, dry_run=dry_run))


def _item(outcome: Outcome) -> WriteResult | TallyError:
    return outcome if isinstance(outcome, TallyError) else _written(outcome)


def _written(outcome: Outcome) -> WriteResult:
    if isinstance(outcome, TallyError):
        raise outcome
    assert isinstance(outcome, WriteResult), "an award, deduction or reversal writes an entry"
    return outcome
