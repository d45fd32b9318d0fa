"""Read use cases: a balance, a page of history, a stream of history (and the settled
view of a user's standing that every read of one user starts from).

Each read is one snapshot of the user's account and entries. Credit that lapsed before
the read is written off first (through the writer, like any change), so that a read
always includes what is due.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from server.domain import commands, levels, validation
from server.domain.book import settles
from server.domain.errors import SystemNotFound, UserNotFound
from server.domain.ledger import Account
from server.domain.levels import Ladder
from server.domain.model import EntryType, LedgerEntry, PointsSystem
from server.services import callers, page_tokens, writes
from server.services.ports import UnitOfWork, UserView
from server.services.results import BalanceView, TransactionsPage
from server.services.tally import Tally
from server.services.transactions import in_transaction

STREAM_CHUNK = 1000


def get_balance(tally: Tally, cmd: commands.GetBalance, now: datetime) -> BalanceView:
    validation.get_balance(cmd)
    system, view = settled_view(tally, cmd.system_key, cmd.user_id, now, limit=cmd.recent_entries)
    account = view.account or Account(cmd.system_key, cmd.user_id)
    rules = tally.config.snapshot.rules  # at least as new as the view's
    known = rules.triggers
    behind = {e.trigger_id: known[e.trigger_id] for e in view.entries if e.trigger_id in known}
    following = levels.next_level(
        rules.levels.get(system.key, Ladder()), levels.basis(account, system)
    )
    return BalanceView(
        writes.balance_of(account, system, rules), view.entries, list(behind.values()), following
    )


def list_transactions(
    tally: Tally, cmd: commands.ListTransactions, now: datetime
) -> TransactionsPage:
    validation.list_transactions(cmd)
    query = page_tokens.query_id(cmd.system_key, cmd.user_id, sorted(t.value for t in cmd.types))
    before = page_tokens.decode(cmd.page_token, query, int)
    limit = cmd.page_size or validation.DEFAULT_PAGE_SIZE
    _system, view = settled_view(
        tally, cmd.system_key, cmd.user_id, now, types=cmd.types, before=before, limit=limit + 1
    )
    entries = view.entries[:limit]
    token = page_tokens.encode(entries[-1].sequence, query) if len(view.entries) > limit else ""
    account = view.account or Account(cmd.system_key, cmd.user_id)
    return TransactionsPage(entries, token, account.entries_of(cmd.types))


def stream_history(
    tally: Tally, cmd: commands.StreamHistory, now: datetime
) -> Iterator[LedgerEntry]:
    """The user's entries oldest first, up to the last one written when the call began.

    Checks run before the first entry is yielded, so errors reach the caller as a status;
    entries are read in chunks, each in its own short read.
    """
    validation.stream_history(cmd)
    _system, view = settled_view(tally, cmd.system_key, cmd.user_id, now, limit=1)
    through = view.entries[0].sequence if view.entries else 0
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


def settled_view(
    tally: Tally,
    system_key: str,
    user_id: str,
    now: datetime,
    *,
    types: frozenset[EntryType] = frozenset(),
    before: int | None = None,
    limit: int,
) -> tuple[PointsSystem, UserView]:
    """The user's standing in a system and a page of their newest entries, as one
    snapshot, after writing what fell due by `now` (lapsed credit written off, TIME_INTERVAL
    firings), so that a read always includes what is due.

    Raises ScopeInsufficient (a system the caller may not use), SystemNotFound or
    UserNotFound (also for a user the caller may not see: seen_by_caller). The check for
    what is due is part of the read itself; only when something is does it post a change
    (and then read again).
    """
    callers.current().check_system(system_key)

    def work(uow: UnitOfWork) -> tuple[PointsSystem, UserView]:
        view = uow.users.view(user_id, system_key, types, before, limit)
        if view is not None and view.account is None and not seen_by_caller(uow, user_id):
            view = None
        if view is None:
            system = tally.config.read_system(uow, system_key)
        else:  # the view says which configuration is current
            system = tally.config.at_version(uow, view.config_version).systems.get(system_key)
        if system is None:
            raise SystemNotFound(system_key)
        if view is None:
            raise UserNotFound(user_id, system_key)
        return system, view

    system, view = in_transaction(tally.store, work, write=False)
    if view.account is not None and settles(view.account, tally.config.snapshot.rules, now):
        writes.settle(tally, system_key, user_id, now)
        system, view = in_transaction(tally.store, work, write=False)
    return system, view


def seen_by_caller(uow: UnitOfWork, user_id: str) -> bool:
    """Whether a stored user counts as seen for the current caller. Users are shared by
    every system, but a key limited to some systems (and its user tokens) sees a user only
    through an account in one of them: its answers never reveal that a user exists
    elsewhere (API.md, Auth). A key of every system sees every stored user."""
    caller = callers.current()
    if not caller.systems:
        return True
    return bool(caller.visible(uow.accounts.systems_of(user_id)))
