"""The audit's queries (services/ports.py AuditRepository), for `tally-server verify`.

Everything is read by ranges of user ids: `users_after` reads the next chunk of accounts
(by their primary key, so a chunk costs the same deep into the users), and every other
query reads one range (after, through] of user ids, the last one unbounded above, so
that entries without an account are found wherever their user falls. So the server holds one
chunk at a time, and on Citus each query goes to the shards whole (user_id is the
distribution column, and every GROUP BY and window partition includes it).

The sums are GROUP BYs in the database. An entry's balance_after against the one before
it is a window function (`lag`) that returns only the entries breaking the chain; the
reversal rules are a self-join that returns only the reversals breaking them. What must
be replayed or parsed in order (entries for credit lots, events, stored responses)
streams. The caller runs all of it in one snapshot (SqlStore.snapshot).

Like the analytics, these statements are built per call (the audit runs rarely) and go
through SQLAlchemy's statement cache, not the prebuilt hot-path ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql import Select

from server.domain import audit
from server.domain.audit import AccountFigures, Difference, Posted, RecordedMove
from server.domain.ledger import CreditLot
from server.domain.model import EntryType
from server.services.ports import AccountKey, AccountTally, UserRange
from server.store.statements.tables import (
    accounts,
    events,
    idempotency,
    ledger,
    level_changes,
    lots,
)
from server.store.statements.tables import metric_totals as totals

AWARD = EntryType.AWARD.value
DEDUCT = EntryType.DEDUCT.value
EXPIRE = EntryType.EXPIRE.value
REVERSAL = EntryType.REVERSAL.value
ENTRY_TYPES = {t.value: t for t in EntryType}

STREAM_ROWS = 2000  # rows fetched at a time by the streamed reads


def earned(amount: Any, type_: Any) -> ColumnElement[Any]:
    """An entry's part of total_earned: awards, and reversals of awards (negative)."""
    return case((or_(type_ == AWARD, and_(type_ == REVERSAL, amount < 0)), amount), else_=0)


