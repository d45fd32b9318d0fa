"""What the use cases of one process share: the store, and the writer that group-commits
their points changes."""

from __future__ import annotations

from server.domain.errors import SystemNotFound
from server.domain.model import PointsSystem
from server.services.ports import Store, UnitOfWork
from server.services.transactions import in_transaction
from server.services.writer import Writer


def _system_of(uow: UnitOfWork, key: str) -> PointsSystem | None:
    return uow.systems.get(key)


class Tally:
    """The store and the process's one writer; every use case takes this first."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writer = Writer(store, _system_of)

    def system(self, key: str) -> PointsSystem:
        """The system (SYSTEM_NOT_FOUND when there is none): checked before a change is
        queued, so that a change never creates a user for a system that does not exist."""
        system = in_transaction(self.store, lambda uow: uow.systems.get(key), write=False)
        if system is None:
            raise SystemNotFound(key)
        return system
