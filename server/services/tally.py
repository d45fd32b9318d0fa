"""What the use cases of one process share: the store, the configuration held in memory,
the writer that group-commits points changes, the API keys held in memory and the
per-user write limits."""

from __future__ import annotations

from server.domain.errors import SystemNotFound
from server.domain.model import PointsSystem
from server.services.access import DEFAULT_MAX_AGE, KeyRing
from server.services.configuration import Configuration
from server.services.limits import RateLimiter
from server.services.ports import Store
from server.services.writer import MAX_BATCH_CHANGES, Writer


class Tally:
    """The store, the configuration and the process's one writer; every use case takes
    this first. Writes are unlimited unless `limits` is given (the server passes the
    configured limits; the use cases' tests need none)."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = MAX_BATCH_CHANGES,
        limits: RateLimiter | None = None,
        key_max_age: float = DEFAULT_MAX_AGE,
    ) -> None:
        self.store = store
        self.config = Configuration(store)
        self.writer = Writer(store, self.config, max_batch=max_batch)
        self.keys = KeyRing(store, max_age=key_max_age)
        self.limits = limits if limits is not None else RateLimiter.unlimited()

    def system(self, key: str) -> PointsSystem:
        """The system (SYSTEM_NOT_FOUND when there is none): checked before a change is
        queued, so that a change never creates a user for a system that does not exist."""
        system = self.config.find(key)
        if system is None:
            raise SystemNotFound(key)
        return system
