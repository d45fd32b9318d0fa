"""Users: the users of a batch of changes locked in one sorted order, and new ones added."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Executable, bindparam, delete, select, update

from server.store.statements.tables import (
    Dialect,
    RowsInsert,
    config_version,
    fixed_plan,
    from_json,
    json_rows,
    users,
)


class UserStatements:
    def __init__(self, d: Dialect) -> None:
        insert, one_of = d.insert, d.one_of
        self.user_get = select(users).where(users.c.id == bindparam("id"))
        user_insert = insert(users)
        self.user_update = update(users).where(users.c.id == bindparam("match_id"))
        if d.json_writes:
            names = [c.name for c in users.c]
            user_insert = insert(users).from_select(names, from_json(users, names))
            changed = json_rows(users, ["id", "display_name", "email", "attributes", "welcomed"])
            self.user_update = (
                update(users)
                .where(users.c.id == changed.c.id)
                .values(
                    display_name=changed.c.display_name,
                    email=changed.c.email,
                    attributes=changed.c.attributes,
                    welcomed=changed.c.welcomed,
                )
            )
        elif d.citus:  # never the id: Citus refuses a SET of the distribution column
            self.user_update = self.user_update.values(
                {n: bindparam(n) for n in ("display_name", "email", "attributes", "welcomed")}
            )

        def add_new(insert: Any) -> Any:
            return insert.on_conflict_do_nothing(index_elements=["id"]).returning(users.c.id)

        self.user_add: Executable | RowsInsert = add_new(user_insert)
        if d.json_writes:
            self.user_add = fixed_plan(self.user_add)
        if d.citus:  # a statement a shard (see RowsInsert)
            self.user_add = RowsInsert(users, [c.name for c in users.c], add_new)
        self.users_remove = delete(users).where(one_of(users.c.id, "ids"))

        # The users of a batch of changes, locked in one sorted order (so that batches
        # sharing users never deadlock), or read without a lock for a dry run. Under Citus,
        # FOR UPDATE over several shards' rows is refused: there a batch locks one shard's
        # users a statement (a router query), shard by shard (SqlUserRepository._locked).
        # The lock also returns the configuration's version, so a process learns of a
        # configuration change from the statement it runs anyway.
        self.users_of = select(users).where(one_of(users.c.id, "ids")).order_by(users.c.id)
        self.users_lock = self.users_of.add_columns(
            config_version.scalar_subquery().label("config")
        ).with_for_update(of=users)
