"""Level use cases: create, update, delete and list a system's levels; where a user
stands; how many users are at each level.

Levels are configuration: each change raises the configuration's version, and every
points change decides its level move by the levels held in memory. A user's level is
derived from their basis value and the thresholds as they are (domain/levels.py).
"""

from __future__ import annotations

import bisect
import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime

from server.domain import commands, levels, validation
from server.domain.errors import (
    FieldViolation,
    LevelExists,
    LevelNotFound,
    SystemNotFound,
    ValidationFailed,
    quote,
)
from server.domain.levels import Ladder
from server.domain.model import Level, Page
from server.services import page_tokens
from server.services.held import callers
from server.services.ports import UnitOfWork
from server.services.standing import settled_view
from server.services.tally import Tally
from server.services.transactions import in_transaction

UPDATABLE_LEVEL_FIELDS = frozenset({"key", "name", "description", "badge_url", "points"})


@dataclass(frozen=True)
class UserLevel:
    level: Level | None
    next_level: Level | None
    points: int  # the basis value
    points_to_next: int
    progress: float


@dataclass(frozen=True)
class LevelSummary:
    levels: list[tuple[Level, int]]  # by threshold, with their users
    users_without_level: int


def create_level(tally: Tally, cmd: commands.CreateLevel, now: datetime) -> Level:
    validation.create_level(cmd)
    callers.current().check_system(cmd.system_key)
    fields = cmd.level
    level = Level(
        id=str(uuid.uuid4()),
        system_key=cmd.system_key,
        key=fields.key,
        name=fields.name or fields.key,
        description=fields.description,
        badge_url=fields.badge_url,
        points=fields.points,
    )

    def work(uow: UnitOfWork, _version: int) -> Level:
        _check_unique(level, _locked_levels(uow, level.system_key))
        uow.levels.add(level)
        return level

    return tally.reconfigure(work)


def update_level(tally: Tally, cmd: commands.UpdateLevel, now: datetime) -> Level:
    refused = sorted(cmd.fields - UPDATABLE_LEVEL_FIELDS)
    if refused:
        raise ValidationFailed([FieldViolation("update_mask", _why(name)) for name in refused])
    if cmd.id:
        try:
            uuid.UUID(cmd.id)
        except ValueError:
            raise LevelNotFound(cmd.id) from None
    else:
        _check_names(cmd.system_key, cmd.key, prefix="level.")

    def work(uow: UnitOfWork, _version: int) -> Level:
        current, others = _find(uow, level_id=cmd.id, system_key=cmd.system_key, key=cmd.key)
        edits = {name: getattr(cmd.level, name) for name in cmd.fields}
        updated = dataclasses.replace(current, **edits)
        validation.level(_fields_of(updated))
        _check_unique(updated, others)
        uow.levels.update(updated)
        return updated

    return tally.reconfigure(work)


def delete_level(tally: Tally, system_key: str, key: str) -> None:
    _check_names(system_key, key)

    def work(uow: UnitOfWork, _version: int) -> None:
        level, _ = _find(uow, system_key=system_key, key=key)
        uow.levels.delete(level.id)

    tally.reconfigure(work)


def list_levels(tally: Tally, system_key: str) -> list[Level]:
    """The system's levels by threshold ascending."""
    return list(tally.rules_for(system_key).levels.get(system_key, Ladder()).levels)


def list_levels_page(tally: Tally, system_key: str, page_size: int, page_token: str) -> Page:
    """The system's levels by threshold ascending, in pages of up to `page_size` (0 =
    validation.CONFIGURATION_PAGE_SIZE). Thresholds are unique in a system, so a token
    holds the page's last threshold and the next page starts above it."""
    size = validation.CONFIGURATION_PAGE_SIZE
    validation.page_size("page_size", page_size, size, size)
    query = page_tokens.query_id("ListLevels", system_key)
    after = page_tokens.decode(page_token, query, int)
    ladder = tally.rules_for(system_key).levels.get(system_key, Ladder())
    start = 0 if after is None else bisect.bisect_right(ladder.points, after)
    limit = page_size or size
    page = list(ladder.levels[start : start + limit])
    more = len(ladder.levels) > start + limit
    return Page(page, page_tokens.encode(page[-1].points, query) if more else "")


