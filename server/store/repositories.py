"""Repositories: the store's side of services/ports.py, one per table.

They run the prebuilt statements of store/statements.py on the unit of work's connection
(through store/execution.py) and turn rows into domain values; no ORM objects, no lazy
loads.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.sql import Executable

from server.domain import stored_json
from server.domain.access import ApiKey, Scope
from server.domain.ledger import ONE, Account, CreditLot
from server.domain.model import (
    Boost,
    BoostStatus,
    EntryType,
    Event,
    IntervalUnit,
    LedgerEntry,
    Level,
    LevelBasis,
    LevelChange,
    PointsSystem,
    Rounding,
    Trigger,
    TriggerStatus,
    TriggerType,
    User,
    UserProfile,
)
from server.services.ports import (
    AccountKey,
    KeyScope,
    LockedUsers,
    Standing,
    StoredResponse,
    UserView,
)
from server.store.execution import Executor, Row
from server.store.statements import Statements, boosts_page

EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
ENTRY_TYPES = {t.value: t for t in EntryType}
ENTRY_COUNT_COLUMNS = {
    EntryType.AWARD: "award_entries",
    EntryType.DEDUCT: "deduct_entries",
    EntryType.EXPIRE: "expire_entries",
    EntryType.REVERSAL: "reversal_entries",
}
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


class _Repository:
    def __init__(self, db: Executor, sql: Statements) -> None:
        self.db = db
        self.sql = sql

    def _write_rows(self, statement: Executable, rows: list[dict[str, Any]]) -> None:
        """Run a statement that writes many rows: set-based (the rows as one JSON
        parameter) where the dialect's statement is, else as executemany."""
        self.db.run(statement, _rows_json(rows) if self.sql.set_based else rows)


