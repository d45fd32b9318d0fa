"""Boost use cases: create (up to 1000 at once), list, archive, and the multiplier a
user would get.

Boosts are configuration: creating or archiving raises the configuration's version, so
every process applies the change from its next write (an archived boost stops at once).
The award path finds a user's boosts in memory (Rules.boosts_for), with no query."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from server.domain import boosts as boosting
from server.domain import commands, validation
from server.domain.access import Scope
from server.domain.errors import (
    BoostNotFound,
    FieldViolation,
    SystemNotFound,
    TallyError,
    ValidationFailed,
    quote,
)
from server.domain.model import Boost, BoostStatus, Page, Rounding, User
from server.services import page_tokens
from server.services.held import callers
from server.services.ports import UnitOfWork
from server.services.tally import Tally
from server.services.transactions import in_transaction


@dataclass(frozen=True)
class Issue:
    index: int
    user_id: str
    message: str
    error: bool = True  # False: a warning (the boost was created)


def create_boosts(
    tally: Tally,
    system_key: str,
    items: Sequence[commands.BoostFields | TallyError],
    now: datetime,
) -> tuple[list[Boost], list[Issue]]:
    """Create every valid item together; each invalid one comes back as an issue."""
    validation.create_boosts(system_key, len(items))
    caller = callers.current()
    caller.check_system(system_key)
    if any(isinstance(item, commands.BoostFields) and not item.user_id for item in items):
        caller.require(Scope.ADMIN, "a global boost")
    made: list[Boost] = []
    indexes: dict[str, int] = {}  # by boost id: its item's index
    issues: list[Issue] = []
    for index, item in enumerate(items):
        if isinstance(item, TallyError):
            issues.append(Issue(index, "", item.message))
            continue
        problems = validation.boost_problems(item)
        if problems:
            text = "; ".join(f"{p.field} {p.description}" for p in problems)
            issues.append(Issue(index, item.user_id, text))
            continue
        boost = _new(system_key, item, now)
        made.append(boost)
        indexes[boost.id] = index
        if boost.end_time is not None and boost.end_time <= now:
            issues.append(
                Issue(index, item.user_id, "end_time has passed: it never applies", False)
            )

    def work(uow: UnitOfWork, _version: int) -> tuple[list[Boost], list[Issue]]:
        # The configuration's version was raised first (Tally.reconfigure): that row stays
        # locked to the commit (one writer at a time on SQLite), so two CreateBoosts run
        # one after the other and each counts what the one before committed.
        if uow.systems.get(system_key) is None:
            raise SystemNotFound(system_key)
        kept, refused = _within_bound(uow, system_key, made, indexes, now)
        uow.boosts.add(kept)
        return kept, refused

    created, refused = tally.reconfigure(work)
    return created, sorted([*issues, *refused], key=lambda issue: issue.index)


def _within_bound(
    uow: UnitOfWork, system_key: str, made: list[Boost], indexes: dict[str, int], now: datetime
) -> tuple[list[Boost], list[Issue]]:
    """Of the boosts made, those within MAX_LIVE_BOOSTS per user (the system's global ones
    as one more user), counting those live in the store and those earlier in the request;
    one issue for each beyond it. A boost that has already ended is not live: kept."""
    live = uow.boosts.live_counts(system_key, sorted({b.user_id for b in made}), now)
    kept: list[Boost] = []
    refused: list[Issue] = []
    for boost in made:
        if boost.end_time is not None and boost.end_time <= now:  # as live_counts counts
            kept.append(boost)
            continue
        count = live.get(boost.user_id, 0)
        if count >= boosting.MAX_LIVE_BOOSTS:
            refused.append(Issue(indexes[boost.id], boost.user_id, _over_bound(boost)))
            continue
        live[boost.user_id] = count + 1
        kept.append(boost)
    return kept, refused


def _over_bound(boost: Boost) -> str:
    owner = f"user {quote(boost.user_id)}" if boost.user_id else "the system's global boosts"
    return (
        f"{owner} already has {boosting.MAX_LIVE_BOOSTS} live boosts (not archived nor "
        f"ended) in points system {quote(boost.system_key)}, the most allowed: archive one "
        "or let one end first"
    )


def list_boosts(
    tally: Tally,
    system_key: str,
    user_id: str,
    statuses: frozenset[BoostStatus],
    page_size: int,
    page_token: str,
    now: datetime,
) -> Page:
    """Newest first, in keyset pages; statuses are as they stand at `now`."""
    v = validation.Violations()
    v.system_key("system_key", system_key)
    if user_id:
        v.user_id("user_id", user_id)
    v.page_size("page_size", page_size)
    v.raise_if_any()
    callers.current().check_system(system_key)
    query = page_tokens.query_id(system_key, user_id, sorted(s.value for s in statuses))
    before = _cursor(page_tokens.decode(page_token, query, str))
    limit = page_size or validation.DEFAULT_PAGE_SIZE

    def work(uow: UnitOfWork) -> Page:
        if tally.config.read_system(uow, system_key) is None:
            raise SystemNotFound(system_key)
        found = uow.boosts.page(system_key, user_id, statuses, before, limit + 1, now)
        page = found[:limit]
        token = ""
        if len(found) > limit:
            last = page[-1]
            token = page_tokens.encode(f"{last.create_time.isoformat()}|{last.id}", query)
        return Page(page, token)

    return in_transaction(tally.store, work, write=False)


def archive_boost(tally: Tally, boost_id: str, now: datetime) -> Boost:
    """Archive (idempotent: an archived boost comes back unchanged)."""
    try:
        uuid.UUID(boost_id)
    except ValueError:
        raise BoostNotFound(boost_id) from None

    def work(uow: UnitOfWork, _version: int) -> Boost:
        boost = uow.boosts.lock(boost_id)
        caller = callers.current()
        if boost is None or not caller.allows_system(boost.system_key):
            raise BoostNotFound(boost_id)  # another system's boost is not revealed
        if not boost.user_id:
            caller.require(Scope.ADMIN, "a global boost")
        if boost.archive_time is not None:
            return boost
        uow.boosts.archive(boost_id, now)
        return replace(boost, archive_time=now)

    return tally.reconfigure(work)


def get_multiplier(
    tally: Tally, system_key: str, user_id: str, when: datetime
) -> tuple[Decimal, list[Boost]]:
    """What a positive award to the user at `when` would be multiplied by, and by which
    boosts (a user never seen matches no cohort filter; so does one that a key limited to
    some systems may not see, callers.sees_user, whose profile would reveal them)."""
    validation.account_key(system_key, user_id)
    callers.current().check_system(system_key)

    def work(uow: UnitOfWork) -> tuple[Decimal, list[Boost]]:
        if tally.config.read_system(uow, system_key) is None:
            raise SystemNotFound(system_key)
        user = uow.users.get(user_id)
        if user is None or not callers.sees_user(uow, user_id):
            user = User(user_id, "", "", {}, when)  # never seen (by this caller)
        rules = tally.config.snapshot.rules
        applied = boosting.applying(rules.boosts_for(system_key, user_id), user, when)
        return boosting.product(applied), applied

    return in_transaction(tally.store, work, write=False)


def _new(system_key: str, item: commands.BoostFields, now: datetime) -> Boost:
    return Boost(
        id=str(uuid.uuid4()),
        system_key=system_key,
        user_id=item.user_id,
        name=item.name,
        multiplier=item.multiplier,
        rounding=item.rounding or Rounding.DOWN,
        start_time=item.start_time or now,
        end_time=item.end_time,
        user_attributes=item.user_attributes,
        create_time=now,
    )


def _cursor(position: str | None) -> tuple[datetime, str] | None:
    """A page token's position: the (create_time, id) of the last boost of a page."""
    if position is None:
        return None
    when, _, boost_id = position.partition("|")
    try:
        after = datetime.fromisoformat(when)
    except ValueError:
        after = None
    if after is None or after.tzinfo is None:
        raise ValidationFailed([FieldViolation("page_token", "is not a token this list gave")])
    return after, boost_id
