"""Users: a batch's users locked (and new ones added), and a caller's view of one user
with their account and a page of entries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.sql import Executable

from server.domain.errors import TransientStoreError
from server.domain.model import EntryType, User, Welcomed
from server.services.ports import KeyScope, LockedUsers, Standing, UserView, ViewAsk
from server.store.execution import Params, Row
from server.store.repositories.base import Repository, config_version, rows_json
from server.store.repositories.events import totals_of, totals_params
from server.store.repositories.ledger import (
    by_page_shape,
    entry_of,
    joined_account,
    page_of,
    page_params,
    standing_of,
    standing_params,
)
from server.store.statements.tables import RowsInsert


class SqlUserRepository(Repository):
    # Under Citus (`shards` given) a FOR UPDATE must stay on one shard: users are locked
    # one statement a shard, by shard then id (one order for every batch, so batches
    # sharing users still never deadlock).

    def get(self, user_id: str) -> User | None:
        row = self.db.first(self.sql.users.user_get, {"id": user_id})
        return _user(row) if row else None

    def view(
        self,
        user_id: str,
        system_key: str,
        types: frozenset[EntryType],
        before_sequence: int | None,
        limit: int,
    ) -> UserView | None:
        params = page_params(system_key, types, before_sequence, limit)
        if not self.sql.set_based:  # SQLite: no LATERAL; its read transaction is a snapshot
            row = self.db.first(self.sql.ledger.user_and_account, {**params, "id": user_id})
            if row is None:
                return None
            entries = (
                page_of(self.db, self.sql, user_id, system_key, types, before_sequence, limit)
                if limit
                else []
            )
            version = config_version(self.db, self.sql)
            return UserView(_user(row), joined_account(row), entries, version)
        statement = by_page_shape(self.sql, "view", types, before_sequence)
        rows = self.db.rows(statement, {**params, "id": user_id})
        return _view_of(rows) if rows else None

    def views(self, asks: Sequence[ViewAsk]) -> list[UserView | None]:
        together = self.sql.ledger.views_first
        views: list[UserView | None] = [None] * len(asks)
        first_pages: list[int] = []  # asks that one statement reads together
        for i, a in enumerate(asks):
            if together is not None and a.first_page:
                first_pages.append(i)
            else:
                views[i] = self.view(a.user_id, a.system_key, a.types, a.before_sequence, a.limit)
        if together is None or not first_pages:
            return views
        params = rows_json(
            [
                {"ask": i, "id": a.user_id, "system_key": a.system_key, "lim": a.limit}
                for i, a in ((i, asks[i]) for i in first_pages)
            ]
        )
        rows_of: dict[int, list[Row]] = {}
        for row in self.db.rows(together, params):
            rows_of.setdefault(row["ask"], []).append(row)
        for i in first_pages:
            rows = rows_of.get(i)
            views[i] = _view_of(rows) if rows else None  # no rows: no such user
        return views

    def lock(
        self,
        user_ids: Sequence[str],
        create: Mapping[str, User],
        keys: Sequence[KeyScope] = (),
        metrics: Sequence[str] = (),
    ) -> LockedUsers:
        ids = sorted({*user_ids, *create})
        rows, standing = self._locked(ids, keys, metrics)
        found = {row["id"]: _user(row) for row in rows}
        version: int | None = rows[0]["config"] if rows else None
        created: set[str] = set()
        new = [create[i] for i in ids if i in create and i not in found]
        if new:
            values = [_user_values(u) for u in new]
            add = self.sql.users.user_add
            if isinstance(add, RowsInsert):  # Citus
                inserted = self._write_user_rows(add, values, returning=True)
            elif self.sql.json_writes:  # with the version, when no lock said it: one round trip
                reads: list[tuple[Executable, Params]] = [(add, rows_json(values))]
                if version is None:
                    reads.append((self.sql.systems.config_version, {}))
                inserted, *said = self.db.rows_together(reads)
                if said:
                    version = _version(said[0])
            else:
                inserted = [
                    r for rs in self.db.rows_together([(add, v) for v in values]) for r in rs
                ]
            created = {row["id"] for row in inserted}  # new rows are ours (locked) until commit
            if len(created) < len(new):
                # Another writer added some of them meanwhile. Locking those now, after
                # the rows this transaction holds already, would take locks out of the
                # one order every batch keeps, and two such batches deadlock: run the
                # whole unit of work again instead, which finds them all and locks them
                # in order.
                raise TransientStoreError("a user was added by another writer meanwhile")
            found.update((u.id, u) for u in new)
        if version is None:
            version = config_version(self.db, self.sql)
        return LockedUsers(found, frozenset(created), version, standing)

    def _locked(
        self, ids: list[str], keys: Sequence[KeyScope], metrics: Sequence[str]
    ) -> tuple[list[Row], Standing]:
        """Lock these users' rows (sorted ids) and return them, with the configuration's
        version, and their standing, read by statements sent with the lock's (one round
        trip) and run after it: each its own snapshot, which sees what the lock waited
        for."""
        parts = self._shard_parts(ids)
        if not parts:
            return [], Standing()
        # Citus: a lock statement a shard, run in this order
        reads: list[tuple[Executable, Params]] = [
            (self.sql.users.users_lock, {"ids": part}) for part in parts
        ]
        reads.append((self.sql.ledger.standing, standing_params(ids, keys)))
        if metrics:
            reads.append((self.sql.events.totals_of, totals_params(ids, metrics)))
        read = self.db.rows_together(reads)
        totals = totals_of(read.pop()) if metrics else {}
        standing_rows = read.pop()
        rows = [row for part in read for row in part]
        standing = standing_of(self.db, self.sql, standing_rows)
        standing.totals.update(totals)
        return rows, standing

    def _shard_parts(self, ids: Sequence[str]) -> list[list[str]]:
        """Sorted ids in one part, or under Citus a part per shard (by shard, then id)."""
        ordered = sorted(ids)
        if self.shards is None:
            return [ordered] if ordered else []
        parts: dict[int, list[str]] = {}
        for i in ordered:
            parts.setdefault(self.shards.index(i), []).append(i)
        return [parts[index] for index in sorted(parts)]

    def update(self, users: Sequence[User]) -> None:
        if users:
            rows = [{"match_id": u.id, **_user_values(u)} for u in users]
            self._write_user_rows(self.sql.users.user_update, rows)

    def remove(self, user_ids: Sequence[str]) -> None:
        # Under Citus one statement a shard, each routed to it, as the lock is.
        for ids in self._shard_parts(user_ids):
            self.db.run(self.sql.users.users_remove, {"ids": ids})

    def read(
        self, user_ids: Sequence[str], keys: Sequence[KeyScope] = (), metrics: Sequence[str] = ()
    ) -> LockedUsers:
        ids = sorted(set(user_ids))
        reads: list[tuple[Executable, Params]] = [
            (self.sql.users.users_of, {"ids": ids}),
            (self.sql.ledger.standing, standing_params(ids, keys)),
            (self.sql.systems.config_version, {}),
        ]
        if metrics:
            reads.append((self.sql.events.totals_of, totals_params(ids, metrics)))
        found, standing, version, *totals = self.db.rows_together(reads)  # one round trip
        users = {row["id"]: _user(row) for row in found}
        read = standing_of(self.db, self.sql, standing)
        if totals:
            read.totals.update(totals_of(totals[0]))
        return LockedUsers(users, frozenset(), _version(version), read)


def _version(rows: list[Row]) -> int:
    """The configuration's version, from its statement's rows (systems: config_version)."""
    return int(next(iter(rows[0].values())))


def _user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "display_name": user.display_name,
        "email": user.email,
        "attributes": user.attributes,
        "create_time": user.create_time,
        "welcomed": user.welcomed.name,
    }


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        display_name=row["display_name"],
        email=row["email"],
        attributes=dict(row["attributes"] or {}),
        create_time=row["create_time"],
        welcomed=Welcomed.named(row["welcomed"]),
    )


def _view_of(rows: list[Row]) -> UserView:
    """A view from its statement's rows: one an entry of the page (or one, with no entry,
    when the page is empty), each with the user, the account and the version."""
    first = rows[0]
    entries = [entry_of(r, prefix="entry_") for r in rows if r["entry_id"] is not None]
    return UserView(_user(first), joined_account(first), entries, first["config"])
