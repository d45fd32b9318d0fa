"""Event use cases: record what a user did (triggers decide the points), and preview
what triggers would have given over the events recorded in a window."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime

from server.domain import commands, preview, triggers, validation
from server.domain.access import Reach
from server.domain.batch import CountEvent
from server.domain.errors import (
    FieldViolation,
    TriggerNotFound,
    ValidationFailed,
)
from server.domain.model import Event, Trigger, TriggerStatus
from server.domain.results import EventResult
from server.services.held import callers
from server.services.pipeline import idempotency
from server.services.pipeline.writer import post_one
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction

PREVIEW_CHUNK = 5000
DEFAULT_BUCKETS = 10


def record_event(tally: Tally, cmd: commands.RecordEvent, now: datetime) -> EventResult:
    validation.record_event(cmd)
    # A key limited to some systems sees, runs and counts the event in those alone: an
    # event type no trigger of theirs names is NO_MATCHING_TRIGGER, whatever others have.
    reach = callers.current().reach
    naming = tally.systems_naming(cmd.event_type, reach)
    # The write limit is taken in every one of those systems (all or nothing, before
    # anything is queued), whether or not a trigger there is ACTIVE: every event recorded
    # is a write. (The decision filters by the configuration current at its lock, so a
    # system just made is never skipped.)
    tally.limits.take_all([(key, cmd.user.id) for key in naming])

    change = CountEvent(
        cmd,
        now,
        request_hash=idempotency.fingerprint("RecordEvent", cmd),
        reach=reach,  # its key, its running total and its triggers are the caller's reach's
    )
    outcome = post_one(tally.writer, change, dry_run=cmd.validate_only)
    assert isinstance(outcome, EventResult), "an event always answers"
    return dataclasses.replace(outcome, event_id="") if cmd.validate_only else outcome


def preview_triggers(
    tally: Tally, cmd: commands.PreviewTriggers, now: datetime, *, bucket_count: int = 0
) -> tuple[preview.Preview, list[preview.Bucket]]:
    """Replay the window's events through the triggers given (drafts, saved ones of any
    status) as if they had been ACTIVE; writes nothing. Events are read in chunks.

    Only the events the system's triggers would have seen are replayed: those recorded
    by callers who could use the system, of event types that a trigger of the caller's
    systems names (so a key limited to some systems learns nothing of others' events)."""
    validation.preview_triggers(cmd)
    buckets = bucket_count or DEFAULT_BUCKETS
    if not 1 <= buckets <= validation.MAX_PAGE_SIZE:
        raise ValidationFailed([FieldViolation("bucket_count", "must be between 1 and 100")])
    end = cmd.end_time or now
    start = cmd.start_time or end - validation.PREVIEW_DEFAULT_WINDOW
    if end - start > validation.PREVIEW_MAX_WINDOW:
        raise ValidationFailed(
            [FieldViolation("start_time", "a preview's window spans at most 366 days")]
        )
    rules = tally.rules_for(cmd.system_key)
    system = rules.systems[cmd.system_key]
    labelled: list[tuple[str, Trigger]] = [
        (
            f"triggers[{i}]",
            triggers.made(draft, system_key=cmd.system_key, status=TriggerStatus.ACTIVE, now=now),
        )
        for i, draft in enumerate(cmd.drafts)
    ]
    problems = []
    for index, trigger_id in enumerate(cmd.trigger_ids):
        saved = rules.triggers.get(trigger_id)
        if saved is None or saved.system_key != cmd.system_key:
            raise TriggerNotFound(trigger_id)
        if saved.type not in validation.EVENT_TRIGGERS:
            problems.append(
                FieldViolation(
                    f"trigger_ids[{index}]", "only EVENT and METRIC triggers follow events"
                )
            )
        labelled.append((saved.id, saved))
    if problems:
        raise ValidationFailed(problems)
    reach = callers.current().reach
    event_types = sorted(
        {
            t.event_type
            for _, t in labelled
            if any(reach.allows(key) for key in rules.naming_systems.get(t.event_type, ()))
        }
    )
    events = _events(tally, event_types, start, end, cmd.system_key) if event_types else iter(())
    result = preview.replay(labelled, system.max_points, events)
    return result, result.distribution(buckets)


def _events(
    tally: Tally, event_types: list[str], start: datetime, end: datetime, system_key: str
) -> Iterator[tuple[Event, Mapping[str, str]]]:
    """The window's events of these types that reached the system's triggers (recorded by
    callers who could use it), oldest first; VALIDATION_FAILED on `start_time` past
    PREVIEW_MAX_EVENTS of them."""
    after: tuple[datetime, str] | None = None
    replayed = 0

    def chunk_after(uow: UnitOfWork) -> list[tuple[Event, dict[str, str]]]:
        return uow.events.window(event_types, start, end, after, PREVIEW_CHUNK)

    while True:
        chunk = in_transaction(tally.store, chunk_after, write=False)
        for event, attributes in chunk:
            if Reach.named(event.reach).allows(system_key):
                replayed += 1
                if replayed > validation.PREVIEW_MAX_EVENTS:
                    raise ValidationFailed(
                        [
                            FieldViolation(
                                "start_time",
                                f"the window holds more than {validation.PREVIEW_MAX_EVENTS} "
                                "events to replay: narrow it",
                            )
                        ]
                    )
                yield event, attributes
        if len(chunk) < PREVIEW_CHUNK:
            return
        last = chunk[-1][0]
        after = (last.create_time, last.id)
