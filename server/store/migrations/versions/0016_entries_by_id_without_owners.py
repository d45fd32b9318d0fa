"""Entries found by id through the ledger's own index; `ledger_entry_owners` dropped.

The owner row (0013) was keyed, and under Citus distributed, by entry id, so it landed
on another shard than its user's rows and made every write of one user a two-phase
commit across workers. An entry's owner never changes, so Reverse reads it before its
write transaction: through this index on one PostgreSQL (cheaper per award than a row
and a primary key in another table), from every shard under Citus (one read-only
statement, for a rare call), or straight from the user's shard when the request names
the user. The write then touches the user's shard alone.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BY_ID = "ix_ledger_entries_id"


def upgrade() -> None:
    op.create_index(BY_ID, "ledger_entries", ["id"])
    op.drop_table("ledger_entry_owners")


def downgrade() -> None:
    op.create_table(
        "ledger_entry_owners",
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name=op.f("pk_ledger_entry_owners")),
    )
    op.execute(
        "INSERT INTO ledger_entry_owners (entry_id, user_id) SELECT id, user_id FROM ledger_entries"
    )
    op.drop_index(BY_ID, table_name="ledger_entries")
