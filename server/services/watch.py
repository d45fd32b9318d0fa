"""WatchLedger: the ledger as a live feed (services/feed.py says why it never skips).

WatchLevelChanges (issue 10) is the same few lines over its own Feed, and nothing else
of the machinery changes:

    def level_change_feed(system_key: str) -> Feed[LevelChange]:
        def read(uow, after, through, limit):
            return uow.levels.changes_after(system_key, after, through, limit)
        return Feed("level_changes", read, lambda change: change.sequence, system_key)

    def watch_level_changes(tally, cmd, alive=lambda: True):
        ...validate, check the system as watch_ledger does...
        feed = level_change_feed(cmd.system_key)
        return tally.feeds.watch(feed, cmd.after_sequence, follow=cmd.follow, alive=alive)

with, in the store, `Statements.feed_last["level_changes"] = _feed_last(dialect,
LEVEL_CHANGE_SEQUENCE.name, level_changes.c.sequence)` and a `changes_after` read shaped
as `ledger_feed` (`sequence > after AND sequence <= through [AND system_key = ?] ORDER BY
sequence LIMIT ?`, on an index of (system_key, sequence)). The guarantee holds as long
as level changes are numbered by a sequence inside the posting transaction, after the
batch's users are locked (so that their writer holds a transaction id), as entries are;
on SQLite, from max + 1 under the writer lock. The writer's commit hook already names the
batch's systems, which wakes the level-change followers too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from server.domain import reports
from server.domain.errors import SystemNotFound
from server.domain.model import LedgerEntry
from server.services.feed import Feed
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction


def ledger_feed(system_key: str) -> Feed[LedgerEntry]:
    """The ledger's entries by `sequence`, of one system (of all when empty)."""

    def read(uow: UnitOfWork, after: int, through: int, limit: int) -> list[LedgerEntry]:
        return uow.ledger.feed(system_key, after, through, limit)

    return Feed("ledger", read, lambda entry: entry.sequence, system_key)


def watch_ledger(
    tally: Tally, cmd: reports.WatchLedger, alive: Callable[[], bool] = lambda: True
) -> Iterator[list[LedgerEntry]]:
    """Chunks of entries in sequence order after `after_sequence` (see Feeds.watch).

    Checks run before the stream begins, so errors reach the caller as a status."""
    reports.watch_ledger(cmd)
    if cmd.system_key:
        system = in_transaction(
            tally.store, lambda uow: tally.config.read_system(uow, cmd.system_key), write=False
        )
        if system is None:
            raise SystemNotFound(cmd.system_key)
    feed = ledger_feed(cmd.system_key)
    return tally.feeds.watch(feed, cmd.after_sequence, follow=cmd.follow, alive=alive)
