"""What the use cases of one process share: the store, the configuration held in memory,
the writer that group-commits points changes, the live feeds it wakes, the API keys
held in memory and the per-user write limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from server.domain.access import Reach
from server.domain.errors import NoMatchingTrigger, SystemNotFound
from server.domain.model import PointsSystem
from server.domain.rules import Rules
from server.domain.validation import SYSTEM_KEY
from server.services.held import callers
from server.services.held.configuration import Configuration
from server.services.held.feed import Feeds
from server.services.held.key_ring import DEFAULT_MAX_AGE, KeyRing
from server.services.held.limits import RateLimiter
from server.services.held.view_reader import ViewReader
from server.services.pipeline.writer import MAX_BATCH_CHANGES, Writer
from server.services.ports import Store, UnitOfWork
from server.services.transactions import in_transaction

T = TypeVar("T")


class Tally:
    """The store, the configuration and the process's one writer; every use case takes
    this first. Writes are unlimited unless `limits` is given, and so are a caller's
    look-ups of an entry by id alone unless `entry_lookups` is (buckets by API key id;
    the server passes the configured limits; the use cases' tests need none)."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = MAX_BATCH_CHANGES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        limits: RateLimiter | None = None,
        entry_lookups: RateLimiter | None = None,
        key_max_age: float = DEFAULT_MAX_AGE,
        token_secret: bytes | None = None,
    ) -> None:
        self.store = store
        self.config = Configuration(store, clock)
        self.feeds = Feeds(store)
        self.writer = Writer(
            store, self.config, max_batch=max_batch, on_commit=self.feeds.committed
        )
        self.keys = KeyRing(store, max_age=key_max_age, token_secret=token_secret)
        self.views = ViewReader(store)
        # By system: the TIME_INTERVAL epoch whose stale accounts this process's sweep has
        # settled (see use_cases/sweeps.py).
        self.accrued_epochs: dict[str, int] = {}
        self.limits = limits if limits is not None else RateLimiter.unlimited()
        self.entry_lookups = entry_lookups if entry_lookups is not None else RateLimiter.unlimited()

    def system(self, key: str) -> PointsSystem:
        """The system (SYSTEM_NOT_FOUND when there is none): checked before a change is
        queued, so that a change never creates a user for a system that does not exist."""
        system = self.config.find(key)
        if system is None:
            raise SystemNotFound(key)
        return system

    def rules_for(self, system_key: str) -> Rules:
        """The configuration for a read of one system (Configuration.holding: loaded again
        only when the store has a system not held); SYSTEM_NOT_FOUND when there is none.
        The caller must be allowed the system (SCOPE_INSUFFICIENT)."""
        if not SYSTEM_KEY.fullmatch(system_key):
            raise SystemNotFound(system_key)  # a key that cannot name one names none
        callers.current().check_system(system_key)
        held = in_transaction(
            self.store, lambda uow: self.config.holding(uow, system_key), write=False
        )
        if system_key not in held.systems:
            raise SystemNotFound(system_key)
        return held.rules

    def systems_naming(self, event_type: str, reach: Reach) -> list[str]:
        """The systems of `reach` that have a trigger of some status naming `event_type`,
        sorted; NO_MATCHING_TRIGGER when there is none. Checked before an event is queued,
        so that such an event records nothing, and a caller limited to some systems learns
        nothing of the event types of others (a type not held is looked for again in the
        store, for a trigger just made elsewhere)."""
        named = _naming(self.config.snapshot.rules, event_type, reach)
        if named:
            return named
        self.config.changed()
        named = _naming(
            in_transaction(self.store, self.config.for_read, write=False).rules, event_type, reach
        )
        if not named:
            raise NoMatchingTrigger(event_type)
        return named

    def reconfigure(self, change: Callable[[UnitOfWork, int], T]) -> T:
        """Run a change to the configuration in one unit of work that also raises its
        version (given to `change`, so that what it writes can carry it), so that every
        process reloads before its next write; this process checks at once."""

        def work(uow: UnitOfWork) -> T:
            result = change(uow, uow.systems.bump_version())
            uow.commit()
            return result

        result = in_transaction(self.store, work, write=True)
        self.config.changed()
        return result


def _naming(rules: Rules, event_type: str, reach: Reach) -> list[str]:
    return sorted(key for key in rules.naming_systems.get(event_type, ()) if reach.allows(key))
