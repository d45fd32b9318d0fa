"""`tally-server verify`: recompute every account from its ledger entries and report
each difference.

One snapshot of the store (Store.snapshot), read one chunk of users at a time: each
account's figures against the sums of its entries (store/audit.py), the ledger's own
rules (balance_after chains, reversals), credit lots against a replay of the entries
that made them, the levels the figures imply, running event totals against the events,
and the entries idempotency keys remember. What the figures must be is the domain's
(domain/audit.py); this module walks the chunks and gathers what it finds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from server.domain import audit
from server.domain.audit import Difference
from server.domain.errors import SystemNotFound
from server.domain.levels import Ladder
from server.domain.model import Level, PointsSystem, Trigger
from server.domain.results import EventResult
from server.services.pipeline import codec
from server.services.ports import AccountKey, AuditRepository, SnapshotStore, UserRange

CHUNK_ACCOUNTS = 500  # accounts read and checked at a time (with all their users' rows)
PRESENCE_BATCH = 1000  # entry ids looked up at a time


@dataclass
class Report:
    """What a verification found: how much it checked, and every difference."""

    accounts: int = 0
    entries: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


# Called after every full chunk with the accounts and entries checked so far.
Progress = Callable[[int, int], None]


def verify(
    store: SnapshotStore,
    system_key: str = "",
    *,
    chunk_accounts: int = CHUNK_ACCOUNTS,
    progress: Progress | None = None,
) -> Report:
    """Check every account (of `system_key` alone, when given) against its entries.
    SYSTEM_NOT_FOUND when `system_key` names no system. Running totals of events belong
    to users, not systems: they are checked only when every system is."""
    report = Report()
    with store.snapshot() as uow:
        systems = {s.key: s for s in uow.systems.all()}
        if system_key and system_key not in systems:
            raise SystemNotFound(system_key)
        levels: dict[str, list[Level]] = {}
        for level in uow.levels.all():
            levels.setdefault(level.system_key, []).append(level)
        config = _Config(
            systems,
            {key: Ladder.of(found) for key, found in levels.items()},
            {t.id: t for t in uow.triggers.all()},
        )
        after = ""
        while True:
            # Chunks end at an account; the last is unbounded above, so that entries of
            # users with no account are found wherever they fall.
            ids = uow.audit.users_after(after, system_key, chunk_accounts)
            last = len(ids) < chunk_accounts
            _check_chunk(uow.audit, (after, None if last else ids[-1]), system_key, config, report)
            if last:
                break
            after = ids[-1]
            if progress is not None:
                progress(report.accounts, report.entries)
    return report


@dataclass(frozen=True)
class _Config:
    """The configuration as the snapshot holds it."""

    systems: dict[str, PointsSystem]
    ladders: dict[str, Ladder]
    triggers: dict[str, Trigger]


def _check_chunk(
    repo: AuditRepository, users: UserRange, system_key: str, config: _Config, report: Report
) -> None:
    found = report.differences
    tallies = repo.accounts(users, system_key)
    stored_lots = repo.lots(users, system_key)
    to_replay: set[AccountKey] = set()
    for tally in tallies:
        report.accounts += 1
        report.entries += tally.ledger.entries if tally.ledger else 0
        found += audit.account_differences(
            tally.system_key, tally.user_id, tally.stored, tally.ledger
        )
        system = config.systems.get(tally.system_key)
        if system is not None:
            ladder = config.ladders.get(system.key, Ladder())
            level = audit.level_difference(
                system, ladder, tally.user_id, tally.stored, tally.ledger
            )
            if level is not None:
                found.append(level)
        key = (tally.user_id, tally.system_key)
        if tally.expiring_awards or tally.next_expire_time is not None or key in stored_lots:
            to_replay.add(key)
    next_expiry = {(t.user_id, t.system_key): t.next_expire_time for t in tallies}

    found += repo.entry_problems(users, system_key)
    replayed: set[AccountKey] = set()
    for (user_id, of_system), postings in repo.postings(sorted(to_replay)):
        replayed.add((user_id, of_system))
        account = audit.replay(of_system, user_id, postings)
        kept = stored_lots.get((user_id, of_system), [])
        found += audit.lot_differences(account, kept, next_expiry.get((user_id, of_system)))
    for user_id, of_system in sorted(to_replay - replayed):  # lots of an account with no entries
        account = audit.replay(of_system, user_id, ())
        kept = stored_lots.get((user_id, of_system), [])
        found += audit.lot_differences(account, kept, next_expiry.get((user_id, of_system)))
    for move in repo.level_moves(users, system_key):
        system = config.systems.get(move.system_key)
        if system is not None:
            problem = audit.move_difference(system, move)
            if problem is not None:
                found.append(problem)
    if not system_key:
        found += _metric_differences(repo, users)
    found += _key_differences(repo, users, system_key, config.triggers)


def _metric_differences(repo: AuditRepository, users: UserRange) -> list[Difference]:
    kept = repo.metric_totals(users)
    summed: dict[tuple[str, str, str], Decimal] = {}
    for user_id, event_type, reach, value in repo.event_values(users):
        key = (user_id, event_type, reach)
        summed[key] = summed.get(key, Decimal(0)) + value
    found = []
    for key in sorted(kept.keys() | summed.keys()):
        user_id, event_type, reach = key
        problem = audit.metric_difference(
            user_id, event_type, reach, kept.get(key), summed.get(key)
        )
        if problem is not None:
            found.append(problem)
    return found


@dataclass(frozen=True)
class _Named:
    """An entry (or event) a stored response names."""

    user_id: str
    scope: str
    key: str
    id: str
    event: bool = False


def _key_differences(
    repo: AuditRepository, users: UserRange, system_key: str, triggers: dict[str, Trigger]
) -> list[Difference]:
    """Every entry (and event) a stored response names must be in the ledger."""
    found: list[Difference] = []
    batch: list[_Named] = []
    for named in _named_by_responses(repo, users, system_key, triggers):
        batch.append(named)
        if len(batch) >= PRESENCE_BATCH:
            found += _missing(repo, batch)
            batch = []
    found += _missing(repo, batch)
    return found


def _named_by_responses(
    repo: AuditRepository, users: UserRange, system_key: str, triggers: dict[str, Trigger]
) -> Iterator[_Named]:
    for user_id, scope, key, text in repo.stored_responses(users, system_key):
        try:
            response = codec.loads(text, triggers)
        except (ValueError, KeyError, TypeError) as error:
            yield _Named(user_id, scope, key, f"(unreadable response: {error})")
            continue
        if isinstance(response, EventResult):
            yield _Named(user_id, scope, key, response.event_id, event=True)
            for result in response.results.values():
                for entry, _trigger in result.awards:
                    yield _Named(user_id, scope, key, entry.id)
        else:
            yield _Named(user_id, scope, key, response.entry.id)


def _missing(repo: AuditRepository, batch: list[_Named]) -> list[Difference]:
    if not batch:
        return []
    users = [n.user_id for n in batch]
    entries = repo.present(users, [n.id for n in batch if not n.event])
    events = repo.present_events(users, [n.id for n in batch if n.event])
    return [
        Difference(
            named.scope,
            named.user_id,
            audit.IDEMPOTENCY_KEY,
            named.id,
            None,
            "" if named.event else named.id,
            f"key {named.key!r} remembers {'event' if named.event else 'entry'} {named.id}, "
            "which is not recorded",
        )
        for named in batch
        if named.id not in (events if named.event else entries)
    ]
