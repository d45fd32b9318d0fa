"""Levels: where a user stands among a system's thresholds, and when a change moves them.

A level is never stored per user: it is derived from the basis value (the balance, or
lifetime earnings, per the system's level basis) and the thresholds as they are now, so
editing a threshold moves everyone at once with nothing to backfill. Under
LIFETIME_EARNED only a reversal (an award taken back as a mistake) lowers the basis.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from server.domain.ledger import Account
from server.domain.model import Level, LevelBasis, LevelChange, PointsSystem


@dataclass(frozen=True)
class Ladder:
    """A system's levels by threshold ascending, with the thresholds for bisecting."""

    levels: tuple[Level, ...] = ()
    points: tuple[int, ...] = ()

    @classmethod
    def of(cls, levels: Sequence[Level]) -> Ladder:
        ordered = tuple(sorted(levels, key=lambda level: level.points))
        return cls(ordered, tuple(level.points for level in ordered))

    def __bool__(self) -> bool:
        return bool(self.levels)


def basis(account: Account | None, system: PointsSystem) -> int:
    if account is None:
        return 0
    return basis_of(system, account.balance, account.total_earned)


def basis_of(system: PointsSystem, balance: int, total_earned: int) -> int:
    """The value the system's levels follow, of these figures."""
    if system.level_basis is LevelBasis.LIFETIME_EARNED:
        return total_earned
    return balance


def level_of(ladder: Ladder, value: int) -> Level | None:
    """The highest level whose threshold is <= value."""
    index = bisect.bisect_right(ladder.points, value)
    return ladder.levels[index - 1] if index else None


def next_level(ladder: Ladder, value: int) -> Level | None:
    """The lowest level whose threshold is above value."""
    index = bisect.bisect_right(ladder.points, value)
    return ladder.levels[index] if index < len(ladder.levels) else None


def progress(ladder: Ladder, value: int) -> float:
    """0..1 from the current level's threshold (0 without one) to the next one's."""
    following = next_level(ladder, value)
    if following is None:
        return 1.0
    current = level_of(ladder, value)
    low = current.points if current else 0
    return max(0.0, min(1.0, (value - low) / (following.points - low)))


def crossed(
    ladder: Ladder,
    system: PointsSystem,
    before: Account | None,
    after: Account,
    entry_id: str,
    now: datetime,
) -> LevelChange | None:
    """The move a change made across the thresholds (to the final level, however many it
    crossed), or None when it stayed at its level."""
    if not ladder:
        return None
    previous = level_of(ladder, basis(before, system))
    new = level_of(ladder, basis(after, system))
    if previous == new:
        return None
    return LevelChange(system.key, after.user_id, previous, new, entry_id, now)
