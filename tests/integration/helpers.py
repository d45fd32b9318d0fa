"""Small builders for service-level tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from server.domain import commands
from server.domain.model import UserProfile
from server.services.pipeline.results import WriteResult
from server.services.tally import Tally
from server.services.use_cases import points_changes, reads, systems
from tests.conftest import T0


def system(tally: Tally, key: str = "xp", *, max_points: int = 0, at: datetime = T0) -> None:
    """Create a system (its create_time `at`)."""
    systems.create_system(tally, commands.CreateSystem(key=key, max_points=max_points), at)


def award(
    tally: Tally,
    user: str,
    amount: int,
    *,
    at: datetime = T0,
    system_key: str = "xp",
    **fields: Any,
) -> WriteResult:
    cmd = commands.Award(system_key=system_key, user=UserProfile(user), amount=amount, **fields)
    return points_changes.award(tally, cmd, at)


def deduct(
    tally: Tally,
    user: str,
    amount: int,
    *,
    at: datetime = T0,
    system_key: str = "xp",
    **fields: Any,
) -> WriteResult:
    cmd = commands.Deduct(system_key=system_key, user_id=user, amount=amount, **fields)
    return points_changes.deduct(tally, cmd, at)


def balance(tally: Tally, user: str, *, at: datetime = T0, system_key: str = "xp") -> int:
    view = reads.get_balance(tally, commands.GetBalance(system_key, user, 0), at)
    return view.balance.balance


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
