"""Small builders for service-level tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from server.domain import commands
from server.domain.model import UserProfile
from server.services import points
from server.services.points import WriteResult
from server.store.database import SqlStore
from tests.conftest import T0


def system(store: SqlStore, key: str = "xp", *, max_points: int = 0) -> None:
    points.create_system(store, commands.CreateSystem(key=key, max_points=max_points), T0)


def award(
    store: SqlStore,
    user: str,
    amount: int,
    *,
    at: datetime = T0,
    system_key: str = "xp",
    **fields: Any,
) -> WriteResult:
    cmd = commands.Award(system_key=system_key, user=UserProfile(user), amount=amount, **fields)
    return points.award(store, cmd, at)


def deduct(
    store: SqlStore,
    user: str,
    amount: int,
    *,
    at: datetime = T0,
    system_key: str = "xp",
    **fields: Any,
) -> WriteResult:
    cmd = commands.Deduct(system_key=system_key, user_id=user, amount=amount, **fields)
    return points.deduct(store, cmd, at)


def balance(store: SqlStore, user: str, *, at: datetime = T0, system_key: str = "xp") -> int:
    view = points.get_balance(store, commands.GetBalance(system_key, user, 0), at)
    return view.balance.balance


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