def _rows_json(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Rows as the one JSON parameter of a set-based statement (statements.from_json)."""
    return {"rows": json.dumps(rows, separators=(",", ":"), ensure_ascii=False, default=_iso)}


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _numbered(entry: LedgerEntry, sequence: int) -> LedgerEntry:
    return replace(entry, sequence=sequence)


class SqlSystemRepository(_Repository):
    def get(self, key: str) -> PointsSystem | None:
        row = self.db.first(self.sql.system_get, {"key": key})
        return _system(row) if row else None

    def all(self) -> list[PointsSystem]:
        return [_system(r) for r in self.db.rows(self.sql.systems_all)]

    def lock(self, key: str) -> PointsSystem | None:
        """The stored system, locked, for changing it."""
        row = self.db.first(self.sql.system_lock, {"key": key})
        return _system(row) if row else None

    def add(self, system: PointsSystem) -> bool:
        values = {"key": system.key, "create_time": system.create_time, **_system_values(system)}
        return self.db.first(self.sql.system_add, values) is not None

    def update(self, system: PointsSystem) -> None:
        self.db.run(self.sql.system_update, {"match_key": system.key, **_system_values(system)})

    def list_after(self, after_key: str, limit: int) -> list[PointsSystem]:
        rows = self.db.rows(self.sql.systems_after, {"after": after_key, "limit": limit})
        return [_system(r) for r in rows]

    def version(self) -> int:
        return _config_version(self.db, self.sql)

    def bump_version(self) -> int:
        return int(self.db.scalar(self.sql.config_bump))


def _config_version(db: Executor, sql: Statements) -> int:
    return int(db.scalar(sql.config_version))


def _system_values(system: PointsSystem) -> dict[str, Any]:
    return {
        "name": system.name,
        "description": system.description,
        "badge_url": system.badge_url,
        "max_points": system.max_points,
        "level_basis": system.level_basis.value,
        "update_time": system.update_time,
    }


def _system(row: Row) -> PointsSystem:
    return PointsSystem(
        key=row["key"],
        name=row["name"],
        description=row["description"],
        badge_url=row["badge_url"],
        max_points=row["max_points"],
        level_basis=LevelBasis(row["level_basis"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
    )


class SqlUserRepository(_Repository):
    def __init__(self, db: Executor, sql: Statements, *, one_by_one: bool = False) -> None:
        super().__init__(db, sql)
        # Lock users one statement each (Citus: FOR UPDATE must stay on one shard), in
        # the same sorted order, so batches sharing users still never deadlock.
        self.one_by_one = one_by_one

    def get(self, user_id: str) -> User | None:
        row = self.db.first(self.sql.user_get, {"id": user_id})
        return _user(row) if row else None

    def view(
        self,
        user_id: str,
        system_key: str,
        types: frozenset[EntryType],
        before_sequence: int | None,
        limit: int,
    ) -> UserView | None:
        params = _page_params(system_key, types, before_sequence, limit)
        if not self.sql.set_based:  # SQLite: no LATERAL; its read transaction is a snapshot
            row = self.db.first(self.sql.user_and_account, {**params, "id": user_id})
            if row is None:
                return None
            entries = (
                _page(self.db, self.sql, user_id, system_key, types, before_sequence, limit)
                if limit
                else []
            )
            version = _config_version(self.db, self.sql)
            return UserView(_user(row), _joined_account(row), entries, version)
        statement = _by_page_shape(self.sql, "view", types, before_sequence)
        rows = self.db.rows(statement, {**params, "id": user_id})
        if not rows:
            return None
        first = rows[0]
        entries = [_entry(r, prefix="entry_") for r in rows if r["entry_id"] is not None]
        return UserView(_user(first), _joined_account(first), entries, first["config"])

    def lock(
        self, user_ids: Sequence[str], create: Mapping[str, UserProfile], now: datetime
    ) -> LockedUsers:
        ids = sorted({*user_ids, *create})
        rows = self._locked(ids)
        found = {row["id"]: _user(row) for row in rows}
        version = rows[0]["config"] if rows else _config_version(self.db, self.sql)
        created: set[str] = set()
        new = [User.new(create[i], now) for i in ids if i in create and i not in found]
        if new:
            values = [_user_values(u) for u in new]
            if self.sql.set_based:
                inserted = self.db.rows(self.sql.user_add, _rows_json(values))
            else:
                inserted = [r for v in values for r in self.db.rows(self.sql.user_add, v)]
            created = {row["id"] for row in inserted}  # new rows are ours (locked) until commit
            found.update((u.id, u) for u in new if u.id in created)
            lost = [u.id for u in new if u.id not in created]  # made meanwhile by another
            if lost:
                found.update((row["id"], _user(row)) for row in self._locked(lost))
        return LockedUsers(found, frozenset(created), version)

    def _locked(self, ids: list[str]) -> list[Row]:
        """Lock these users' rows (sorted ids) and return them, with the configuration's
        version."""
        if not self.one_by_one:
            return self.db.rows(self.sql.users_lock, {"ids": ids})
        return [row for i in ids for row in self.db.rows(self.sql.users_lock, {"ids": [i]})]

    def update(self, users: Sequence[User]) -> None:
        if users:
            rows = [{"match_id": u.id, **_user_values(u)} for u in users]
            self._write_rows(self.sql.user_update, rows)

    def read(self, user_ids: Sequence[str]) -> LockedUsers:
        users = self._users(self.sql.users_of, sorted(set(user_ids)))
        return LockedUsers(users, frozenset(), _config_version(self.db, self.sql))

    def _users(self, statement: Executable, ids: list[str]) -> dict[str, User]:
        return {row["id"]: _user(row) for row in self.db.rows(statement, {"ids": ids})}


def _joined_account(r: Row) -> Account | None:
    """The account columns (labelled account_*) of a users-outer-join-accounts row."""
    if r["account_user_id"] is None:
        return None
    return _account(r, prefix="account_")


def _page_params(
    system_key: str, types: frozenset[EntryType], before_sequence: int | None, limit: int
) -> dict[str, Any]:
    params: dict[str, Any] = {"system_key": system_key, "limit": limit}
    if types:
        params["types"] = sorted(t.value for t in types)
    if before_sequence is not None:
        params["before"] = before_sequence
    return params


def _page(
    db: Executor,
    sql: Statements,
    user_id: str,
    system_key: str,
    types: frozenset[EntryType],
    before_sequence: int | None,
    limit: int,
) -> list[LedgerEntry]:
    """A page of the user's entries, newest first (LedgerRepository.page)."""
    params = {**_page_params(system_key, types, before_sequence, limit), "user_id": user_id}
    statement = _by_page_shape(sql, "page", types, before_sequence)
    return [_entry(r) for r in db.rows(statement, params)]


def _by_page_shape(
    sql: Statements, kind: str, types: frozenset[EntryType], before_sequence: int | None
) -> Executable:
    """The `kind` statement (page or view) for a page with or without a type filter and
    a cursor: four prebuilt shapes rather than one statement built per call."""
    typed = "_typed" if types else ""
    position = "_before" if before_sequence is not None else "_first"
    statement: Executable = getattr(sql, f"{kind}{typed}{position}")
    return statement


def _lot(row: Row) -> CreditLot:
    return CreditLot(row["entry_id"], row["expire_time"], row["remaining"])


def _user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "display_name": user.display_name,
        "email": user.email,
        "attributes": user.attributes,
        "create_time": user.create_time,
    }


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        display_name=row["display_name"],
        email=row["email"],
        attributes=dict(row["attributes"] or {}),
        create_time=row["create_time"],
    )


