"""The ledger: accounts and their credit lots, entries, and the reads of
a user's standing (a batch's, and a caller's view with a page of entries)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Integer,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    column,
    delete,
    func,
    literal,
    literal_column,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects import postgresql

from server.store.models import LEDGER_SEQUENCE
from server.store.statements.tables import (
    Dialect,
    RowsInsert,
    accounts,
    config_version,
    fixed_plan,
    from_json,
    idempotency,
    ledger,
    lots,
    numbers,
    users,
)

ACCOUNT_TOTALS = (
    "balance",
    "total_earned",
    "total_spent",
    "total_expired",
    "award_entries",
    "deduct_entries",
    "expire_entries",
    "reversal_entries",
    "last_earned_time",
    "next_expire_time",
    "interval_marks",
    "next_accrual_time",
    "accrual_version",
    "update_time",
)


class LedgerStatements:
    def __init__(self, d: Dialect) -> None:
        insert, one_of = d.insert, d.one_of
        # What a batch reads once its users are locked (never in the locking statement:
        # a FOR UPDATE that waits re-reads only the locked rows, and would join a stale
        # account). Every table is keyed by user, so under Citus each is a shard's read.
        # A batch's accounts and what its keys remember come back in one statement: rows
        # of accounts (kind "a") and of keys (kind "k"), each padded with the other's
        # columns as NULLs.
        key_columns = [idempotency.c[n] for n in ("scope", "key", "request_hash", "response")]
        account_columns = [c for c in accounts.c if c.name != "user_id"]

        def nulls(columns: list[Any], prefix: str) -> list[Any]:
            return [cast(null(), c.type).label(prefix + c.name) for c in columns]

        standing = union_all(
            select(
                literal("a").label("kind"),
                accounts.c.user_id,
                *(c.label("a_" + c.name) for c in account_columns),
                *nulls(key_columns, "k_"),
            ).where(one_of(accounts.c.user_id, "user_ids")),
            select(
                literal("k"),
                idempotency.c.user_id,
                *nulls(account_columns, "a_"),
                *(c.label("k_" + c.name) for c in key_columns),
            ).where(  # each column of the key's index: a user's own keys are many
                one_of(idempotency.c.user_id, "user_ids"),
                one_of(idempotency.c.scope, "scopes"),
                one_of(idempotency.c.key, "keys"),
            ),
        )
        # Citus plans a UNION ALL of two shards' reads at the top as two multi-shard
        # reads merged on the coordinator (intermediate results); in a subquery, with the
        # user at one position in both, it runs the whole union on each shard.
        self.standing: Executable = select(standing.subquery("standing")) if d.citus else standing
        self.lots_of = select(lots).where(one_of(lots.c.user_id, "user_ids"))
        self.reversals_of = select(ledger.c.user_id, ledger.c.reverses_entry_id, ledger.c.id).where(
            one_of(ledger.c.user_id, "user_ids"), one_of(ledger.c.reverses_entry_id, "entry_ids")
        )

        account_of_user = and_(
            accounts.c.user_id == users.c.id, accounts.c.system_key == bindparam("system_key")
        )
        # A read of a user's standing: the user (to tell "unknown user" from "no points
        # yet") and their account in the system, in one statement.
        self.user_and_account = (
            select(users, *(c.label(f"account_{c.name}") for c in accounts.c))
            .select_from(users.outerjoin(accounts, account_of_user))
            .where(users.c.id == bindparam("id"))
        )

        # accounts and their credit lots (PostgreSQL: set-based, see Dialect.set_based)
        account_insert = insert(accounts)
        if d.json_writes:
            names = [c.name for c in accounts.c]
            account_insert = insert(accounts).from_select(names, from_json(accounts, names))

        # New values come through `excluded`, never as expressions such as now():
        # Citus refuses those in ON CONFLICT DO UPDATE.
        def account_upsert(insert: Any) -> Any:
            return insert.on_conflict_do_update(
                index_elements=["user_id", "system_key"],
                set_={name: insert.excluded[name] for name in ACCOUNT_TOTALS},
            )

        self.account_save: Executable | RowsInsert = account_upsert(account_insert)
        if d.json_writes:
            self.account_save = fixed_plan(self.account_save)
        if d.citus:
            self.account_save = RowsInsert(accounts, [c.name for c in accounts.c], account_upsert)
        # The systems a user has an account in (what a key limited to some may learn).
        self.account_systems = select(accounts.c.system_key).where(
            accounts.c.user_id == bindparam("user_id")
        )
        self.accounts_due = (
            select(accounts.c.system_key, accounts.c.user_id)
            .where(accounts.c.next_expire_time <= bindparam("now"))
            .order_by(accounts.c.next_expire_time)
            .limit(bindparam("limit"))
        )
        # The accrual sweep: accounts with a firing due (by the partial index), and, once
        # after a trigger of the system changed, those worked out before (a pass over the
        # system's accounts, in keyset pages).
        self.accounts_accrual_due = (
            select(accounts.c.user_id)
            .where(
                accounts.c.system_key == bindparam("system_key"),
                accounts.c.next_accrual_time.is_not(None),
                accounts.c.next_accrual_time <= bindparam("now"),
            )
            .order_by(accounts.c.next_accrual_time)
            .limit(bindparam("limit"))
        )
        self.accounts_accrual_stale = (
            select(accounts.c.user_id)
            .where(
                accounts.c.system_key == bindparam("system_key"),
                accounts.c.user_id > bindparam("after"),
                accounts.c.accrual_version < bindparam("epoch"),
            )
            .order_by(accounts.c.user_id)
            .limit(bindparam("limit"))
        )
        lot_insert = insert(lots)
        self.lot_save = lot_insert.on_conflict_do_update(
            index_elements=["user_id", "system_key", "entry_id"],
            set_={"remaining": lot_insert.excluded.remaining},
        )
        self.lot_delete = delete(lots).where(
            lots.c.user_id == bindparam("user_id"),
            lots.c.system_key == bindparam("system_key"),
            lots.c.entry_id == bindparam("entry_id"),
        )

        # the ledger: one insert numbers a batch's entries in order and returns the numbers
        # (PostgreSQL: nextval per row, in the order of the arrays). SQLite runs one writer
        # at a time (BEGIN IMMEDIATE), so numbering from max + 1 is safe there.
        # Citus: the batch's numbers taken first, in its order, then a statement a shard.
        self.entry_add: Executable | RowsInsert
        names = [c.name for c in ledger.c if c.name != "sequence"]
        if d.json_writes:
            numbered = from_json(ledger, names).add_columns(LEDGER_SEQUENCE.next_value())
            self.entry_add = fixed_plan(
                insert(ledger)
                .from_select([*names, "sequence"], numbered)
                .returning(ledger.c.id, ledger.c.sequence)
            )
        elif d.citus:
            self.entry_add = RowsInsert(ledger, [c.name for c in ledger.c], lambda i: i)
            self.sequence_take = numbers(LEDGER_SEQUENCE)
        else:
            self.entry_add = insert(ledger)
            self.sequence_next = select(
                func.coalesce(func.max(ledger.c.sequence), 0) + literal_column("1")
            )
        # An entry of a user (one shard under Citus), or by id alone (the index on id;
        # under Citus every shard, in one read-only statement).
        self.entry_get = select(ledger).where(
            ledger.c.user_id == bindparam("user_id"), ledger.c.id == bindparam("id")
        )
        self.entry_by_id = select(ledger).where(ledger.c.id == bindparam("id"))
        of_account = (
            ledger.c.user_id == bindparam("user_id"),
            ledger.c.system_key == bindparam("system_key"),
        )
        of_types = one_of(ledger.c.type, "types")
        newest_first = ledger.c.sequence.desc()
        before = ledger.c.sequence < bindparam("before")
        self.page_first = (
            select(ledger).where(*of_account).order_by(newest_first).limit(bindparam("limit"))
        )
        self.page_before = self.page_first.where(before)
        self.page_typed_first = self.page_first.where(of_types)
        self.page_typed_before = self.page_first.where(of_types, before)

        # A read of a user's standing in one system: the user (to tell "unknown user" from
        # "no points yet"), their account, a page of their newest entries (a LATERAL join:
        # one row per entry, or one with no entry) and the configuration's version, in
        # one statement, and so one snapshot (PostgreSQL; SQLite reads the page apart).
        def user_view(*page_filters: ColumnElement[bool]) -> Select[Any]:
            page = (
                select(ledger)
                .where(
                    # the bound id, not users.id: so the planner knows whose history it
                    # reads (a long one is read by index, newest first, not sorted whole)
                    ledger.c.user_id == bindparam("id"),
                    ledger.c.system_key == bindparam("system_key"),
                    *page_filters,
                )
                .order_by(newest_first)
                .limit(bindparam("limit"))
                .lateral("page")
            )
            return (
                select(
                    users,
                    *(c.label(f"account_{c.name}") for c in accounts.c),
                    *(c.label(f"entry_{c.name}") for c in page.c),
                    config_version.scalar_subquery().label("config"),
                )
                .select_from(users.outerjoin(accounts, account_of_user).outerjoin(page, true()))
                .where(users.c.id == bindparam("id"))
                .order_by(page.c.sequence.desc())
            )

        self.view_first = user_view()
        # Many users' views (the newest entries, untyped) in one statement: the asks bound
        # as one JSON array (`rows`: ask, id, system_key, lim), each ask's user, account and
        # page by LATERAL. Its plan has no choice in it: each LATERAL is an index probe
        # (LIMIT keeps the planner from making a join of it), and the asks are estimated
        # at the same count whatever their number, so the prepared plan is kept; unnest
        # of arrays, estimated by their length, was planned again on every call. Only
        # where one statement reads them faster than one each: one PostgreSQL (under
        # Citus it would span shards).
        self.views_first: Executable | None = None
        if d.json_writes:
            asks = (
                func.jsonb_to_recordset(cast(bindparam("rows", type_=Text), postgresql.JSONB))
                .table_valued(
                    column("ask", Integer),
                    column("id", String),
                    column("system_key", String),
                    column("lim", Integer),
                )
                .render_derived(name="asks", with_types=True)
            )
            one: ColumnElement[int] = literal_column("1")
            found = select(users).where(users.c.id == asks.c.id).limit(one).lateral("found")
            account = (
                select(accounts)
                .where(accounts.c.user_id == asks.c.id, accounts.c.system_key == asks.c.system_key)
                .limit(one)
                .lateral("account")
            )
            page = (
                select(ledger)
                .where(ledger.c.user_id == asks.c.id, ledger.c.system_key == asks.c.system_key)
                .order_by(newest_first)
                .limit(asks.c.lim)
                .lateral("page")
            )
            self.views_first = (
                select(
                    asks.c.ask,
                    *found.c,
                    *(c.label(f"account_{c.name}") for c in account.c),
                    *(c.label(f"entry_{c.name}") for c in page.c),
                    config_version.scalar_subquery().label("config"),
                )
                .select_from(
                    asks.join(found, true()).outerjoin(account, true()).outerjoin(page, true())
                )
                .order_by(asks.c.ask, page.c.sequence.desc())
            )
        self.view_before = user_view(before)
        self.view_typed_first = user_view(of_types)
        self.view_typed_before = user_view(of_types, before)
        self.chunk = (
            select(ledger)
            .where(
                *of_account,
                ledger.c.sequence > bindparam("after"),
                ledger.c.sequence <= bindparam("through"),
                ledger.c.create_time >= bindparam("start_time"),
                ledger.c.create_time < bindparam("end_time"),
            )
            .order_by(ledger.c.sequence)
            .limit(bindparam("limit"))
        )

        # The ledger's live feed (services/held/feed.py): its entries in sequence order,
        # after a cursor and up to a bound below which nothing can still commit.
        after_cursor = (
            ledger.c.sequence > bindparam("after"),
            ledger.c.sequence <= bindparam("through"),
        )
        self.ledger_feed = (
            select(ledger)
            .where(*after_cursor)
            .order_by(ledger.c.sequence)
            .limit(bindparam("limit"))
        )
        self.ledger_feed_of_system = self.ledger_feed.where(
            ledger.c.system_key == bindparam("system_key")
        )
