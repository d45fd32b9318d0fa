"""Points-system use cases: create, get, list, update."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from server.domain import commands, validation
from server.domain.errors import (
    FieldViolation,
    SystemExists,
    SystemNotFound,
    ValidationFailed,
    quote,
)
from server.domain.model import LevelBasis, Page, PointsSystem
from server.services import page_tokens
from server.services.held import callers
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction

UPDATABLE_SYSTEM_FIELDS = frozenset(
    {"name", "description", "badge_url", "max_points", "level_basis"}
)
OUTPUT_ONLY_SYSTEM_FIELDS = frozenset({"create_time", "update_time", "triggers"})


def create_system(tally: Tally, cmd: commands.CreateSystem, now: datetime) -> PointsSystem:
    validation.create_system(cmd)
    callers.current().check_system(cmd.key)
    system = PointsSystem(
        key=cmd.key,
        name=cmd.name or cmd.key,
        description=cmd.description,
        badge_url=cmd.badge_url,
        max_points=cmd.max_points,
        level_basis=cmd.level_basis or LevelBasis.BALANCE,
        create_time=now,
        update_time=now,
    )

    def work(uow: UnitOfWork, _version: int) -> PointsSystem:
        if not uow.systems.add(system):
            raise SystemExists(cmd.key)
        return system

    return tally.reconfigure(work)


def get_system(tally: Tally, key: str) -> PointsSystem:
    # A key that cannot name a system names none: NOT_FOUND, without asking the store
    # (which would refuse some such keys outright, e.g. with a NUL in them).
    callers.current().check_system(key)
    if not validation.SYSTEM_KEY.fullmatch(key):
        raise SystemNotFound(key)
    system = in_transaction(
        tally.store, lambda uow: tally.config.read_system(uow, key), write=False
    )
    if system is None:
        raise SystemNotFound(key)
    return system


def list_systems(tally: Tally, page_size: int, page_token: str) -> Page:
    """Systems by key, paged; a caller limited to some systems sees only those."""
    validation.page_size("page_size", page_size)
    limit = page_size or validation.DEFAULT_PAGE_SIZE
    after = page_tokens.decode(page_token, "systems", str) or ""
    caller = callers.current()

    def visible_after(uow: UnitOfWork, cursor: str) -> list[PointsSystem]:
        """Up to limit + 1 systems the caller may see, after `cursor`."""
        found: list[PointsSystem] = []
        while len(found) <= limit:
            chunk = uow.systems.list_after(cursor, limit + 1)
            found += [s for s in chunk if caller.allows_system(s.key)]
            if len(chunk) <= limit:
                break
            cursor = chunk[-1].key
        return found[: limit + 1]

    def work(uow: UnitOfWork) -> Page:
        systems = visible_after(uow, after)
        more = len(systems) > limit
        systems = systems[:limit]
        token = page_tokens.encode(systems[-1].key, "systems") if more else ""
        return Page(systems, token)

    return in_transaction(tally.store, work, write=False)


def _why(name: str) -> str:
    """Why an update_mask path cannot be updated."""
    if name == "key":
        return "names 'key', which is immutable"
    if name in OUTPUT_ONLY_SYSTEM_FIELDS:
        return f"names {name!r}, which is output only"
    return f"names {quote(name)}, which is not a field of PointsSystem"


def update_system(tally: Tally, cmd: commands.UpdateSystem, now: datetime) -> PointsSystem:
    validation.update_system(cmd)
    callers.current().check_system(cmd.key)
    refused = sorted(cmd.fields - UPDATABLE_SYSTEM_FIELDS)
    if refused:
        raise ValidationFailed([FieldViolation("update_mask", _why(name)) for name in refused])

    def work(uow: UnitOfWork, _version: int) -> PointsSystem:
        system = uow.systems.lock(cmd.key)
        if system is None:
            raise SystemNotFound(cmd.key)
        changes = {name: getattr(cmd, name) for name in cmd.fields & UPDATABLE_SYSTEM_FIELDS}
        if "level_basis" in changes:
            changes["level_basis"] = changes["level_basis"] or LevelBasis.BALANCE
        if "name" in changes and not changes["name"]:
            changes["name"] = system.key
        updated = dataclasses.replace(system, **changes, update_time=now)
        uow.systems.update(updated)
        return updated

    return tally.reconfigure(work)
