"""Users: a batch's users locked (and new ones added), and a caller's view of one user
with their account and a page of entries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.sql import Executable

from server.domain.model import EntryType, User, Welcomed
from server.services.ports import LockedUsers, UserView
from server.store.execution import Row
from server.store.repositories.base import Repository, config_version, rows_json
from server.store.repositories.ledger import (
    by_page_shape,
    entry_of,
    joined_account,
    page_of,
    page_params,
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
        if not rows:
            return None
        first = rows[0]
        entries = [entry_of(r, prefix="entry_") for r in rows if r["entry_id"] is not None]
        return UserView(_user(first), joined_account(first), entries, first["config"])

    def lock(self, user_ids: Sequence[str], create: Mapping[str, User]) -> LockedUsers:
        ids = sorted({*user_ids, *create})
        rows = self._locked(ids)
        found = {row["id"]: _user(row) for row in rows}
        version = rows[0]["config"] if rows else config_version(self.db, self.sql)
        created: set[str] = set()
        new = [create[i] for i in ids if i in create and i not in found]
        if new:
            values = [_user_values(u) for u in new]
            add = self.sql.users.user_add
            if isinstance(add, RowsInsert):  # Citus
                inserted = self._write_user_rows(add, values)
            elif self.sql.json_writes:
                inserted = self.db.rows(add, rows_json(values))
            else:
                inserted = self.db.rows_each(add, values)
            created = {row["id"] for row in inserted}  # new rows are ours (locked) until commit
            found.update((u.id, u) for u in new if u.id in created)
            lost = [u.id for u in new if u.id not in created]  # made meanwhile by another
            if lost:
                found.update((row["id"], _user(row)) for row in self._locked(lost))
        return LockedUsers(found, frozenset(created), version)

    def _locked(self, ids: list[str]) -> list[Row]:
        """Lock these users' rows (sorted ids) and return them, with the configuration's
        version."""
        parts = self._shard_parts(ids)
        if not parts:
            return []
        if len(parts) == 1:
            return self.db.rows(self.sql.users.users_lock, {"ids": parts[0]})
        # Citus: a statement a shard, sent together (pipelined), run in this order
        return self.db.rows_each(self.sql.users.users_lock, [{"ids": part} for part in parts])

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

    def read(self, user_ids: Sequence[str]) -> LockedUsers:
        users = self._users(self.sql.users.users_of, sorted(set(user_ids)))
        return LockedUsers(users, frozenset(), config_version(self.db, self.sql))

    def _users(self, statement: Executable, ids: list[str]) -> dict[str, User]:
        return {row["id"]: _user(row) for row in self.db.rows(statement, {"ids": ids})}


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
