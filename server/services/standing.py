"""A user's standing in a system, settled: the view every read of one user starts from.

Each read is one snapshot of the user's account and entries. What fell due before the read
(lapsed credit, TIME_INTERVAL firings) is written first, through the writer like any
change, so that a read always includes what is due.
"""

from __future__ import annotations

from datetime import datetime

from server.domain.book import settles
from server.domain.errors import SystemNotFound, UserNotFound
from server.domain.model import EntryType, PointsSystem
from server.services.held import callers
from server.services.pipeline.settlement import settle
from server.services.ports import UnitOfWork, UserView, ViewAsk
from server.services.tally import Tally


def settled_view(
    tally: Tally,
    system_key: str,
    user_id: str,
    now: datetime,
    *,
    types: frozenset[EntryType] = frozenset(),
    before: int | None = None,
    limit: int,
) -> tuple[PointsSystem, UserView]:
    """The user's standing in a system and a page of their newest entries, as one
    snapshot, after writing what fell due by `now` (lapsed credit written off, TIME_INTERVAL
    firings), so that a read always includes what is due.

    Raises ScopeInsufficient (a system the caller may not use), SystemNotFound or
    UserNotFound (also for a user the caller may not see: callers.sees_user). The check for
    what is due is part of the read itself; only when something is does it post a change
    (and then read again).
    """
    callers.current().check_system(system_key)
    ask = ViewAsk(user_id, system_key, limit, types, before)

    def resolved(
        uow: UnitOfWork, ask: ViewAsk, view: UserView | None
    ) -> tuple[PointsSystem, UserView]:
        if view is not None and view.account is None and not callers.sees_user(uow, user_id):
            view = None
        if view is None:
            system = tally.config.read_system(uow, system_key)
        else:  # the view says which configuration is current
            system = tally.config.at_version(uow, view.config_version).systems.get(system_key)
        if system is None:
            raise SystemNotFound(system_key)
        if view is None:
            raise UserNotFound(user_id, system_key)
        return system, view

    system, view = tally.views.read(ask, resolved)
    if view.account is not None and settles(view.account, tally.config.snapshot.rules, now):
        settle(tally.writer, system_key, user_id, now)
        system, view = tally.views.read(ask, resolved)
    return system, view
