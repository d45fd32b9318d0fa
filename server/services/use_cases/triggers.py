"""Trigger use cases: create, update (activate, deactivate, archive, edit), list.

Triggers are configuration: each change raises the configuration's version, and every
process decides by the triggers it holds in memory (services/held/configuration.py)."""

from __future__ import annotations

import bisect
import dataclasses
import uuid
from datetime import datetime

from server.domain import commands, triggers, validation
from server.domain.errors import (
    FieldViolation,
    SystemNotFound,
    TriggerNotFound,
    ValidationFailed,
    quote,
)
from server.domain.model import Page, Trigger, TriggerStatus
from server.services import page_tokens
from server.services.held import callers
from server.services.ports import UnitOfWork
from server.services.tally import Tally

UPDATABLE_TRIGGER_FIELDS = frozenset(
    {
        "points",
        "status",
        "event_type",
        "metric_threshold",
        "interval_unit",
        "interval_count",
        "event_attributes",
        "user_attributes",
    }
)
FIXED_TRIGGER_FIELDS = frozenset({"id", "system_key", "type", "create_time", "update_time"})


def create_trigger(tally: Tally, cmd: commands.CreateTrigger, now: datetime) -> Trigger:
    validation.create_trigger(cmd)
    callers.current().check_system(cmd.system_key)

    def work(uow: UnitOfWork, version: int) -> Trigger:
        if uow.systems.get(cmd.system_key) is None:
            raise SystemNotFound(cmd.system_key)
        trigger = triggers.made(
            cmd.trigger,
            system_key=cmd.system_key,
            status=cmd.trigger.status or TriggerStatus.INACTIVE,
            now=now,
            trigger_id=str(uuid.uuid4()),
            version=version,
        )
        uow.triggers.add(trigger)
        return trigger

    return tally.reconfigure(work)


def update_trigger(tally: Tally, cmd: commands.UpdateTrigger, now: datetime) -> Trigger:
    validation.trigger_id("trigger.id", cmd.id)
    refused = sorted(cmd.fields - UPDATABLE_TRIGGER_FIELDS)
    if refused:
        raise ValidationFailed([FieldViolation("update_mask", _why(name)) for name in refused])

    def work(uow: UnitOfWork, version: int) -> Trigger:
        trigger = uow.triggers.lock(cmd.id)
        if trigger is None or not callers.current().allows_system(trigger.system_key):
            raise TriggerNotFound(cmd.id)  # another system's trigger is not revealed
        edits = {name: getattr(cmd.trigger, name) for name in cmd.fields}
        if "status" in edits:
            edits["status"] = edits["status"] or TriggerStatus.INACTIVE
        updated = dataclasses.replace(trigger, **edits, update_time=now, version=version)
        validation.updated_trigger(_fields_of(updated))
        if updated.active and not trigger.active:
            updated = dataclasses.replace(updated, activate_time=now)
        uow.triggers.update(updated)
        return updated

    return tally.reconfigure(work)


def list_triggers(tally: Tally, system_key: str) -> list[Trigger]:
    """The system's triggers of every status, oldest first."""
    return tally.rules_for(system_key).triggers_of(system_key)


def list_triggers_page(tally: Tally, system_key: str, page_size: int, page_token: str) -> Page:
    """The system's triggers of every status, oldest first, in pages of up to `page_size`
    (0 = validation.CONFIGURATION_PAGE_SIZE). A token holds the (create_time, id) of the
    page's last trigger, which never change, so each trigger is listed exactly once even
    when triggers are made or edited between pages."""
    size = validation.CONFIGURATION_PAGE_SIZE
    validation.page_size("page_size", page_size, size, size)
    query = page_tokens.query_id("ListTriggers", system_key)
    after = page_tokens.time_and_id(page_tokens.decode(page_token, query, str))
    listed = list_triggers(tally, system_key)
    if after is not None:
        listed = listed[bisect.bisect_right(listed, after, key=_position) :]
    limit = page_size or size
    page = listed[:limit]
    more = len(listed) > limit
    token = page_tokens.encode(page_tokens.at(*_position(page[-1])), query) if more else ""
    return Page(page, token)


def _position(trigger: Trigger) -> tuple[datetime, str]:
    """Where a trigger stands in its system's list (domain/rules.py orders it so)."""
    return trigger.create_time, trigger.id


def _fields_of(trigger: Trigger) -> commands.TriggerFields:
    return commands.TriggerFields(
        type=trigger.type,
        points=trigger.points,
        status=trigger.status,
        event_type=trigger.event_type,
        metric_threshold=trigger.metric_threshold,
        interval_unit=trigger.interval_unit,
        interval_count=trigger.interval_count,
        event_attributes=trigger.event_attributes,
        user_attributes=trigger.user_attributes,
    )


def _why(name: str) -> str:
    """Why an update_mask path cannot be updated."""
    if name in FIXED_TRIGGER_FIELDS:
        return f"names {name!r}, which cannot be changed"
    return f"names {quote(name)}, which is not a field of Trigger"
