"""What the live feeds' watermarks are made of."""

from __future__ import annotations

from server.store.execution import Executor
from server.store.repositories.base import Repository
from server.store.statements import Statements


class SqlFeedRepository(Repository):
    """What the feeds' watermarks are made of (services/held/feed.py explains them); on a
    Citus coordinator (`citus`), from every session in a transaction, not only those
    holding a transaction id."""

    def __init__(self, db: Executor, sql: Statements, *, citus: bool = False) -> None:
        super().__init__(db, sql)
        self.citus = citus

    def last_issued(self, feed: str) -> int:
        return int(self.db.scalar(self.sql.feeds.feed_last[feed]))

    def writers(self) -> frozenset[str] | None:
        if not self.sql.set_based:
            return None  # SQLite: numbers commit in order
        feeds = self.sql.feeds
        listed = feeds.feed_writers_citus if self.citus else feeds.feed_writers
        return frozenset(self.db.scalar(listed) or ())

    def running(self, writers: frozenset[str]) -> frozenset[str]:
        feeds = self.sql.feeds
        still = feeds.feed_running_citus if self.citus else feeds.feed_running
        found = self.db.scalar(still, {"writers": sorted(writers)})
        return frozenset(found or ())
