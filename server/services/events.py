"""Event use cases: record what a user did (triggers decide the points), and preview
what triggers would have given over the events recorded in a window."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime

from server.domain import changes, commands, preview, triggers, validation
from server.domain.book import Book
from server.domain.errors import (
    FieldViolation,
    TriggerNotFound,
    ValidationFailed,
)
from server.domain.model import Event, Trigger, TriggerStatus
from server.services import callers, idempotency
from server.services.ports import UnitOfWork
from server.services.posting import Change, Circumstances
from server.services.results import EventResult, SystemEventResult
from server.services.tally import Tally
from server.services.transactions import in_transaction
from server.services.writes import balance_in, post_one

PREVIEW_CHUNK = 5000
DEFAULT_BUCKETS = 10


def record_event(tally: Tally, cmd: commands.RecordEvent, now: datetime) -> EventResult:
    validation.record_event(cmd)
    tally.check_event_type(cmd.event_type)
    # A key limited to some systems runs only their triggers; the write limit is taken in
    # every system whose triggers may fire (all or nothing, before anything is queued).
    # (The limit is taken by the configuration held now; the decision filters by the one
    # current at its lock, so a system just made is never skipped.)
    caller = callers.current()
    held = tally.config.snapshot.rules.by_event_type.get(cmd.event_type, ())
    firing = sorted({t.system_key for t in held if caller.allows_system(t.system_key)})
    tally.limits.take_all([(key, cmd.user.id) for key in firing])

    def decide(book: Book, given: Circumstances) -> EventResult:
        recorded = changes.record_event(book, given.rules, cmd, now, allows=caller.allows_system)
        fired: dict[str, list[changes.TriggerAward]] = {}
        for entry, trigger in given.welcome:  # a new user's USER_IDENTIFIED awards
            fired.setdefault(trigger.system_key, []).append((entry, trigger))
        for key, awards in recorded.awards.items():
            fired.setdefault(key, []).extend(awards)
        results = {}
        for key, awards in fired.items():
            system = given.system(key)
            if key not in book.accounts:  # matched, fired nothing, and no account yet
                book.account(system, given.rules, now)
            results[key] = SystemEventResult(
                added=sum(entry.amount for entry, _ in awards),
                balance=balance_in(book, system, given.rules),
                awards=tuple(awards),
            )
        return EventResult(recorded.event.id, recorded.event.total_after, results)

    change = Change(
        "",  # an event is the user's: its key is scoped to the user alone
        cmd.user.id,
        decide,
        now,
        profile=cmd.user,
        idempotency_key=cmd.idempotency_key,
        request_hash=idempotency.fingerprint("RecordEvent", cmd),
        reads_metrics=(cmd.event_type,),
    )
    outcome = post_one(tally, change, dry_run=cmd.validate_only)
    assert isinstance(outcome, EventResult), "an event always answers"
    return dataclasses.replace(outcome, event_id="") if cmd.validate_only else outcome


def preview_triggers(
    tally: Tally, cmd: commands.PreviewTriggers, now: datetime, *, bucket_count: int = 0
) -> tuple[preview.Preview, list[preview.Bucket]]:
    """Replay the window's events through the triggers given (drafts, saved ones of any
    status) as if they had been ACTIVE; writes nothing. Events are read in chunks."""
    validation.preview_triggers(cmd)
    buckets = bucket_count or DEFAULT_BUCKETS
    if not 1 <= buckets <= validation.MAX_PAGE_SIZE:
        raise ValidationFailed([FieldViolation("bucket_count", "must be between 1 and 100")])
    end = cmd.end_time or now
    start = cmd.start_time or end - validation.PREVIEW_DEFAULT_WINDOW
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
    event_types = sorted({t.event_type for _, t in labelled})
    result = preview.replay(labelled, system.max_points, _events(tally, event_types, start, end))
    return result, result.distribution(buckets)


def _events(
    tally: Tally, event_types: list[str], start: datetime, end: datetime
) -> Iterator[tuple[Event, Mapping[str, str]]]:
    after: tuple[datetime, str] | None = None

    def chunk_after(uow: UnitOfWork) -> list[tuple[Event, dict[str, str]]]:
        return uow.events.window(event_types, start, end, after, PREVIEW_CHUNK)

    while True:
        chunk = in_transaction(tally.store, chunk_after, write=False)
        yield from chunk
        if len(chunk) < PREVIEW_CHUNK:
            return
        last = chunk[-1][0]
        after = (last.create_time, last.id)
