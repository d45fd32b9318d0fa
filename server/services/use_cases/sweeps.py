"""The periodic sweep's use cases: settle the accounts nobody touches (lapsed credit
written off, TIME_INTERVAL firings written), in batches posted like any other changes, so
that those who stream the ledger see their entries on time."""

from __future__ import annotations

from datetime import datetime

from server.services.pipeline.settlement import settle_many
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction

SWEEP_BATCH = 500


def expire_due(tally: Tally, now: datetime, *, limit: int = SWEEP_BATCH) -> int:
    """Write off lapsed credit of accounts nobody has touched since (the periodic sweep),
    in batches posted like any other changes. Returns the accounts settled."""
    due = in_transaction(
        tally.store, lambda uow: uow.accounts.due_for_expiry(now, limit), write=False
    )
    if due:
        settle_many(tally.writer, due, now)
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
            settle_many(tally.writer, [(system_key, user_id) for user_id in users], now)
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
            settle_many(tally.writer, [(system_key, user_id) for user_id in users], now)
            settled += len(users)
        if len(users) < limit:
            return settled
        after = users[-1]
