"""Points use cases: systems, awards, deductions, reversals, balances and history.

Each write runs in one unit of work that takes the user's lock first, so that every check
(idempotency, balance, reversal) sees the writes that came before it, and commits the
entries, the account and the idempotency key together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from server.domain import commands, validation
from server.domain.errors import (
    AlreadyReversed,
    EntryNotFound,
    FieldViolation,
    SystemExists,
    SystemNotFound,
    TallyError,
    UserNotFound,
    ValidationFailed,
)
from server.domain.ledger import Account, Posting
from server.domain.model import (
    Balance,
    LedgerEntry,
    LevelBasis,
    LevelChange,
    Page,
    PointsSystem,
)
from server.services import idempotency, page_tokens
from server.services.ports import LockedUser, Store, UnitOfWork
from server.services.transactions import in_transaction

T = TypeVar("T")

MAX_BATCH_ITEMS = 100
STREAM_CHUNK = 1000


@dataclass(frozen=True)
class WriteResult:
    """What a points change returns: the entry, the balance after it, and any level move."""

    entry: LedgerEntry
    balance: Balance
    level_change: LevelChange | None = None
    replayed: bool = False


@dataclass(frozen=True)
class BalanceView:
    balance: Balance
    recent: list[LedgerEntry]


@dataclass(frozen=True)
class TransactionsPage:
    entries: list[LedgerEntry]
    next_page_token: str
    total_size: int


# -- systems -----------------------------------------------------------------------------


def create_system(store: Store, cmd: commands.CreateSystem, now: datetime) -> PointsSystem:
    validation.create_system(cmd)
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

    def work(uow: UnitOfWork) -> PointsSystem:
        if not uow.systems.add(system):
            raise SystemExists(cmd.key)
        uow.commit()
        return system

    return in_transaction(store, work, write=True)


def get_system(store: Store, key: str) -> PointsSystem:
    # A key that cannot name a system names none: NOT_FOUND, without asking the store
    # (which would refuse some such keys outright, e.g. with a NUL in them).
    if not validation.SYSTEM_KEY.fullmatch(key):
        raise SystemNotFound(key)
    return in_transaction(store, lambda uow: _system(uow, key), write=False)


def list_systems(store: Store, page_size: int, page_token: str) -> Page:
    validation.page_size("page_size", page_size)
    limit = page_size or validation.DEFAULT_PAGE_SIZE
    after = page_tokens.decode(page_token, "systems", str) or ""

    def work(uow: UnitOfWork) -> Page:
        systems = uow.systems.list_after(after, limit + 1)
        more = len(systems) > limit
        systems = systems[:limit]
        token = page_tokens.encode(systems[-1].key, "systems") if more else ""
        return Page(systems, token)

    return in_transaction(store, work, write=False)


UPDATABLE_SYSTEM_FIELDS = frozenset(
    {"name", "description", "badge_url", "max_points", "level_basis"}
)


def update_system(store: Store, cmd: commands.UpdateSystem, now: datetime) -> PointsSystem:
    validation.update_system(cmd)
    unknown = cmd.fields - UPDATABLE_SYSTEM_FIELDS - {"key"}
    if unknown:
        raise ValidationFailed(
            [FieldViolation("update_mask", f"unknown field {name!r}") for name in sorted(unknown)]
        )

    def work(uow: UnitOfWork) -> PointsSystem:
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
        uow.commit()
        return updated

    return in_transaction(store, work, write=True)


# -- points changes ----------------------------------------------------------------------


def award(store: Store, cmd: commands.Award, now: datetime) -> WriteResult:
    validation.award(cmd, now)
    return _award(store, cmd, now)


def _award(store: Store, cmd: commands.Award, now: datetime) -> WriteResult:
    """Award, once `cmd` is known valid."""
    request_hash = idempotency.fingerprint("Award", cmd)

    def work(uow: UnitOfWork) -> WriteResult:
        system = _system(uow, cmd.system_key)
        key = cmd.idempotency_key
        locked = uow.users.lock_or_create(cmd.user, now, system.key, key)
        posting = Posting(cmd.reason, cmd.metadata, key)
        return _change(
            uow,
            system,
            locked,
            key,
            request_hash,
            lambda account: account.award(
                cmd.amount,
                posting,
                now=now,
                max_points=system.max_points,
                expire_time=cmd.expire_time,
            ),
            now=now,
            dry_run=cmd.validate_only,
        )

    return in_transaction(store, work, write=True)


def deduct(store: Store, cmd: commands.Deduct, now: datetime) -> WriteResult:
    validation.deduct(cmd)
    request_hash = idempotency.fingerprint("Deduct", cmd)

    def work(uow: UnitOfWork) -> WriteResult:
        system = _system(uow, cmd.system_key)
        key = cmd.idempotency_key
        locked = uow.users.lock_for_change(cmd.user_id, system.key, key)
        if locked is None:
            raise UserNotFound(cmd.user_id)
        posting = Posting(cmd.reason, cmd.metadata, key)
        return _change(
            uow,
            system,
            locked,
            key,
            request_hash,
            lambda account: account.deduct(cmd.amount, posting, now=now),
            now=now,
            dry_run=cmd.validate_only,
        )

    return in_transaction(store, work, write=True)


def award_batch(
    store: Store, items: Sequence[commands.Award | TallyError], now: datetime
) -> list[WriteResult | TallyError]:
    """Each item on its own unit of work: one item's failure never undoes another.

    An item may arrive already failed (the API layer could not convert it); its error is
    its result. Results are in input order."""
    if not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise ValidationFailed(
            [FieldViolation("items", f"must hold 1 to {MAX_BATCH_ITEMS} items, got {len(items)}")]
        )
    results: list[WriteResult | TallyError] = []
    for index, item in enumerate(items):
        if isinstance(item, TallyError):
            results.append(item)
            continue
        try:
            validation.award(item, now, prefix=f"items[{index}].")
            results.append(_award(store, item, now))
        except TallyError as error:
            results.append(error)
    return results


def reverse(store: Store, cmd: commands.Reverse, now: datetime) -> WriteResult:
    validation.reverse(cmd)
    request_hash = idempotency.fingerprint("Reverse", cmd)

    def work(uow: UnitOfWork) -> WriteResult:
        original = uow.ledger.get(cmd.entry_id)
        if original is None:
            raise EntryNotFound(cmd.entry_id)
        system = _system(uow, original.system_key)
        locked = uow.users.lock_for_change(original.user_id, system.key, cmd.idempotency_key)
        assert locked is not None, "a ledger entry's user exists"
        posting = Posting(cmd.reason or f"reversal of {original.id}", {}, cmd.idempotency_key)

        def change(account: Account) -> LedgerEntry:
            earlier = uow.ledger.find_reversal(original.user_id, original.id)
            if earlier is not None:
                raise AlreadyReversed(original.id, earlier.id)
            return account.reverse(original, posting, now=now)

        return _change(
            uow,
            system,
            locked,
            cmd.idempotency_key,
            request_hash,
            change,
            now=now,
            dry_run=False,
        )

    return in_transaction(store, work, write=True)


def _change(
    uow: UnitOfWork,
    system: PointsSystem,
    locked: LockedUser,
    key: str,
    request_hash: str,
    change: Callable[[Account], LedgerEntry],
    *,
    now: datetime,
    dry_run: bool,
) -> WriteResult:
    """Apply one change to a locked user's account: replay or run it, write the entries,
    the account and the idempotency key, and commit unless it is a dry run."""
    replayed = idempotency.replay(locked.stored, WriteResult, key=key, request_hash=request_hash)
    if replayed is not None:
        return replayed
    user_id = locked.user.id
    scope = {"user_id": user_id, "scope": system.key, "key": key, "request_hash": request_hash}
    account = locked.account or Account(system.key, user_id)
    entries = account.expire_lapsed(now)
    entries.append(change(account))
    balance = account.to_balance(system.max_points)
    if dry_run:
        # Computed exactly as it would run, but nothing is written: no id, no sequence.
        return WriteResult(dataclasses.replace(entries[-1], id=""), balance)
    written = uow.ledger.add(entries)
    uow.accounts.save(account, now)
    result = WriteResult(written[-1], balance)
    idempotency.remember(uow, result, now=now, **scope)
    uow.commit()
    return result


# -- reads -------------------------------------------------------------------------------


def get_balance(store: Store, cmd: commands.GetBalance, now: datetime) -> BalanceView:
    validation.get_balance(cmd)

    def read(uow: UnitOfWork, system: PointsSystem, account: Account) -> BalanceView:
        recent = (
            uow.ledger.page(system.key, cmd.user_id, frozenset(), None, cmd.recent_entries)
            if cmd.recent_entries
            else []
        )
        return BalanceView(account.to_balance(system.max_points), recent)

    return _settled_read(store, cmd.system_key, cmd.user_id, now, read)


def list_transactions(
    store: Store, cmd: commands.ListTransactions, now: datetime
) -> TransactionsPage:
    validation.list_transactions(cmd)
    query = page_tokens.query_id(cmd.system_key, cmd.user_id, sorted(t.value for t in cmd.types))
    before = page_tokens.decode(cmd.page_token, query, int)
    limit = cmd.page_size or validation.DEFAULT_PAGE_SIZE

    def read(uow: UnitOfWork, _system: PointsSystem, account: Account) -> TransactionsPage:
        entries = uow.ledger.page(cmd.system_key, cmd.user_id, cmd.types, before, limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
        token = page_tokens.encode(entries[-1].sequence, query) if more else ""
        return TransactionsPage(entries, token, account.entries_of(cmd.types))

    return _settled_read(store, cmd.system_key, cmd.user_id, now, read)


def stream_history(
    store: Store, cmd: commands.StreamHistory, now: datetime
) -> Iterator[LedgerEntry]:
    """The user's entries oldest first, up to the last one written when the call began.

    Checks run before the first entry is yielded, so errors reach the caller as a status;
    entries are read in chunks, each in its own short read transaction.
    """
    validation.stream_history(cmd)

    def start(uow: UnitOfWork, _system: PointsSystem, _account: Account) -> int:
        return uow.ledger.last_sequence(cmd.system_key, cmd.user_id)

    through = _settled_read(store, cmd.system_key, cmd.user_id, now, start)
    return _stream(store, cmd, through)


def _stream(store: Store, cmd: commands.StreamHistory, through: int) -> Iterator[LedgerEntry]:
    def chunk_after(after: int) -> list[LedgerEntry]:
        return in_transaction(
            store,
            lambda uow: uow.ledger.chunk(
                cmd.system_key,
                cmd.user_id,
                after,
                through,
                cmd.start_time,
                cmd.end_time,
                STREAM_CHUNK,
            ),
            write=False,
        )

    after = 0
    while after < through:
        chunk = chunk_after(after)
        yield from chunk
        if len(chunk) < STREAM_CHUNK:
            return
        after = chunk[-1].sequence


class _Lapsed:
    """What a settled read returns when the account first needs settling."""


def _settled_read(
    store: Store,
    system_key: str,
    user_id: str,
    now: datetime,
    read: Callable[[UnitOfWork, PointsSystem, Account], T],
) -> T:
    """Run `read` on one snapshot of a user's account in a system, after writing off
    credit that lapsed before `now`, so that a read always includes what is due.

    Raises SystemNotFound or UserNotFound. The check for lapsed credit is part of the read
    itself; only when there is some does it take a write (and then read again).
    """

    def work(uow: UnitOfWork) -> T | _Lapsed:
        system = _system(uow, system_key)
        found = uow.users.get_with_account(user_id, system_key)
        if found is None:
            raise UserNotFound(user_id)
        account = found[1] or Account(system_key, user_id)
        if account.has_lapsed_credit(now):
            return _Lapsed()
        return read(uow, system, account)

    result = in_transaction(store, work, write=False)
    if isinstance(result, _Lapsed):
        settle(store, system_key, user_id, now)
        result = in_transaction(store, work, write=False)
    assert not isinstance(result, _Lapsed), "settled at `now`, nothing lapses before it"
    return result


def settle(store: Store, system_key: str, user_id: str, now: datetime) -> None:
    """Write off credit that lapsed before `now` (in one write, under the user's lock)."""

    def work(uow: UnitOfWork) -> None:
        locked = uow.users.lock_for_change(user_id, system_key, "")
        account = locked.account if locked is not None else None
        if account is None or not account.has_lapsed_credit(now):
            return  # someone else got there first
        uow.ledger.add(account.expire_lapsed(now))
        uow.accounts.save(account, now)
        uow.commit()

    in_transaction(store, work, write=True)


EXPIRY_SWEEP_BATCH = 500


def expire_due(store: Store, now: datetime, *, limit: int = EXPIRY_SWEEP_BATCH) -> int:
    """Write off lapsed credit of accounts nobody has touched since (the periodic sweep).

    Each account is settled in its own unit of work under its user's lock, so the sweep
    never holds more than one user and races with nothing. Returns the accounts settled.
    """
    due = in_transaction(store, lambda uow: uow.accounts.due_for_expiry(now, limit), write=False)
    for system_key, user_id in due:
        settle(store, system_key, user_id, now)
    return len(due)


# -- helpers -----------------------------------------------------------------------------


def _system(uow: UnitOfWork, key: str) -> PointsSystem:
    system = uow.systems.get(key)
    if system is None:
        raise SystemNotFound(key)
    return system
