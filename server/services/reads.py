"""Read use cases: a balance, a page of history, a stream of history.

Each read is one snapshot of the user's account and entries. Credit that lapsed before
the read is written off first (through the writer, like any change), so that a read
always includes what is due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TypeVar

from server.domain import commands, validation
from server.domain.errors import SystemNotFound, UserNotFound
from server.domain.ledger import Account
from server.domain.model import LedgerEntry, PointsSystem
from server.services import page_tokens, writes
from server.services.ports import UnitOfWork
from server.services.results import BalanceView, TransactionsPage
from server.services.tally import Tally
from server.services.transactions import in_transaction

T = TypeVar("T")

STREAM_CHUNK = 1000


def get_balance(tally: Tally, cmd: commands.GetBalance, now: datetime) -> BalanceView:
    validation.get_balance(cmd)

    def read(uow: UnitOfWork, system: PointsSystem, account: Account) -> BalanceView:
        recent = (
            uow.ledger.page(system.key, cmd.user_id, frozenset(), None, cmd.recent_entries)
            if cmd.recent_entries
            else []
        )
        return BalanceView(account.to_balance(system.max_points), recent)

    return _settled_read(tally, cmd.system_key, cmd.user_id, now, read)


def list_transactions(
    tally: Tally, cmd: commands.ListTransactions, now: datetime
) -> TransactionsPage:
    validation.list_transactions(cmd)
    query = page_tokens.query_id(cmd.system_key, cmd.user_id, sorted(t.value for t in cmd.types))
    before = page_tokens.decode(cmd.page_token, query, int)
    limit = cmd.page_size or validation.DEFAULT_PAGE_SIZE

    def read(uow: UnitOfWork, _system: PointsSystem, account: Account) -> TransactionsPage:
        entries = uow.ledger.page(cmd.system_key, cmd.user_id, cmd.types, before, limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        token = page_tokens.encode(entries[-1].sequence, query) if more else ""
        return TransactionsPage(entries, token, account.entries_of(cmd.types))

    return _settled_read(tally, cmd.system_key, cmd.user_id, now, read)


def stream_history(
    tally: Tally, cmd: commands.StreamHistory, now: datetime
) -> Iterator[LedgerEntry]:
    """The user's entries oldest first, up to the last one written when the call began.

    Checks run before the first entry is yielded, so errors reach the caller as a status;
    entries are read in chunks, each in its own short read transaction.
    """
    validation.stream_history(cmd)

    def start(uow: UnitOfWork, _system: PointsSystem, _account: Account) -> int:
        return uow.ledger.last_sequence(cmd.system_key, cmd.user_id)

    through = _settled_read(tally, cmd.system_key, cmd.user_id, now, start)
    return _stream(tally, cmd, through)


def _stream(tally: Tally, cmd: commands.StreamHistory, through: int) -> Iterator[LedgerEntry]:
    def chunk_after(after: int) -> list[LedgerEntry]:
        return in_transaction(
            tally.store,
            lambda uow: uow.ledger.chunk(
                cmd.system_key,
                cmd.user_id,
                after,
                through,
                cmd.start_time,
                cmd.end_time,
                STREAM_CHUNK,
            ),
            write=False,
        )

    after = 0
    while after < through:
        chunk = chunk_after(after)
        yield from chunk
        if len(chunk) < STREAM_CHUNK:
            return
        after = chunk[-1].sequence


class _Lapsed:
    """What a settled read returns when the account first needs settling."""


def _settled_read(
    tally: Tally,
    system_key: str,
    user_id: str,
    now: datetime,
    read: Callable[[UnitOfWork, PointsSystem, Account], T],
) -> T:
    """Run `read` on one snapshot of a user's account in a system, after writing off
    credit that lapsed before `now`, so that a read always includes what is due.

    Raises SystemNotFound or UserNotFound. The check for lapsed credit is part of the read
    itself; only when there is some does it post a change (and then read again).
    """

    def work(uow: UnitOfWork) -> T | _Lapsed:
        system = tally.config.read_system(uow, system_key)
        if system is None:
            raise SystemNotFound(system_key)
        found = uow.users.get_with_account(user_id, system_key)
        if found is None:
            raise UserNotFound(user_id, system_key)
        account = found[1] or Account(system_key, user_id)
        if account.has_lapsed_credit(now):
            return _Lapsed()
        return read(uow, system, account)

    result = in_transaction(tally.store, work, write=False)
    if isinstance(result, _Lapsed):
        writes.settle(tally, system_key, user_id, now)
        result = in_transaction(tally.store, work, write=False)
    assert not isinstance(result, _Lapsed), "settled at `now`, nothing lapses before it"
    return result
