"""Read use cases: a balance, a page of history, a stream of history.

Each read is one snapshot of the user's account and entries. Credit that lapsed before
the read is written off first (through the writer, like any change), so that a read
always includes what is due.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from server.domain import commands, levels, validation
from server.domain.balances import balance_of
from server.domain.ledger import Account
from server.domain.levels import Ladder
from server.domain.model import LedgerEntry
from server.services import page_tokens
from server.services.pipeline.results import BalanceView, TransactionsPage
from server.services.standing import settled_view
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
        balance_of(account, system, rules),
        view.entries,
        list(behind.values()),
        following,
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
