"""Whose each ledger entry is, by entry id: `ledger_entry_owners`.

Reverse names only an entry id, and the ledger is keyed (and, under Citus, distributed)
by user: found by id alone, an entry is looked for on every shard. This table, keyed by
entry id (under Citus distributed by entry id), answers the owner from one shard; the
entry is then read by (user_id, id), on the owner's shard. It replaces the ledger's
index on `id`, which served only that look-up. Existing entries are copied in.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BY_ID = "ix_ledger_entries_id"


def upgrade() -> None:
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


def downgrade() -> None:
    op.create_index(BY_ID, "ledger_entries", ["id"])
    op.drop_table("ledger_entry_owners")
