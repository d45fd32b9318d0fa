"""Deciding a points change: account, configuration and command in; entries and the new
account out.

Pure functions over the `Account` aggregate. Each starts from a copy of the account it is
given, so a change that fails (insufficient points, an entry already reversed) leaves
nothing behind, and a batch can chain the decisions of one user's changes. Credit that
lapsed before the change is written off first, by the same decision: a points change
always sees the balance as it stands at its own time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.domain import commands
from server.domain.errors import AlreadyReversed
from server.domain.ledger import Account, Posting
from server.domain.model import LedgerEntry, PointsSystem


@dataclass(frozen=True)
class Decision:
    """What one change does: the entries to append, in order (write-offs of lapsed credit
    first, the change's own entry last), and the account after them."""

    entries: tuple[LedgerEntry, ...]
    account: Account

    @property
    def changed(self) -> bool:
        return bool(self.entries)


def award(account: Account, system: PointsSystem, cmd: commands.Award, now: datetime) -> Decision:
    after = account.copy()
    entries = after.expire_lapsed(now)
    posting = Posting(cmd.reason, cmd.metadata, cmd.idempotency_key)
    entries.append(
        after.award(
            cmd.amount,
            posting,
            now=now,
            max_points=system.max_points,
            expire_time=cmd.expire_time,
        )
    )
    return Decision(tuple(entries), after)


def deduct(account: Account, cmd: commands.Deduct, now: datetime) -> Decision:
    after = account.copy()
    entries = after.expire_lapsed(now)
    posting = Posting(cmd.reason, cmd.metadata, cmd.idempotency_key)
    entries.append(after.deduct(cmd.amount, posting, now=now))
    return Decision(tuple(entries), after)


def reverse(
    account: Account,
    original: LedgerEntry,
    cmd: commands.Reverse,
    now: datetime,
    *,
    earlier_reversal_id: str | None,
) -> Decision:
    """Undo `original`; `earlier_reversal_id` names the entry that already reversed it."""
    if earlier_reversal_id is not None:
        raise AlreadyReversed(original.id, earlier_reversal_id)
    after = account.copy()
    entries = after.expire_lapsed(now)
    posting = Posting(cmd.reason or f"reversal of {original.id}", {}, cmd.idempotency_key)
    entries.append(after.reverse(original, posting, now=now))
    return Decision(tuple(entries), after)


def settle(account: Account, now: datetime) -> Decision:
    """Write off credit that lapsed before `now`; no entries when there is none."""
    after = account.copy()
    return Decision(tuple(after.expire_lapsed(now)), after)
