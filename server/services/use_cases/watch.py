"""WatchLedger and WatchLevelChanges: the ledger and the level changes as live feeds
(services/held/feed.py says why they never skip). Each is a `Feed` over its own numbered rows,
followed by `Feeds.watch`: level changes are numbered by their own sequence inside the
posting transaction, after the batch's users are locked, as entries are, so the same
watermark holds for both.

A key limited to some systems watches only theirs: naming another system is
SCOPE_INSUFFICIENT, and a watch of every system leaves the others' items out. A follower
whose key is revoked ends (callers.check_still_allowed, asked as the feed goes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from server.domain import reports
from server.domain.errors import SystemNotFound
from server.domain.model import LedgerEntry, LevelChange
from server.services.held import callers
from server.services.held.feed import Feed
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction

T = TypeVar("T", LedgerEntry, LevelChange)


def ledger_feed(system_key: str) -> Feed[LedgerEntry]:
    """The ledger's entries by `sequence`, of one system (of all when empty)."""

    def read(uow: UnitOfWork, after: int, through: int, limit: int) -> list[LedgerEntry]:
        return uow.ledger.feed(system_key, after, through, limit)

    return Feed("ledger", read, lambda entry: entry.sequence, system_key)


def level_change_feed(system_key: str) -> Feed[LevelChange]:
    """Level changes by `sequence`, of one system (of all when empty)."""

    def read(uow: UnitOfWork, after: int, through: int, limit: int) -> list[LevelChange]:
        return uow.levels.changes_after(system_key, after, through, limit)

    return Feed("level_changes", read, lambda change: change.sequence, system_key)


def watch_ledger(
    tally: Tally, cmd: reports.WatchLedger, alive: Callable[[], bool] = lambda: True
) -> Iterator[list[LedgerEntry]]:
    """Chunks of entries in sequence order after `after_sequence` (see Feeds.watch).

    Checks run before the stream begins, so errors reach the caller as a status."""
    reports.watch_ledger(cmd)
    return _watch(tally, ledger_feed(cmd.system_key), cmd, alive)


def watch_level_changes(
    tally: Tally, cmd: reports.WatchLedger, alive: Callable[[], bool] = lambda: True
) -> Iterator[list[LevelChange]]:
    """Chunks of level changes in sequence order after `after_sequence`."""
    reports.watch_ledger(cmd)
    return _watch(tally, level_change_feed(cmd.system_key), cmd, alive)


def _watch(
    tally: Tally, feed: Feed[T], cmd: reports.WatchLedger, alive: Callable[[], bool]
) -> Iterator[list[T]]:
    caller = callers.current()
    if cmd.system_key:
        caller.check_system(cmd.system_key)
        system = in_transaction(
            tally.store, lambda uow: tally.config.read_system(uow, cmd.system_key), write=False
        )
        if system is None:
            raise SystemNotFound(cmd.system_key)
    chunks = tally.feeds.watch(
        feed,
        cmd.after_sequence,
        follow=cmd.follow,
        alive=alive,
        still_allowed=callers.check_still_allowed,
    )
    if cmd.system_key or not caller.systems:  # one system, or a caller limited to none
        return chunks
    return _visible(chunks, caller.allows_system)


def _visible(chunks: Iterator[list[T]], allows: Callable[[str], bool]) -> Iterator[list[T]]:
    """The items of systems the caller may see (items carry their system_key)."""
    for chunk in chunks:
        seen = [item for item in chunk if allows(item.system_key)]
        if seen:
            yield seen
