"""Idempotency keys: what a batch's keys remember, written with the batch (a batch reads
them with its accounts: LedgerStatements.standing)."""

from __future__ import annotations

from sqlalchemy import Executable

from server.store.statements.tables import (
    Dialect,
    RowsInsert,
    fixed_plan,
    from_json,
    idempotency,
)


class IdempotencyStatements:
    def __init__(self, d: Dialect) -> None:
        insert = d.insert
        self.key_add: Executable | RowsInsert = insert(idempotency)
        if d.citus:  # a statement a shard (see RowsInsert)
            names = [c.name for c in idempotency.c]
            self.key_add = RowsInsert(idempotency, names, lambda i: i)
        elif d.json_writes:
            names = [c.name for c in idempotency.c]
            self.key_add = fixed_plan(
                insert(idempotency).from_select(names, from_json(idempotency, names))
            )
