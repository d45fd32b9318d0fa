"""The configuration held in memory: points systems, triggers, levels and live boosts.

Every process holds all of it and a version number. Every change to the configuration
raises the stored version in its own transaction. A batch of points changes learns the
stored version from the statement that locks its users and reloads when it differs
before it decides anything, so a change is used by every process from its next write,
with no extra round trip. A read of a user's standing carries the version the same way.
Other reads (GetSystem) check the version when what they hold is older than
READ_MAX_AGE seconds (one small statement), so they see a change made by another process
within that bound, and one made by their own process at once. A system not held is
looked for with one point read, and only when the store has it is everything loaded
again: a name that exists nowhere never costs a reload.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from server import metrics
from server.domain.model import PointsSystem
from server.domain.rules import Rules
from server.services.ports import Store, UnitOfWork
from server.services.transactions import in_transaction

READ_MAX_AGE = 1.0


@dataclass(frozen=True)
class Snapshot:
    """One version of the configuration; replaced whole, never changed."""

    version: int = 0  # 0: nothing loaded yet (stored versions start at 1)
    rules: Rules = field(default_factory=Rules)

    @property
    def systems(self) -> dict[str, PointsSystem]:
        return self.rules.systems


class Configuration:
    """The process's configuration, shared by its threads."""

    def __init__(
        self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.store = store
        self.clock = clock  # boosts that ended before a load are not held
        self._snapshot = Snapshot()
        self._checked = float("-inf")  # when the version was last compared (monotonic)
        self._mutex = threading.Lock()

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def at_version(self, uow: UnitOfWork, version: int) -> Snapshot:
        """The configuration at `version` (as a locking statement just read it), loaded
        in `uow` when what the process holds is another version."""
        snapshot = self._snapshot
        if snapshot.version != version:
            snapshot = self._load(uow)
        return snapshot

    def for_read(self, uow: UnitOfWork) -> Snapshot:
        """The configuration, checked against the stored version at most READ_MAX_AGE
        seconds ago."""
        if time.monotonic() - self._checked > READ_MAX_AGE:
            return self.at_version(uow, uow.systems.version())
        return self._snapshot

    def find(self, key: str) -> PointsSystem | None:
        """Whether a system exists, for a change about to be queued: a held system does
        (systems are never deleted); one not held is looked for again in the store."""
        system = self._snapshot.systems.get(key)
        if system is None:
            loaded = in_transaction(self.store, lambda uow: self._unheld(uow, key), write=False)
            system = loaded.systems.get(key) if loaded else None
        return system

    def read_system(self, uow: UnitOfWork, key: str) -> PointsSystem | None:
        """The system for a read in `uow`, within READ_MAX_AGE of the stored one."""
        return self.holding(uow, key).systems.get(key)

    def holding(self, uow: UnitOfWork, key: str) -> Snapshot:
        """The configuration for a read of system `key` in `uow` (as for_read), loaded
        again when it does not hold the system and the store has it."""
        snapshot = self.for_read(uow)
        if key not in snapshot.systems:
            snapshot = self._unheld(uow, key) or snapshot
        return snapshot

    def _unheld(self, uow: UnitOfWork, key: str) -> Snapshot | None:
        """For a system the process does not hold (made by another process since the last
        load, or none): one point read of it decides, and the whole configuration is loaded
        only when the store has it. A name that exists nowhere, from any caller (a user
        token too) and however often, costs that one read, never a reload."""
        if uow.systems.get(key) is None:
            return None
        return self._load(uow)

    def changed(self) -> None:
        """This process changed the configuration: check the version on the next use."""
        self._checked = float("-inf")

    def _load(self, uow: UnitOfWork) -> Snapshot:
        checked = time.monotonic()
        version = uow.systems.version()
        snapshot = Snapshot(
            version,
            Rules.of(
                uow.systems.all(),
                uow.triggers.all(),
                uow.levels.all(),
                uow.boosts.live(self.clock()),
            ),
        )
        with self._mutex:
            if snapshot.version >= self._snapshot.version:
                self._snapshot = snapshot
                self._checked = checked
                metrics.instruments().config_version.set(snapshot.version)
            return self._snapshot if self._snapshot.version > version else snapshot
