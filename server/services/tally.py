"""What the use cases of one process share: the store, the configuration held in memory,
the writer that group-commits points changes, and the live feeds it wakes."""

from __future__ import annotations

from server.domain.errors import SystemNotFound
from server.domain.model import PointsSystem
from server.services.configuration import Configuration
from server.services.feed import Feeds
from server.services.ports import Store
from server.services.writer import MAX_BATCH_CHANGES, Writer


class Tally:
    """The store, the configuration and the process's one writer; every use case takes
    this first."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH_CHANGES) -> None:
        self.store = store
        self.config = Configuration(store)
        self.feeds = Feeds(store)
        self.writer = Writer(
            store, self.config, max_batch=max_batch, on_commit=self.feeds.committed
        )

    def system(self, key: str) -> PointsSystem:
        """The system (SYSTEM_NOT_FOUND when there is none): checked before a change is
        queued, so that a change never creates a user for a system that does not exist."""
        system = self.config.find(key)
        if system is None:
            raise SystemNotFound(key)
        return system