class SqlAuditRepository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _rows(self, statement: Any) -> list[RowMapping]:
        return list(self.connection.execute(statement).mappings())

    def _stream(self, statement: Any) -> Iterator[RowMapping]:
        result = self.connection.execute(statement.execution_options(yield_per=STREAM_ROWS))
        try:
            yield from result.mappings()
        finally:
            result.close()

    # -- chunks of users -----------------------------------------------------------------

    def users_after(self, after: str, system_key: str, limit: int) -> list[str]:
        # The accounts' primary key is (user_id, system_key): an index range read that
        # stops at `limit`, however far into the users the chunk is.
        chosen = select(accounts.c.user_id).where(accounts.c.user_id > after)
        if system_key:
            chosen = chosen.where(accounts.c.system_key == system_key)
        statement = chosen.order_by(accounts.c.user_id, accounts.c.system_key).limit(limit)
        return [row["user_id"] for row in self._rows(statement)]

    # -- accounts against their entries --------------------------------------------------

    def accounts(self, users: UserRange, system_key: str) -> list[AccountTally]:
        amount, type_ = ledger.c.amount, ledger.c.type

        def total(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, amount), else_=0)), 0)

        def count(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        summed = _within(
            select(
                ledger.c.user_id,
                ledger.c.system_key,
                func.sum(amount).label("balance"),
                func.coalesce(func.sum(earned(amount, type_)), 0).label("total_earned"),
                (-total(or_(type_ == DEDUCT, and_(type_ == REVERSAL, amount > 0)))).label(
                    "total_spent"
                ),
                (-total(type_ == EXPIRE)).label("total_expired"),
                count(type_ == AWARD).label("award_entries"),
                count(type_ == DEDUCT).label("deduct_entries"),
                count(type_ == EXPIRE).label("expire_entries"),
                count(type_ == REVERSAL).label("reversal_entries"),
                count(and_(type_ == AWARD, ledger.c.expire_time.is_not(None))).label("expiring"),
            ),
            ledger,
            users,
            system_key,
        ).group_by(ledger.c.user_id, ledger.c.system_key)
        stored = _within(select(accounts), accounts, users, system_key)
        by_ledger = {(r["user_id"], r["system_key"]): r for r in self._rows(summed)}
        by_row = {(r["user_id"], r["system_key"]): r for r in self._rows(stored)}
        found = []
        for key in sorted(by_ledger.keys() | by_row.keys()):
            row, sums = by_row.get(key), by_ledger.get(key)
            found.append(
                AccountTally(
                    system_key=key[1],
                    user_id=key[0],
                    stored=_figures(row) if row is not None else None,
                    ledger=_figures(sums) if sums is not None else None,
                    next_expire_time=row["next_expire_time"] if row is not None else None,
                    expiring_awards=int(sums["expiring"]) if sums is not None else 0,
                )
            )
        return found

    # -- rules of the ledger itself ------------------------------------------------------

    def entry_problems(self, users: UserRange, system_key: str) -> list[Difference]:
        return self._chain_breaks(users, system_key) + self._bad_reversals(users, system_key)

    def _chain_breaks(self, users: UserRange, system_key: str) -> list[Difference]:
        before = func.lag(ledger.c.balance_after).over(
            partition_by=(ledger.c.user_id, ledger.c.system_key), order_by=ledger.c.sequence
        )
        chained = _within(
            select(
                ledger.c.user_id,
                ledger.c.system_key,
                ledger.c.id,
                ledger.c.sequence,
                ledger.c.amount,
                ledger.c.balance_after,
                before.label("before"),
            ),
            ledger,
            users,
            system_key,
        ).subquery("chained")
        expected = func.coalesce(chained.c.before, 0) + chained.c.amount
        statement = (
            select(chained, expected.label("expected"))
            .where(or_(expected != chained.c.balance_after, chained.c.balance_after < 0))
            .order_by(chained.c.user_id, chained.c.system_key, chained.c.sequence)
        )
        found = []
        for r in self._rows(statement):
            key, user, entry = r["system_key"], r["user_id"], r["id"]
            after = int(r["balance_after"])
            if after != r["expected"]:
                detail = f"sequence {r['sequence']}: {r['before'] or 0} {r['amount']:+d}"
                found.append(
                    Difference(
                        key, user, audit.BALANCE_AFTER, after, int(r["expected"]), entry, detail
                    )
                )
            if after < 0:
                found.append(Difference(key, user, audit.NEGATIVE_BALANCE_AFTER, after, 0, entry))
        return found

    def _bad_reversals(self, users: UserRange, system_key: str) -> list[Difference]:
        reversal, original = ledger.alias("reversal"), ledger.alias("original")
        times = func.count().over(partition_by=(reversal.c.user_id, reversal.c.reverses_entry_id))
        joined = (
            _within(
                select(
                    reversal.c.user_id,
                    reversal.c.system_key,
                    reversal.c.id,
                    reversal.c.amount,
                    reversal.c.reverses_entry_id,
                    original.c.id.label("original_id"),
                    original.c.system_key.label("original_system"),
                    original.c.type.label("original_type"),
                    original.c.amount.label("original_amount"),
                    times.label("times"),
                ).select_from(
                    reversal.outerjoin(
                        original,
                        and_(
                            original.c.user_id == reversal.c.user_id,
                            original.c.id == reversal.c.reverses_entry_id,
                        ),
                    )
                ),
                reversal,
                users,
                system_key,
            )
            .where(reversal.c.type == REVERSAL)
            .subquery("reversals")
        )
        statement = (
            select(joined)
            .where(
                or_(
                    joined.c.original_id.is_(None),
                    joined.c.original_system != joined.c.system_key,
                    joined.c.original_type.not_in([AWARD, DEDUCT]),
                    joined.c.amount != -joined.c.original_amount,
                    joined.c.times > 1,
                )
            )
            .order_by(joined.c.user_id, joined.c.system_key, joined.c.id)
        )
        found: list[Difference] = []
        twice: set[tuple[str, str]] = set()
        for r in self._rows(statement):
            target = r["reverses_entry_id"] or ""
            if r["times"] > 1 and target and (r["user_id"], target) not in twice:
                twice.add((r["user_id"], target))
                found.append(
                    Difference(
                        r["system_key"],
                        r["user_id"],
                        audit.REVERSED_TWICE,
                        int(r["times"]),
                        1,
                        target,
                        f"reversed {r['times']} times",
                    )
                )
            why = _reversal_fault(r)
            if why:
                found.append(
                    Difference(
                        r["system_key"],
                        r["user_id"],
                        audit.REVERSAL_TARGET,
                        int(r["amount"]),
                        None if r["original_amount"] is None else -int(r["original_amount"]),
                        r["id"],
                        f"reverses {target or '(nothing)'}: {why}",
                    )
                )
        return found

    # -- credit lots ---------------------------------------------------------------------

    def lots(self, users: UserRange, system_key: str) -> dict[AccountKey, list[CreditLot]]:
        statement = _within(select(lots), lots, users, system_key).order_by(
            lots.c.user_id, lots.c.system_key, lots.c.entry_id
        )
        found: dict[AccountKey, list[CreditLot]] = {}
        for r in self._rows(statement):
            found.setdefault((r["user_id"], r["system_key"]), []).append(
                CreditLot(r["entry_id"], r["expire_time"], int(r["remaining"]))
            )
        return found

    def postings(
        self, accounts_: Sequence[AccountKey]
    ) -> Iterator[tuple[AccountKey, Iterator[Posted]]]:
        wanted = set(accounts_)
        if not wanted:
            return
        statement = (
            select(
                ledger.c.user_id,
                ledger.c.system_key,
                ledger.c.id,
                ledger.c.type,
                ledger.c.amount,
                ledger.c.expire_time,
                ledger.c.reverses_entry_id,
            )
            .where(
                ledger.c.user_id.in_(
                    bindparam("users", sorted({u for u, _ in wanted}), expanding=True)
                ),
                ledger.c.system_key.in_(
                    bindparam("systems", sorted({s for _, s in wanted}), expanding=True)
                ),
            )
            .order_by(ledger.c.user_id, ledger.c.system_key, ledger.c.sequence)
        )
        rows = (r for r in self._stream(statement) if (r["user_id"], r["system_key"]) in wanted)
        for key, group in itertools.groupby(rows, key=lambda r: (r["user_id"], r["system_key"])):
            yield (
                key,
                (
                    Posted(
                        r["id"],
                        ENTRY_TYPES[r["type"]],
                        int(r["amount"]),
                        r["expire_time"],
                        r["reverses_entry_id"] or "",
                    )
                    for r in group
                ),
            )

    # -- levels --------------------------------------------------------------------------

    def level_moves(self, users: UserRange, system_key: str) -> list[RecordedMove]:
        entry, before = ledger.alias("entry"), ledger.alias("before")
        earned_through = (
            select(func.coalesce(func.sum(earned(before.c.amount, before.c.type)), 0))
            .where(
                before.c.user_id == entry.c.user_id,
                before.c.system_key == entry.c.system_key,
                before.c.sequence <= entry.c.sequence,
            )
            .scalar_subquery()
        )
        statement = _within(
            select(
                level_changes.c.user_id,
                level_changes.c.system_key,
                level_changes.c.entry_id,
                level_changes.c.previous_level,
                level_changes.c.new_level,
                entry.c.balance_after,
                earned_through.label("earned_through"),
            ).select_from(
                level_changes.outerjoin(
                    entry,
                    and_(
                        entry.c.user_id == level_changes.c.user_id,
                        entry.c.id == level_changes.c.entry_id,
                        entry.c.system_key == level_changes.c.system_key,
                    ),
                )
            ),
            level_changes,
            users,
            system_key,
        ).order_by(level_changes.c.user_id, level_changes.c.sequence)
        found = []
        for r in self._rows(statement):
            previous, new = r["previous_level"] or {}, r["new_level"] or {}
            present = r["balance_after"] is not None
            found.append(
                RecordedMove(
                    system_key=r["system_key"],
                    user_id=r["user_id"],
                    entry_id=r["entry_id"],
                    previous_key=previous.get("key"),
                    previous_points=_int_or_none(previous.get("points")),
                    new_key=new.get("key"),
                    new_points=_int_or_none(new.get("points")),
                    balance_after=int(r["balance_after"]) if present else None,
                    earned_through=int(r["earned_through"]) if present else None,
                )
            )
        return found

    # -- running event totals ------------------------------------------------------------

    def metric_totals(self, users: UserRange) -> dict[tuple[str, str, str], Decimal]:
        statement = _within(select(totals), totals, users, "")
        return {
            (r["user_id"], r["event_type"], r["reach"]): Decimal(r["total"])
            for r in self._rows(statement)
        }

    def event_values(self, users: UserRange) -> Iterator[tuple[str, str, str, Decimal]]:
        statement = _within(
            select(events.c.user_id, events.c.event_type, events.c.reach, events.c.value),
            events,
            users,
            "",
        ).order_by(events.c.user_id, events.c.event_type, events.c.reach)
        for r in self._stream(statement):
            yield r["user_id"], r["event_type"], r["reach"], Decimal(r["value"])

    # -- idempotency keys ----------------------------------------------------------------

    def stored_responses(
        self, users: UserRange, system_key: str
    ) -> Iterator[tuple[str, str, str, str]]:
        statement = select(
            idempotency.c.user_id, idempotency.c.scope, idempotency.c.key, idempotency.c.response
        ).where(*_of_users(idempotency, users))
        if system_key:
            statement = statement.where(idempotency.c.scope == system_key)
        statement = statement.order_by(
            idempotency.c.user_id, idempotency.c.scope, idempotency.c.key
        )
        for r in self._stream(statement):
            yield r["user_id"], r["scope"], r["key"], r["response"]

    def present(self, user_ids: Sequence[str], entry_ids: Sequence[str]) -> set[str]:
        return self._present(ledger, user_ids, entry_ids)

    def present_events(self, user_ids: Sequence[str], event_ids: Sequence[str]) -> set[str]:
        return self._present(events, user_ids, event_ids)

    def _present(self, table: Any, user_ids: Sequence[str], ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        statement = select(table.c.id).where(
            table.c.user_id.in_(bindparam("users", sorted(set(user_ids)), expanding=True)),
            table.c.id.in_(bindparam("ids", sorted(set(ids)), expanding=True)),
        )
        return {r["id"] for r in self._rows(statement)}


def _within(statement: Select[Any], table: Any, users: UserRange, system_key: str) -> Select[Any]:
    """Only the rows of these users (and of `system_key`, when given)."""
    statement = statement.where(*_of_users(table, users))
    if system_key:
        statement = statement.where(table.c.system_key == system_key)
    return statement


def _of_users(table: Any, users: UserRange) -> list[ColumnElement[bool]]:
    after, through = users
    conditions = [table.c.user_id > after]
    if through is not None:
        conditions.append(table.c.user_id <= through)
    return conditions


def _figures(row: RowMapping) -> AccountFigures:
    return AccountFigures(*(int(row[name]) for name in audit.ACCOUNT_CHECKS))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _reversal_fault(r: RowMapping) -> str:
    """Why a reversal row breaks the rules ('' when only its target's count does)."""
    if r["original_id"] is None:
        return "no such entry of this user"
    if r["original_system"] != r["system_key"]:
        return f"an entry of system {r['original_system']!r}"
    if r["original_type"] not in (AWARD, DEDUCT):
        return f"a {r['original_type']} entry, which cannot be reversed"
    if r["amount"] != -r["original_amount"]:
        return f"an entry of {r['original_amount']:+d}, not of {-r['amount']:+d}"
    return ""
