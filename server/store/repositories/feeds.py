"""What the live feeds' watermarks are made of."""

from __future__ import annotations

from server.store.repositories.base import Repository


class SqlFeedRepository(Repository):
    """What the feeds' watermarks are made of (services/held/feed.py explains them)."""

    def last_issued(self, feed: str) -> int:
        return int(self.db.scalar(self.sql.feeds.feed_last[feed]))

    def writers(self) -> frozenset[str] | None:
        if not self.sql.set_based:
            return None  # SQLite: numbers commit in order
        return frozenset(self.db.scalar(self.sql.feeds.feed_writers) or ())

    def running(self, writers: frozenset[str]) -> frozenset[str]:
        found = self.db.scalar(self.sql.feeds.feed_running, {"writers": sorted(writers)})
        return frozenset(found or ())
