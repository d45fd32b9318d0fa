"""Accounts and their credit lots, and ledger entries: a batch's standing read and
written, and pages, chunks and the feed of entries (SqlUserRepository.view reads a page
with its user)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.sql import Executable

from server.domain import stored_json
from server.domain.ledger import ONE, Account, CreditLot
from server.domain.model import EntryType, LedgerEntry
from server.services.ports import AccountKey, KeyScope, Standing, StoredResponse
from server.store.execution import Executor, Row
from server.store.repositories.base import Repository
from server.store.statements import Statements

EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
ENTRY_TYPES = {t.value: t for t in EntryType}
ENTRY_COUNT_COLUMNS = {
    EntryType.AWARD: "award_entries",
    EntryType.DEDUCT: "deduct_entries",
    EntryType.EXPIRE: "expire_entries",
    EntryType.REVERSAL: "reversal_entries",
}
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _numbered(entry: LedgerEntry, sequence: int) -> LedgerEntry:
    return replace(entry, sequence=sequence)


class SqlAccountRepository(Repository):
    def standing(self, user_ids: Sequence[str], keys: Sequence[KeyScope]) -> Standing:
        rows = self.db.rows(self.sql.ledger.standing, standing_params(user_ids, keys))
        return standing_of(self.db, self.sql, rows)

    def due_for_expiry(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        rows = self.db.rows(self.sql.ledger.accounts_due, {"now": now, "limit": limit})
        return [(r["system_key"], r["user_id"]) for r in rows]

    def due_for_accrual(self, system_key: str, now: datetime, limit: int) -> list[str]:
        params = {"system_key": system_key, "now": now, "limit": limit}
        return [r["user_id"] for r in self.db.rows(self.sql.ledger.accounts_accrual_due, params)]

    def stale_for_accrual(
        self, system_key: str, epoch: int, after_user: str, limit: int
    ) -> list[str]:
        params = {"system_key": system_key, "epoch": epoch, "after": after_user, "limit": limit}
        return [r["user_id"] for r in self.db.rows(self.sql.ledger.accounts_accrual_stale, params)]

    def save(
        self,
        accounts: Sequence[Account],
        now: datetime,
        lots: Mapping[AccountKey, Sequence[CreditLot]] | None = None,
    ) -> None:
        """One upsert for the accounts; lots with something left are upserted, emptied
        ones deleted (`lots` by account, else each account's changed_lots)."""
        if not accounts:
            return
        self._write_user_rows(
            self.sql.ledger.account_save,
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
            changed = (
                account.changed_lots.values()
                if lots is None
                else lots.get((account.user_id, account.system_key), ())
            )
            for lot in changed:
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
        if emptied:
            self.db.run(self.sql.ledger.lot_delete, emptied)
        if live:
            self.db.run(self.sql.ledger.lot_save, live)

    def systems_of(self, user_id: str) -> frozenset[str]:
        rows = self.db.rows(self.sql.ledger.account_systems, {"user_id": user_id})
        return frozenset(r["system_key"] for r in rows)


class SqlLedgerRepository(Repository):
    def add(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
        """Insert the entries in one statement, numbered in order; returns them numbered."""
        if not entries:
            return []
        sql = self.sql.ledger
        numbers = self._write_numbered_rows(
            sql.entry_add,
            [_entry_values(e) for e in entries],
            key="id",
            take=lambda: sql.sequence_take,
            next_one=lambda: sql.sequence_next,
        )
        return [_numbered(e, n) for e, n in zip(entries, numbers, strict=True)]

    def get(self, entry_id: str, user_id: str = "") -> LedgerEntry | None:
        if user_id:
            row = self.db.first(self.sql.ledger.entry_get, {"user_id": user_id, "id": entry_id})
        else:
            row = self.db.first(self.sql.ledger.entry_by_id, {"id": entry_id})
        return entry_of(row) if row else None

    def reversals_of(self, user_ids: Sequence[str], entry_ids: Sequence[str]) -> dict[str, str]:
        params = {"user_ids": sorted(set(user_ids)), "entry_ids": sorted(set(entry_ids))}
        rows = self.db.rows(self.sql.ledger.reversals_of, params)
        return {row["reverses_entry_id"]: row["id"] for row in rows}

    def page(
        self,
        system_key: str,
        user_id: str,
        types: frozenset[EntryType],
        before_sequence: int | None,
        limit: int,
    ) -> list[LedgerEntry]:
        return page_of(self.db, self.sql, user_id, system_key, types, before_sequence, limit)

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
        return [entry_of(r) for r in self.db.rows(self.sql.ledger.chunk, params)]

    def feed(
        self, system_key: str, after_sequence: int, through_sequence: int, limit: int
    ) -> list[LedgerEntry]:
        sql = self.sql.ledger
        rows = self._feed_rows(
            sql.ledger_feed,
            sql.ledger_feed_of_system,
            system_key,
            after_sequence,
            through_sequence,
            limit,
        )
        return [entry_of(r) for r in rows]


def standing_params(user_ids: Sequence[str], keys: Sequence[KeyScope]) -> dict[str, Any]:
    """The parameters of the standing read (statements.ledger: standing): the keys by
    every column of their index, so that each is found by its own lookup however many
    keys its user holds (a read by user and key alone scanned all of the user's keys).
    A combination of one key's scope and another's key is found too, if it exists, and
    is harmless: the decision looks keys up where they live."""
    return {
        "user_ids": sorted(set(user_ids)),
        "scopes": sorted({scope for _, scope, _ in keys}),
        "keys": sorted({key for _, _, key in keys}),
    }


def standing_of(db: Executor, sql: Statements, rows: Sequence[Row]) -> Standing:
    """The standing read's rows as accounts and stored responses; credit lots are read
    for the accounts that hold any (a second statement, only then)."""
    found: dict[AccountKey, Account] = {}
    stored: dict[KeyScope, StoredResponse] = {}
    for r in rows:
        if r["kind"] == "a":
            account = account_of(r, prefix="a_", user_id=r["user_id"])
            found[(account.user_id, account.system_key)] = account
        else:
            scope = (r["user_id"], r["k_scope"], r["k_key"])
            stored[scope] = StoredResponse(r["k_request_hash"], r["k_response"])
    with_lots = sorted({user_id for (user_id, _), a in found.items() if a.needs_lots})
    if with_lots:
        for x in db.rows(sql.ledger.lots_of, {"user_ids": with_lots}):
            holder = found.get((x["user_id"], x["system_key"]))
            if holder is not None:
                holder.lots.append(_lot(x))
    return Standing(found, stored)


def joined_account(r: Row) -> Account | None:
    """The account columns (labelled account_*) of a users-outer-join-accounts row."""
    if r["account_user_id"] is None:
        return None
    return account_of(r, prefix="account_")


def page_params(
    system_key: str, types: frozenset[EntryType], before_sequence: int | None, limit: int
) -> dict[str, Any]:
    params: dict[str, Any] = {"system_key": system_key, "limit": limit}
    if types:
        params["types"] = sorted(t.value for t in types)
    if before_sequence is not None:
        params["before"] = before_sequence
    return params


def page_of(
    db: Executor,
    sql: Statements,
    user_id: str,
    system_key: str,
    types: frozenset[EntryType],
    before_sequence: int | None,
    limit: int,
) -> list[LedgerEntry]:
    """A page of the user's entries, newest first (LedgerRepository.page)."""
    params = {**page_params(system_key, types, before_sequence, limit), "user_id": user_id}
    statement = by_page_shape(sql, "page", types, before_sequence)
    return [entry_of(r) for r in db.rows(statement, params)]


def by_page_shape(
    sql: Statements, kind: str, types: frozenset[EntryType], before_sequence: int | None
) -> Executable:
    """The `kind` statement (page or view) for a page with or without a type filter and
    a cursor: four prebuilt shapes rather than one statement built per call."""
    typed = "_typed" if types else ""
    position = "_before" if before_sequence is not None else "_first"
    statement: Executable = getattr(sql.ledger, f"{kind}{typed}{position}")
    return statement


def _lot(row: Row) -> CreditLot:
    return CreditLot(row["entry_id"], row["expire_time"], row["remaining"])


def account_of(r: Row, prefix: str = "", user_id: str | None = None) -> Account:
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


def entry_of(row: Row, prefix: str = "") -> LedgerEntry:
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
