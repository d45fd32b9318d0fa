"""Deciding a points change: the user's book, the rules and the command in; entries and
the changed book out.

Pure functions over a `Book` (a fork the batch discards when the decision fails, so a
change that fails leaves nothing behind). Opening an account settles it first (lapsed
credit written off, due TIME_INTERVAL firings written): a points change always sees the
balance as it stands at its own time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from server.domain import commands, triggers
from server.domain.access import EVERY_SYSTEM, Reach
from server.domain.book import Book
from server.domain.errors import AlreadyReversed
from server.domain.ledger import Posting
from server.domain.model import Event, LedgerEntry, PointsSystem, Trigger
from server.domain.rules import Rules

TriggerAward = tuple[LedgerEntry, Trigger]


def award(
    book: Book, rules: Rules, system: PointsSystem, cmd: commands.Award, now: datetime
) -> LedgerEntry:
    account = book.account(system, rules, now)
    posting = Posting(cmd.reason, cmd.metadata, cmd.idempotency_key)
    boosts = [] if cmd.skip_boosts else book.boosts(rules, system.key, now)
    entry = triggers.award(
        account,
        cmd.amount,
        posting,
        when=now,
        max_points=system.max_points,
        boosts=boosts,
        expire_time=cmd.expire_time,
    )
    return book.post(entry)


def deduct(
    book: Book, rules: Rules, system: PointsSystem, cmd: commands.Deduct, now: datetime
) -> LedgerEntry:
    account = book.account(system, rules, now)
    posting = Posting(cmd.reason, cmd.metadata, cmd.idempotency_key)
    return book.post(account.deduct(cmd.amount, posting, now=now))


def reverse(
    book: Book,
    rules: Rules,
    system: PointsSystem,
    original: LedgerEntry,
    cmd: commands.Reverse,
    now: datetime,
    *,
    earlier_reversal_id: str | None,
) -> LedgerEntry:
    """Undo `original`; `earlier_reversal_id` names the entry that already reversed it."""
    if earlier_reversal_id is not None:
        raise AlreadyReversed(original.id, earlier_reversal_id)
    account = book.account(system, rules, now)
    posting = Posting(cmd.reason or f"reversal of {original.id}", {}, cmd.idempotency_key)
    return book.post(account.reverse(original, posting, now=now))


def settle(book: Book, rules: Rules, system: PointsSystem, now: datetime) -> None:
    """Write what is due in the user's account by `now`: lapsed credit written off, due
    TIME_INTERVAL firings (no entries when nothing is due)."""
    if system.key in book.accounts:
        book.account(system, rules, now)


def identify(
    book: Book, rules: Rules, now: datetime, reach: Reach = EVERY_SYSTEM
) -> list[TriggerAward]:
    """The USER_IDENTIFIED triggers the user is owed by a call of `reach`: those of the
    systems it may use that the user has not been welcomed in yet (model.Welcomed: a user
    a key limited to some systems named first is welcomed in those alone, and in the
    others by the first call that may use them; a user a call of every system welcomed
    is still owed the systems created since). The book's user then counts as welcomed in
    those systems, whether or not a trigger matched; nothing when nothing is owed."""
    welcomed = book.user.welcomed
    owed = welcomed.owed(reach, rules)
    if not owed:  # the cheap path: welcomed already (through the newest system, usually)
        return []
    book.user = replace(book.user, welcomed=welcomed.paid(owed, reach, rules))
    fired = []
    for trigger in rules.identified:
        if trigger.system_key in owed and triggers.matches(
            trigger.user_attributes, book.user.attributes
        ):
            system = rules.systems[trigger.system_key]
            account = book.account(system, rules, now)
            posting = Posting(trigger_id=trigger.id)
            entry = triggers.fire(
                account,
                trigger,
                1,
                posting,
                when=now,
                max_points=system.max_points,
                boosts=book.boosts(rules, system.key, now),
            )
            fired.append((book.post(entry), trigger))
    return fired


@dataclass(frozen=True)
class Recorded:
    """What an event did: the event as kept, the running total as its caller may see it,
    and by system (each system with an ACTIVE trigger that matched, even one that added
    nothing) the trigger entries written."""

    event: Event
    metric_total: Decimal
    awards: dict[str, list[TriggerAward]]


def record_event(
    book: Book,
    rules: Rules,
    cmd: commands.RecordEvent,
    now: datetime,
    *,
    reach: Reach = EVERY_SYSTEM,
) -> Recorded:
    """Count the event in the user's running total of the caller's `reach`, then fire
    every ACTIVE trigger of the systems in that reach whose event type and filters match,
    in the order they were created. A METRIC trigger sees its own system's total: the
    events of every reach that includes the system."""
    matched = rules.by_event_type.get(cmd.event_type, ())
    listening = [t for t in matched if reach.allows(t.system_key)]
    before_in = {t.system_key: book.total(cmd.event_type, t.system_key) for t in listening}
    own = book.metrics.get((cmd.event_type, reach.name), Decimal(0))
    event = Event(
        id=book.ids(),
        user_id=book.user.id,
        event_type=cmd.event_type,
        value=cmd.value,
        total_after=own + cmd.value,
        attributes=dict(cmd.attributes),
        create_time=now,
        reach=reach.name,
    )
    book.count(event)
    awards: dict[str, list[TriggerAward]] = {}
    for trigger in listening:
        before = before_in[trigger.system_key]
        if not (
            triggers.matches(trigger.event_attributes, cmd.attributes)
            and triggers.matches(trigger.user_attributes, book.user.attributes)
        ):
            continue
        fired = awards.setdefault(trigger.system_key, [])
        times = triggers.times_fired(trigger, before, before + cmd.value)
        if times == 0:
            continue
        triggers.check_entry_size(trigger, times)
        system = rules.systems[trigger.system_key]
        account = book.account(system, rules, now)
        posting = Posting(
            metadata=cmd.metadata,
            idempotency_key=cmd.idempotency_key,
            trigger_id=trigger.id,
            event_type=cmd.event_type,
        )
        entry = triggers.fire(
            account,
            trigger,
            times,
            posting,
            when=now,
            max_points=system.max_points,
            boosts=book.boosts(rules, system.key, now),
        )
        fired.append((book.post(entry), trigger))
    return Recorded(event, book.seen_total(cmd.event_type, reach), awards)