def get_user_level(tally: Tally, system_key: str, user_id: str, now: datetime) -> UserLevel:
    validation.account_key(system_key, user_id)
    system, view = settled_view(tally, system_key, user_id, now, limit=0)
    ladder = tally.config.snapshot.rules.levels.get(system_key, Ladder())
    value = levels.basis(view.account, system)
    following = levels.next_level(ladder, value)
    return UserLevel(
        level=levels.level_of(ladder, value),
        next_level=following,
        points=value,
        points_to_next=following.points - value if following else 0,
        progress=levels.progress(ladder, value),
    )


def get_level_summary(tally: Tally, system_key: str) -> LevelSummary:
    """Users per level, counted by the store between consecutive thresholds (an index
    range count each), never by loading accounts."""
    rules = tally.rules_for(system_key)
    ladder = list(rules.levels.get(system_key, Ladder()).levels)
    system = rules.systems[system_key]
    thresholds = [level.points for level in ladder]

    def work(uow: UnitOfWork) -> list[int]:
        return uow.levels.counts(system_key, system.level_basis, thresholds)

    below, *at_level = in_transaction(tally.store, work, write=False)
    return LevelSummary(list(zip(ladder, at_level, strict=True)), below)


def _check_names(system_key: str, key: str, prefix: str = "") -> None:
    """A level named by system and key: both must be keys (or they name nothing)."""
    v = validation.Violations()
    v.system_key(f"{prefix}system_key", system_key)
    v.system_key(f"{prefix}key", key)
    v.raise_if_any()


def _locked_levels(uow: UnitOfWork, system_key: str) -> list[Level]:
    """The system's levels, read once its row is locked: level changes of one system run
    one at a time, and each decides on what the ones before it committed."""
    if uow.systems.lock(system_key) is None:
        raise SystemNotFound(system_key)
    return [level for level in uow.levels.all() if level.system_key == system_key]


def _find(
    uow: UnitOfWork, *, level_id: str = "", system_key: str = "", key: str = ""
) -> tuple[Level, list[Level]]:
    """The level named by id, or by system and key, and its system's other levels, read
    under the system's lock. Another system's level, for a caller limited to some, is
    not revealed: LEVEL_NOT_FOUND."""
    caller = callers.current()
    if level_id:
        named = next((lv for lv in uow.levels.all() if lv.id == level_id), None)
        if named is None or not caller.allows_system(named.system_key):
            raise LevelNotFound(level_id)
        system_key = named.system_key
    else:
        caller.check_system(system_key)
    levels = _locked_levels(uow, system_key)
    found = next((lv for lv in levels if (lv.id == level_id if level_id else lv.key == key)), None)
    if found is None:
        raise LevelNotFound(level_id or key)
    return found, [lv for lv in levels if lv.id != found.id]


def _check_unique(level: Level, others: list[Level]) -> None:
    """LEVEL_EXISTS when another level of the system has its key or threshold (`others`
    are read under the system's lock, so two changes cannot both pass)."""
    for other in others:
        if other.key == level.key:
            raise LevelExists(level.system_key, "key", level.key)
        if other.points == level.points:
            raise LevelExists(level.system_key, "points", str(level.points))


def _fields_of(level: Level) -> commands.LevelFields:
    return commands.LevelFields(
        level.key, level.name, level.description, level.badge_url, level.points
    )


def _why(name: str) -> str:
    if name in ("id", "system_key"):
        return f"names {name!r}, which cannot be changed"
    return f"names {quote(name)}, which is not a field of Level"
