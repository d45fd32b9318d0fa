"""Every SQL statement the repositories run, built once per dialect.

Building a SQLAlchemy statement (coercing each value, computing its cache key) costs far
more than running a prebuilt one with parameters, so the hot path only executes these.
The ON CONFLICT forms differ per dialect in import only (PostgreSQL vs SQLite).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Executable,
    Integer,
    Select,
    String,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    column,
    delete,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import table as sa_table
from sqlalchemy.sql.elements import ColumnClause

from server.store.models import (
    LEDGER_SEQUENCE,
    LEVEL_CHANGE_SEQUENCE,
    AccountRow,
    ApiKeyRow,
    BoostRow,
    ConfigVersionRow,
    CreditLotRow,
    EntryOwnerRow,
    EventRow,
    IdempotencyRow,
    LedgerEntryRow,
    LevelChangeRow,
    LevelRow,
    MetricTotalRow,
    SystemRow,
    TriggerRow,
    UserRow,
)

# PostgreSQL's view of its sessions (the live feeds' watermark reads it).
activity = sa_table(
    "pg_stat_activity",
    column("pid", Integer),
    column("datname", String),
    column("backend_xid", String),
)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


systems = _table(SystemRow)
users = _table(UserRow)
accounts = _table(AccountRow)
lots = _table(CreditLotRow)
ledger = _table(LedgerEntryRow)
owners = _table(EntryOwnerRow)
idempotency = _table(IdempotencyRow)
config = _table(ConfigVersionRow)
triggers = _table(TriggerRow)
metric_totals = _table(MetricTotalRow)
events = _table(EventRow)
levels = _table(LevelRow)
boosts = _table(BoostRow)
level_changes = _table(LevelChangeRow)
api_keys = _table(ApiKeyRow)

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


def json_rows(table: Table, names: list[str]) -> Any:
    """The rows of a JSON array bound as `rows` (one object per row, keyed by column name)
    as a table: a batch's rows as one set, so that one statement writes them all, its text
    (and so its prepared plan) the same whatever the batch's size, and its one parameter
    made by a single json.dumps (PostgreSQL)."""
    return (
        func.jsonb_to_recordset(cast(bindparam("rows", type_=Text), postgresql.JSONB))
        .table_valued(*(column(n, _plain(table.c[n].type)) for n in names))
        .render_derived(name="batch", with_types=True)
    )


def from_json(table: Table, names: list[str]) -> Select[Any]:
    """SELECT of `names` from json_rows."""
    rows = json_rows(table, names)
    return select(*(rows.c[n] for n in names))


def _plain(type_: Any) -> Any:
    """The column's type as SQL knows it (a TypeDecorator's own implementation)."""
    return getattr(type_, "impl", type_)


# What UpdateSystem writes (statements with explicit values compile to one text).
SYSTEM_FIELDS = ("name", "description", "badge_url", "max_points", "level_basis", "update_time")


class Statements:
    """The statements of one dialect."""

    def __init__(self, dialect: str) -> None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.dialect = dialect

        def one_of(column: ColumnClause[Any] | Any, name: str) -> ColumnElement[bool]:
            """`column` is one of the list bound as `name`: `= ANY(array)` on PostgreSQL
            (one statement text, and so one prepared plan, whatever the list's length),
            an expanding IN on SQLite."""
            if dialect == "postgresql":
                return column == any_(bindparam(name, type_=postgresql.ARRAY(String)))
            return column.in_(bindparam(name, expanding=True))

        # points systems
        self.system_get = select(systems).where(systems.c.key == bindparam("key"))
        self.system_lock = self.system_get.with_for_update()
        self.system_add = (
            insert(systems).on_conflict_do_nothing(index_elements=["key"]).returning(systems.c.key)
        )
        self.system_update = (
            update(systems)
            .where(systems.c.key == bindparam("match_key"))
            .values({n: bindparam(n) for n in SYSTEM_FIELDS})
        )
        self.systems_all = select(systems).order_by(systems.c.key)
        self.config_version = select(config.c.version).where(config.c.id == 1)
        self.config_bump = (
            update(config)
            .where(config.c.id == 1)
            .values(version=config.c.version + 1)
            .returning(config.c.version)
        )
        self.systems_after = (
            select(systems)
            .where(systems.c.key > bindparam("after"))
            .order_by(systems.c.key)
            .limit(bindparam("limit"))
        )

        # API keys (read whole into each process's key ring; never on the hot path), and
        # one key by its hash (unique) or id (primary key), for a key the ring lacks
        self.api_keys_all = select(api_keys).order_by(api_keys.c.create_time, api_keys.c.id)
        self.api_key_by_hash = select(api_keys).where(api_keys.c.key_hash == bindparam("key_hash"))
        self.api_key_by_id = select(api_keys).where(api_keys.c.id == bindparam("id"))
        self.api_key_add = insert(api_keys)
        self.api_key_revoke = (
            update(api_keys)
            .where(api_keys.c.id == bindparam("match_id"), api_keys.c.revoke_time.is_(None))
            .values(revoke_time=bindparam("revoke_time"))
            .returning(api_keys.c.id)
        )

        # users
        self.user_get = select(users).where(users.c.id == bindparam("id"))
        self.set_based = dialect == "postgresql"  # see "accounts and their credit lots"
        user_insert = insert(users)
        self.user_update = update(users).where(users.c.id == bindparam("match_id"))
        if self.set_based:
            names = [c.name for c in users.c]
            user_insert = insert(users).from_select(names, from_json(users, names))
            changed = json_rows(users, ["id", "display_name", "email", "attributes"])
            self.user_update = (
                update(users)
                .where(users.c.id == changed.c.id)
                .values(
                    display_name=changed.c.display_name,
                    email=changed.c.email,
                    attributes=changed.c.attributes,
                )
            )
        self.user_add = user_insert.on_conflict_do_nothing(index_elements=["id"]).returning(
            users.c.id
        )

        # The users of a batch of changes, locked in one sorted order (so that batches
        # sharing users never deadlock), or read without a lock for a dry run. Under Citus,
        # FOR UPDATE over several users' rows is refused: there a batch locks one user at
        # a time in the same order (SqlUserRepository._locked).
        # The lock also returns the configuration's version, so a process learns of a
        # configuration change from the statement it runs anyway.
        self.users_of = select(users).where(one_of(users.c.id, "ids")).order_by(users.c.id)
        self.users_lock = self.users_of.add_columns(
            self.config_version.scalar_subquery().label("config")
        ).with_for_update(of=users)

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

        self.standing = union_all(
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
            ).where(one_of(idempotency.c.user_id, "user_ids"), one_of(idempotency.c.key, "keys")),
        )
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

        # accounts and their credit lots
        # PostgreSQL writes a batch's rows with one set-based statement per table (rows
        # bound as one JSON array, see json_rows); SQLite, in-process, runs executemany.
        account_insert = insert(accounts)
        if self.set_based:
            names = [c.name for c in accounts.c]
            account_insert = insert(accounts).from_select(names, from_json(accounts, names))
        # New values come through `excluded`, never as expressions such as now():
        # Citus refuses those in ON CONFLICT DO UPDATE.
        self.account_save = account_insert.on_conflict_do_update(
            index_elements=["user_id", "system_key"],
            set_={name: account_insert.excluded[name] for name in ACCOUNT_TOTALS},
        )
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
        self.entry_add: Executable
        if self.set_based:
            names = [c.name for c in ledger.c if c.name != "sequence"]
            numbered = from_json(ledger, names).add_columns(LEDGER_SEQUENCE.next_value())
            self.entry_add = (
                insert(ledger)
                .from_select([*names, "sequence"], numbered)
                .returning(ledger.c.id, ledger.c.sequence)
            )
        else:
            self.entry_add = insert(ledger)
            self.sequence_next = select(
                func.coalesce(func.max(ledger.c.sequence), 0) + literal_column("1")
            )
        # An entry by id alone: its owner first (one shard under Citus, where the owners
        # are distributed by entry id), then the entry on its user's shard.
        owner_insert = insert(owners)
        if self.set_based:
            names = [c.name for c in owners.c]
            owner_insert = insert(owners).from_select(names, from_json(owners, names))
        self.owner_add = owner_insert
        self.owner_of = select(owners.c.user_id).where(owners.c.entry_id == bindparam("id"))
        self.entry_get = select(ledger).where(
            ledger.c.user_id == bindparam("user_id"), ledger.c.id == bindparam("id")
        )
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
                    self.config_version.scalar_subquery().label("config"),
                )
                .select_from(users.outerjoin(accounts, account_of_user).outerjoin(page, true()))
                .where(users.c.id == bindparam("id"))
                .order_by(page.c.sequence.desc())
            )

        self.view_first = user_view()
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

        # triggers (configuration: read whole, written one at a time)
        self.triggers_all = select(triggers).order_by(triggers.c.create_time, triggers.c.id)
        self.trigger_lock = (
            select(triggers).where(triggers.c.id == bindparam("id")).with_for_update()
        )
        # (written as one-row JSON sets on PostgreSQL: how its statements bind JSON)
        self.trigger_add = insert(triggers)
        self.trigger_update = (
            update(triggers)
            .where(triggers.c.id == bindparam("match_id"))
            .values({c.name: bindparam(c.name) for c in triggers.c if c.name != "id"})
        )
        if self.set_based:
            names = [c.name for c in triggers.c]
            self.trigger_add = insert(triggers).from_select(names, from_json(triggers, names))
            changed = json_rows(triggers, names)
            self.trigger_update = (
                update(triggers)
                .where(triggers.c.id == changed.c.id)
                .values({n: changed.c[n] for n in names if n != "id"})
            )

        # running event totals, and the events recorded
        self.totals_of = select(metric_totals).where(
            one_of(metric_totals.c.user_id, "user_ids"),
            one_of(metric_totals.c.event_type, "event_types"),
        )
        total_insert = insert(metric_totals)
        event_insert = insert(events)
        if self.set_based:
            names = [c.name for c in metric_totals.c]
            total_insert = insert(metric_totals).from_select(names, from_json(metric_totals, names))
            names = [c.name for c in events.c]
            event_insert = insert(events).from_select(names, from_json(events, names))
        self.total_save = total_insert.on_conflict_do_update(
            index_elements=["user_id", "event_type", "reach"],
            set_={
                "total": total_insert.excluded.total,
                "update_time": total_insert.excluded.update_time,
            },
        )
        self.event_add = event_insert
        in_window = (
            one_of(events.c.event_type, "event_types"),
            events.c.create_time >= bindparam("start_time"),
            events.c.create_time < bindparam("end_time"),
        )
        self.events_window = (
            select(events, users.c.attributes.label("user_attributes"))
            .select_from(events.join(users, users.c.id == events.c.user_id))
            .where(*in_window)
            .order_by(events.c.create_time, events.c.id)
            .limit(bindparam("limit"))
        )
        after = (events.c.create_time > bindparam("after_time")) | (
            (events.c.create_time == bindparam("after_time"))
            & (events.c.id > bindparam("after_id"))
        )
        self.events_window_after = self.events_window.where(after)

        # levels (configuration) and level changes (numbered like the ledger)
        self.levels_all = select(levels).order_by(levels.c.system_key, levels.c.points)
        self.level_add = insert(levels)
        self.level_update = (
            update(levels)
            .where(levels.c.id == bindparam("match_id"))
            .values({c.name: bindparam(c.name) for c in levels.c if c.name != "id"})
        )
        self.level_delete = delete(levels).where(levels.c.id == bindparam("id"))
        self.level_change_add: Executable
        if self.set_based:
            names = [c.name for c in level_changes.c if c.name != "sequence"]
            numbered = from_json(level_changes, names).add_columns(
                LEVEL_CHANGE_SEQUENCE.next_value()
            )
            self.level_change_add = (
                insert(level_changes)
                .from_select([*names, "sequence"], numbered)
                .returning(level_changes.c.entry_id, level_changes.c.sequence)
            )
        else:
            self.level_change_add = insert(level_changes)
            self.level_change_next = select(
                func.coalesce(func.max(level_changes.c.sequence), 0) + literal_column("1")
            )
        # How many of a system's accounts have their basis value in each range between
        # consecutive thresholds (index ranges over (system_key, balance) or (system_key,
        # total_earned)). PostgreSQL: one pass, width_bucket numbering the ranges (0 below
        # the first threshold); SQLite: one range count per level.
        self.level_counts: dict[str, Select[Any]] = {}
        for basis in ("balance", "total_earned"):
            value = accounts.c[basis]
            of_system = accounts.c.system_key == bindparam("system_key")
            if self.set_based:
                thresholds = bindparam("thresholds", type_=postgresql.ARRAY(BigInteger))
                bucket = func.width_bucket(value, thresholds).label("bucket")
                self.level_counts[basis] = (
                    select(bucket, func.count().label("users")).where(of_system).group_by(bucket)
                )
            else:
                self.level_counts[basis] = select(func.count()).where(
                    of_system, value >= bindparam("low"), value < bindparam("high")
                )

        # boosts: the live ones (for the configuration), pages of a system's or a user's
        self.boosts_live = (
            select(boosts)
            .where(
                boosts.c.archive_time.is_(None),
                boosts.c.end_time.is_(None) | (boosts.c.end_time > bindparam("now")),
            )
            .order_by(boosts.c.create_time, boosts.c.id)
        )
        # How many live boosts some users have in a system (CreateBoosts' bound).
        self.boosts_live_counts = (
            select(boosts.c.user_id, func.count().label("live"))
            .where(
                boosts.c.system_key == bindparam("system_key"),
                one_of(boosts.c.user_id, "user_ids"),
                boosts.c.archive_time.is_(None),
                boosts.c.end_time.is_(None) | (boosts.c.end_time > bindparam("now")),
            )
            .group_by(boosts.c.user_id)
        )
        self.boost_get = select(boosts).where(boosts.c.id == bindparam("id"))
        self.boost_lock = self.boost_get.with_for_update()
        self.boost_add = insert(boosts)
        if self.set_based:
            names = [c.name for c in boosts.c]
            self.boost_add = insert(boosts).from_select(names, from_json(boosts, names))
        self.boost_archive = (
            update(boosts)
            .where(boosts.c.id == bindparam("match_id"))
            .values(archive_time=bindparam("archive_time"))
        )
        # The live feeds (services/held/feed.py): each feed's items, in sequence order, after a
        # cursor and up to a bound below which nothing can still commit; and what a
        # watermark is made of, per feed, by the name services/held/feed.py gives it.
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
        self.level_changes_feed = (
            select(level_changes)
            .where(
                level_changes.c.sequence > bindparam("after"),
                level_changes.c.sequence <= bindparam("through"),
            )
            .order_by(level_changes.c.sequence)
            .limit(bindparam("limit"))
        )
        self.level_changes_feed_of_system = self.level_changes_feed.where(
            level_changes.c.system_key == bindparam("system_key")
        )
        self.feed_last = {
            "ledger": _feed_last(dialect, LEDGER_SEQUENCE.name, ledger.c.sequence),
            "level_changes": _feed_last(
                dialect, LEVEL_CHANGE_SEQUENCE.name, level_changes.c.sequence
            ),
        }
        # The transactions of this database that hold a transaction id now (they may hold
        # numbers not yet committed), as "pid:xid", and which of a list still run. Other
        # databases of the cluster cannot write here, so they are never waited for.
        writer = func.concat(
            cast(activity.c.pid, Text), literal(":"), cast(activity.c.backend_xid, Text)
        )
        self.feed_writers = select(func.array_agg(writer).label("writers")).where(
            activity.c.datname == func.current_database(),
            activity.c.backend_xid.is_not(None),
            activity.c.pid != func.pg_backend_pid(),
        )
        self.feed_running = select(func.array_agg(writer).label("running")).where(
            writer == any_(bindparam("writers", type_=postgresql.ARRAY(String)))
        )

        # idempotency keys
        self.key_add = insert(idempotency)
        if self.set_based:
            names = [c.name for c in idempotency.c]
            self.key_add = insert(idempotency).from_select(names, from_json(idempotency, names))


BOOST_STATUS_WHERE = {
    "ARCHIVED": boosts.c.archive_time.is_not(None),
    "SCHEDULED": boosts.c.archive_time.is_(None) & (boosts.c.start_time > bindparam("now")),
    "ENDED": boosts.c.archive_time.is_(None) & (boosts.c.end_time <= bindparam("now")),
    "ACTIVE": boosts.c.archive_time.is_(None)
    & (boosts.c.start_time <= bindparam("now"))
    & (boosts.c.end_time.is_(None) | (boosts.c.end_time > bindparam("now"))),
}


@functools.cache
def boosts_page(*, user: bool, cursor: bool, statuses: frozenset[str]) -> Select[Any]:
    """A page of a system's boosts (or one user's), newest first, of these derived
    statuses (all when empty): one prebuilt statement per shape, made on first use."""
    filters: list[ColumnElement[bool]] = [boosts.c.system_key == bindparam("system_key")]
    if user:
        filters.append(boosts.c.user_id == bindparam("user_id"))
    if cursor:
        filters.append(
            (boosts.c.create_time < bindparam("before_time"))
            | (
                (boosts.c.create_time == bindparam("before_time"))
                & (boosts.c.id < bindparam("before_id"))
            )
        )
    if statuses:
        filters.append(or_(*(BOOST_STATUS_WHERE[status] for status in sorted(statuses))))
    return (
        select(boosts)
        .where(*filters)
        .order_by(boosts.c.create_time.desc(), boosts.c.id.desc())
        .limit(bindparam("limit"))
    )


def _feed_last(dialect: str, sequence: str, numbered: ColumnElement[Any]) -> Executable:
    """The highest number a feed has handed out: on PostgreSQL the sequence's last
    value, whether or not its transaction has committed; on SQLite, which numbers from
    the highest committed number under its one writer lock, that number."""
    if dialect == "postgresql":
        last = func.pg_sequence_last_value(cast(literal(sequence), postgresql.REGCLASS))
    else:
        last = func.max(numbered)
    return select(func.coalesce(last, 0).label("last"))


@functools.cache
def statements_for(dialect: str) -> Statements:
    return Statements(dialect)