class SqlAccountRepository(_Repository):
    def standing(self, user_ids: Sequence[str], keys: Sequence[str]) -> Standing:
        params = {"user_ids": sorted(set(user_ids)), "keys": sorted(set(keys))}
        found: dict[AccountKey, Account] = {}
        stored: dict[KeyScope, StoredResponse] = {}
        for r in self.db.rows(self.sql.standing, params):
            if r["kind"] == "a":
                account = _account(r, prefix="a_", user_id=r["user_id"])
                found[(account.user_id, account.system_key)] = account
            else:
                scope = (r["user_id"], r["k_scope"], r["k_key"])
                stored[scope] = StoredResponse(r["k_request_hash"], r["k_response"])
        with_lots = sorted({user_id for (user_id, _), a in found.items() if a.needs_lots})
        if with_lots:
            for x in self.db.rows(self.sql.lots_of, {"user_ids": with_lots}):
                holder = found.get((x["user_id"], x["system_key"]))
                if holder is not None:
                    holder.lots.append(_lot(x))
        return Standing(found, stored)

    def due_for_expiry(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        rows = self.db.rows(self.sql.accounts_due, {"now": now, "limit": limit})
        return [(r["system_key"], r["user_id"]) for r in rows]

    def due_for_accrual(self, system_key: str, now: datetime, limit: int) -> list[str]:
        params = {"system_key": system_key, "now": now, "limit": limit}
        return [r["user_id"] for r in self.db.rows(self.sql.accounts_accrual_due, params)]

    def stale_for_accrual(
        self, system_key: str, epoch: int, after_user: str, limit: int
    ) -> list[str]:
        params = {"system_key": system_key, "epoch": epoch, "after": after_user, "limit": limit}
        return [r["user_id"] for r in self.db.rows(self.sql.accounts_accrual_stale, params)]

    def save(self, accounts: Sequence[Account], now: datetime) -> None:
        """One upsert for the accounts; lots with something left are upserted, emptied
        ones deleted."""
        if not accounts:
            return
        self._write_rows(
            self.sql.account_save,
            [
                {
                    "user_id": account.user_id,
                    "system_key": account.system_key,
                    "balance": account.balance,
                    "total_earned": account.total_earned,
                    "total_spent": account.total_spent,
                    "total_expired": account.total_expired,
                    **{c: account.entry_counts.get(t, 0) for t, c in ENTRY_COUNT_COLUMNS.items()},
                    "last_earned_time": account.last_earned_time,
                    "next_expire_time": account.next_expire_time,
                    "interval_marks": {k: v.isoformat() for k, v in account.interval_marks.items()},
                    "next_accrual_time": account.next_accrual_time,
                    "accrual_version": account.accrual_version,
                    "create_time": account.create_time or now,
                    "update_time": now,
                }
                for account in accounts
            ],
        )
        live, emptied = [], []
        for account in accounts:
            key = {"user_id": account.user_id, "system_key": account.system_key}
            for lot in account.changed_lots.values():
                if lot.remaining > 0:
                    live.append(
                        {
                            **key,
                            "entry_id": lot.entry_id,
                            "expire_time": lot.expire_time,
                            "remaining": lot.remaining,
                        }
                    )
                else:
                    emptied.append({**key, "entry_id": lot.entry_id})
            account.changed_lots.clear()
        if emptied:
            self.db.run(self.sql.lot_delete, emptied)
        if live:
            self.db.run(self.sql.lot_save, live)

    def systems_of(self, user_id: str) -> frozenset[str]:
        rows = self.db.rows(self.sql.account_systems, {"user_id": user_id})
        return frozenset(r["system_key"] for r in rows)


class SqlLedgerRepository(_Repository):
    def add(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        """Insert the entries in one statement, numbered in order, and their owners (in
        the same transaction: an entry is never without one); returns them numbered."""
        if not entries:
            return []
        rows = [_entry_values(e) for e in entries]
        owners = [{"entry_id": e.id, "user_id": e.user_id} for e in entries]
        self._write_rows(self.sql.owner_add, owners)
        if self.sql.set_based:
            result = self.db.rows(self.sql.entry_add, _rows_json(rows))
            numbers: dict[str, int] = {row["id"]: row["sequence"] for row in result}
            return [_numbered(e, numbers[e.id]) for e in entries]
        first = int(self.db.scalar(self.sql.sequence_next))
        written = [_numbered(e, first + i) for i, e in enumerate(entries)]
        for row, entry in zip(rows, written, strict=True):
            row["sequence"] = entry.sequence
        self.db.run(self.sql.entry_add, rows)
        return written

    def get(self, entry_id: str) -> LedgerEntry | None:
        """The entry with this id, found through its owner (see EntryOwnerRow)."""
        user_id = self.db.scalar(self.sql.owner_of, {"id": entry_id})
        if user_id is None:
            return None
        row = self.db.first(self.sql.entry_get, {"user_id": user_id, "id": entry_id})
        return _entry(row) if row else None

    def reversals_of(self, user_ids: Sequence[str], entry_ids: Sequence[str]) -> dict[str, str]:
        params = {"user_ids": sorted(set(user_ids)), "entry_ids": sorted(set(entry_ids))}
        rows = self.db.rows(self.sql.reversals_of, params)
        return {row["reverses_entry_id"]: row["id"] for row in rows}

    def page(
        self,
        system_key: str,
        user_id: str,
        types: frozenset[EntryType],
        before_sequence: int | None,
        limit: int,
    ) -> list[LedgerEntry]:
        return _page(self.db, self.sql, user_id, system_key, types, before_sequence, limit)

    def chunk(
        self,
        system_key: str,
        user_id: str,
        after_sequence: int,
        through_sequence: int,
        start_time: datetime | None,
        end_time: datetime | None,
        limit: int,
    ) -> list[LedgerEntry]:
        params = {
            "user_id": user_id,
            "system_key": system_key,
            "after": after_sequence,
            "through": through_sequence,
            "start_time": start_time or EARLIEST,
            "end_time": end_time or LATEST,
            "limit": limit,
        }
        return [_entry(r) for r in self.db.rows(self.sql.chunk, params)]

    def feed(
        self, system_key: str, after_sequence: int, through_sequence: int, limit: int
    ) -> list[LedgerEntry]:
        params: dict[str, Any] = {
            "after": after_sequence,
            "through": through_sequence,
            "limit": limit,
        }
        statement = self.sql.ledger_feed
        if system_key:
            statement = self.sql.ledger_feed_of_system
            params["system_key"] = system_key
        return [_entry(r) for r in self.db.rows(statement, params)]


class SqlFeedRepository(_Repository):
    """What the feeds' watermarks are made of (services/held/feed.py explains them)."""

    def last_issued(self, feed: str) -> int:
        return int(self.db.scalar(self.sql.feed_last[feed]))

    def writers(self) -> frozenset[str] | None:
        if not self.sql.set_based:
            return None  # SQLite: numbers commit in order
        return frozenset(self.db.scalar(self.sql.feed_writers) or ())

    def running(self, writers: frozenset[str]) -> frozenset[str]:
        found = self.db.scalar(self.sql.feed_running, {"writers": sorted(writers)})
        return frozenset(found or ())


def _account(r: Row, prefix: str = "", user_id: str | None = None) -> Account:
    return Account(
        system_key=r[f"{prefix}system_key"],
        user_id=r[f"{prefix}user_id"] if user_id is None else user_id,
        balance=r[f"{prefix}balance"],
        total_earned=r[f"{prefix}total_earned"],
        total_spent=r[f"{prefix}total_spent"],
        total_expired=r[f"{prefix}total_expired"],
        entry_counts={t: r[prefix + column] for t, column in ENTRY_COUNT_COLUMNS.items()},
        last_earned_time=r[f"{prefix}last_earned_time"],
        next_expire_time=r[f"{prefix}next_expire_time"],
        create_time=r[f"{prefix}create_time"],
        interval_marks={
            k: datetime.fromisoformat(v) for k, v in (r[f"{prefix}interval_marks"] or {}).items()
        },
        next_accrual_time=r[f"{prefix}next_accrual_time"],
        accrual_version=r[f"{prefix}accrual_version"],
    )


def _entry_values(entry: LedgerEntry) -> dict[str, Any]:
    values = stored_json.entry_fields(entry)
    values["reverses_entry_id"] = entry.reverses_entry_id or None
    return values


def _entry(row: Row, prefix: str = "") -> LedgerEntry:
    p = prefix
    multiplier = row[p + "multiplier"]
    return LedgerEntry(
        id=row[p + "id"],
        sequence=row[p + "sequence"],
        system_key=row[p + "system_key"],
        user_id=row[p + "user_id"],
        type=ENTRY_TYPES[row[p + "type"]],
        amount=row[p + "amount"],
        base_amount=row[p + "base_amount"],
        multiplier=ONE if multiplier == "1" else Decimal(multiplier),
        boost_ids=tuple(row[p + "boost_ids"] or ()),
        capped=row[p + "capped"],
        balance_after=row[p + "balance_after"],
        reason=row[p + "reason"],
        metadata=row[p + "metadata"] or {},  # a fresh object from the driver: no copy needed
        idempotency_key=row[p + "idempotency_key"],
        trigger_id=row[p + "trigger_id"],
        event_type=row[p + "event_type"],
        expire_time=row[p + "expire_time"],
        reverses_entry_id=row[p + "reverses_entry_id"] or "",
        create_time=row[p + "create_time"],
    )


class SqlIdempotencyRepository(_Repository):
    def add(self, keys: Mapping[KeyScope, StoredResponse], now: datetime) -> None:
        if not keys:
            return
        self._write_rows(
            self.sql.key_add,
            [
                {
                    "user_id": user_id,
                    "scope": scope,
                    "key": key,
                    "request_hash": stored.request_hash,
                    "response": stored.response,
                    "create_time": now,
                }
                for (user_id, scope, key), stored in keys.items()
            ],
        )


class SqlTriggerRepository(_Repository):
    def all(self) -> list[Trigger]:
        return [_trigger(r) for r in self.db.rows(self.sql.triggers_all)]

    def lock(self, trigger_id: str) -> Trigger | None:
        row = self.db.first(self.sql.trigger_lock, {"id": trigger_id})
        return _trigger(row) if row else None

    def add(self, trigger: Trigger) -> None:
        self._write_rows(self.sql.trigger_add, [{"id": trigger.id, **_trigger_values(trigger)}])

    def update(self, trigger: Trigger) -> None:
        values = {"id": trigger.id, **_trigger_values(trigger)}
        if not self.sql.set_based:
            values["match_id"] = values.pop("id")
        self._write_rows(self.sql.trigger_update, [values])


def _trigger_values(t: Trigger) -> dict[str, Any]:
    return {
        "system_key": t.system_key,
        "type": t.type.value,
        "points": t.points,
        "status": t.status.value,
        "event_type": t.event_type,
        "metric_threshold": str(t.metric_threshold),
        "interval_unit": t.interval_unit.value if t.interval_unit else None,
        "interval_count": t.interval_count,
        "event_attributes": [list(a) for a in t.event_attributes],
        "user_attributes": [list(a) for a in t.user_attributes],
        "activate_time": t.activate_time,
        "version": t.version,
        "create_time": t.create_time,
        "update_time": t.update_time,
    }


def _trigger(r: Row) -> Trigger:
    unit = r["interval_unit"]
    return Trigger(
        id=r["id"],
        system_key=r["system_key"],
        type=TriggerType(r["type"]),
        points=r["points"],
        status=TriggerStatus(r["status"]),
        event_type=r["event_type"],
        metric_threshold=Decimal(r["metric_threshold"]),
        interval_unit=IntervalUnit(unit) if unit else None,
        interval_count=r["interval_count"],
        event_attributes=tuple((k, v) for k, v in r["event_attributes"]),
        user_attributes=tuple((k, v) for k, v in r["user_attributes"]),
        activate_time=r["activate_time"],
        version=r["version"],
        create_time=r["create_time"],
        update_time=r["update_time"],
    )


class SqlEventRepository(_Repository):
    def totals(
        self, user_ids: Sequence[str], event_types: Sequence[str]
    ) -> dict[tuple[str, str, str], Decimal]:
        params = {"user_ids": sorted(set(user_ids)), "event_types": sorted(set(event_types))}
        rows = self.db.rows(self.sql.totals_of, params)
        return {(r["user_id"], r["event_type"], r["reach"]): Decimal(r["total"]) for r in rows}

    def save_totals(self, totals: Mapping[tuple[str, str, str], Decimal], now: datetime) -> None:
        if totals:
            rows = [
                {
                    "user_id": u,
                    "event_type": t,
                    "reach": reach,
                    "total": str(total),
                    "update_time": now,
                }
                for (u, t, reach), total in totals.items()
            ]
            self._write_rows(self.sql.total_save, rows)

    def add(self, events: Sequence[Event]) -> None:
        if events:
            rows = [
                {
                    "user_id": e.user_id,
                    "id": e.id,
                    "event_type": e.event_type,
                    "value": str(e.value),
                    "total_after": str(e.total_after),
                    "attributes": e.attributes,
                    "create_time": e.create_time,
                    "reach": e.reach,
                }
                for e in events
            ]
            self._write_rows(self.sql.event_add, rows)

    def window(
        self,
        event_types: Sequence[str],
        start_time: datetime,
        end_time: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[tuple[Event, dict[str, str]]]:
        params: dict[str, Any] = {
            "event_types": list(event_types),
            "start_time": start_time,
            "end_time": end_time,
            "limit": limit,
        }
        statement = self.sql.events_window
        if after is not None:
            statement = self.sql.events_window_after
            params.update(after_time=after[0], after_id=after[1])
        return [
            (
                Event(
                    id=r["id"],
                    user_id=r["user_id"],
                    event_type=r["event_type"],
                    value=Decimal(r["value"]),
                    total_after=Decimal(r["total_after"]),
                    attributes=dict(r["attributes"] or {}),
                    create_time=r["create_time"],
                    reach=r["reach"],
                ),
                dict(r["user_attributes"] or {}),
            )
            for r in self.db.rows(statement, params)
        ]


LEVEL_BASIS_COLUMNS = {LevelBasis.BALANCE: "balance", LevelBasis.LIFETIME_EARNED: "total_earned"}
NO_LIMIT = 2**62  # above any basis value (points never approach it)


class SqlLevelRepository(_Repository):
    def all(self) -> list[Level]:
        return [stored_json.level_of(r) for r in self.db.rows(self.sql.levels_all)]

    def add(self, level: Level) -> None:
        self.db.run(self.sql.level_add, {"id": level.id, **_level_values(level)})

    def update(self, level: Level) -> None:
        self.db.run(self.sql.level_update, {"match_id": level.id, **_level_values(level)})

    def delete(self, level_id: str) -> None:
        self.db.run(self.sql.level_delete, {"id": level_id})

    def add_changes(self, changes: Sequence[LevelChange]) -> list[LevelChange]:
        if not changes:
            return []
        rows = [_level_change_values(c) for c in changes]
        if self.sql.set_based:
            result = self.db.rows(self.sql.level_change_add, _rows_json(rows))
            numbers = {row["entry_id"]: row["sequence"] for row in result}
            return [replace(c, sequence=numbers[c.entry_id]) for c in changes]
        first = int(self.db.scalar(self.sql.level_change_next))
        numbered = [replace(c, sequence=first + i) for i, c in enumerate(changes)]
        for row, change in zip(rows, numbered, strict=True):
            row["sequence"] = change.sequence
        self.db.run(self.sql.level_change_add, rows)
        return numbered

    def changes_after(
        self, system_key: str, after_sequence: int, through_sequence: int, limit: int
    ) -> list[LevelChange]:
        params: dict[str, Any] = {
            "after": after_sequence,
            "through": through_sequence,
            "limit": limit,
        }
        statement = self.sql.level_changes_feed
        if system_key:
            statement = self.sql.level_changes_feed_of_system
            params["system_key"] = system_key
        return [level_change(r) for r in self.db.rows(statement, params)]

    def counts(self, system_key: str, basis: LevelBasis, thresholds: Sequence[int]) -> list[int]:
        statement = self.sql.level_counts[LEVEL_BASIS_COLUMNS[basis]]
        if self.sql.set_based:
            params = {"system_key": system_key, "thresholds": list(thresholds)}
            counts = [0] * (len(thresholds) + 1)
            for row in self.db.rows(statement, params):
                counts[row["bucket"]] = row["users"]
            return counts
        bounds = [-NO_LIMIT, *thresholds, NO_LIMIT]
        return [
            int(self.db.scalar(statement, {"system_key": system_key, "low": low, "high": high}))
            for low, high in itertools.pairwise(bounds)
        ]


def _level_values(level: Level) -> dict[str, Any]:
    """A level's row but for its id (set apart: by `id` on insert, `match_id` on update)."""
    values = stored_json.level_fields(level)
    del values["id"]
    return values


def _level_change_values(change: LevelChange) -> dict[str, Any]:
    values = stored_json.level_change_fields(change)
    del values["sequence"]  # numbered as it is written
    return values


def level_change(r: Row) -> LevelChange:
    """A level_changes row as a LevelChange (for the feed)."""
    return LevelChange(
        system_key=r["system_key"],
        user_id=r["user_id"],
        previous_level=stored_json.level_in(r["previous_level"]),
        new_level=stored_json.level_in(r["new_level"]),
        entry_id=r["entry_id"],
        create_time=r["create_time"],
        sequence=r["sequence"],
    )


class SqlBoostRepository(_Repository):
    def live(self, now: datetime) -> list[Boost]:
        return [_boost(r) for r in self.db.rows(self.sql.boosts_live, {"now": now})]

    def live_counts(
        self, system_key: str, user_ids: Sequence[str], now: datetime
    ) -> dict[str, int]:
        if not user_ids:
            return {}
        params = {"system_key": system_key, "user_ids": list(user_ids), "now": now}
        rows = self.db.rows(self.sql.boosts_live_counts, params)
        return {r["user_id"]: int(r["live"]) for r in rows}

    def get(self, boost_id: str) -> Boost | None:
        row = self.db.first(self.sql.boost_get, {"id": boost_id})
        return _boost(row) if row else None

    def lock(self, boost_id: str) -> Boost | None:
        row = self.db.first(self.sql.boost_lock, {"id": boost_id})
        return _boost(row) if row else None

    def add(self, added: Sequence[Boost]) -> None:
        if added:
            self._write_rows(self.sql.boost_add, [_boost_values(b) for b in added])

    def archive(self, boost_id: str, when: datetime) -> None:
        self.db.run(self.sql.boost_archive, {"match_id": boost_id, "archive_time": when})

    def page(
        self,
        system_key: str,
        user_id: str,
        statuses: frozenset[BoostStatus],
        before: tuple[datetime, str] | None,
        limit: int,
        now: datetime,
    ) -> list[Boost]:
        statement = boosts_page(
            user=bool(user_id),
            cursor=before is not None,
            statuses=frozenset(s.value for s in statuses),
        )
        params: dict[str, Any] = {"system_key": system_key, "limit": limit, "now": now}
        if user_id:
            params["user_id"] = user_id
        if before is not None:
            params.update(before_time=before[0], before_id=before[1])
        return [_boost(r) for r in self.db.rows(statement, params)]


def _boost_values(b: Boost) -> dict[str, Any]:
    return {
        "id": b.id,
        "system_key": b.system_key,
        "user_id": b.user_id,
        "name": b.name,
        "multiplier": str(b.multiplier),
        "rounding": b.rounding.value,
        "start_time": b.start_time,
        "end_time": b.end_time,
        "user_attributes": [list(a) for a in b.user_attributes],
        "archive_time": b.archive_time,
        "create_time": b.create_time,
    }


def _boost(r: Row) -> Boost:
    return Boost(
        id=r["id"],
        system_key=r["system_key"],
        user_id=r["user_id"],
        name=r["name"],
        multiplier=Decimal(r["multiplier"]),
        rounding=Rounding(r["rounding"]),
        start_time=r["start_time"],
        end_time=r["end_time"],
        user_attributes=tuple((k, v) for k, v in r["user_attributes"]),
        archive_time=r["archive_time"],
        create_time=r["create_time"],
    )


class SqlApiKeyRepository(_Repository):
    def all(self) -> list[ApiKey]:
        return [_api_key(r) for r in self.db.rows(self.sql.api_keys_all)]

    def find(self, *, key_hash: str | None = None, key_id: str | None = None) -> ApiKey | None:
        if (key_hash is None) == (key_id is None):
            raise ValueError("find one key by key_hash or by key_id")
        if key_hash is not None:
            row = self.db.first(self.sql.api_key_by_hash, {"key_hash": key_hash})
        else:
            row = self.db.first(self.sql.api_key_by_id, {"id": key_id})
        return None if row is None else _api_key(row)

    def add(self, key: ApiKey) -> None:
        self.db.run(
            self.sql.api_key_add,
            {
                "id": key.id,
                "key_hash": key.key_hash,
                "name": key.name,
                "scope": key.scope.value,
                "systems": ",".join(sorted(key.systems)),
                "token_secret": key.token_secret.hex(),
                "create_time": key.create_time,
                "revoke_time": key.revoke_time,
            },
        )

    def revoke(self, key_id: str, now: datetime) -> bool:
        """Revoke a live key; False when there is no such key or it was revoked already."""
        found = self.db.first(self.sql.api_key_revoke, {"match_id": key_id, "revoke_time": now})
        return found is not None


def _api_key(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        scope=Scope(row["scope"]),
        systems=frozenset(s for s in row["systems"].split(",") if s),
        key_hash=row["key_hash"],
        token_secret=bytes.fromhex(row["token_secret"]),
        create_time=row["create_time"],
        revoke_time=row["revoke_time"],
    )
