"""Reversals are unique per reversed entry through a partial index over reversals only.

The unique constraint on (user_id, reverses_entry_id) indexed every entry, and under a
generic plan PostgreSQL took that narrow index for any "entries of this user" query,
then sorted the user's whole history: 2.5-4 ms of database time for a page deep in a
10,000-entry history. Only reversals carry reverses_entry_id, so a partial index over
them keeps the guarantee, is a fraction of the size, and cannot be mistaken for a way to
read a user's history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_ledger_entries_user_id_reverses_entry_id"
CONSTRAINT = "uq_ledger_entries_user_id_reverses_entry_id"
ONLY_REVERSALS = sa.text("reverses_entry_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_constraint(CONSTRAINT, type_="unique")
    op.create_index(
        INDEX,
        "ledger_entries",
        ["user_id", "reverses_entry_id"],
        unique=True,
        postgresql_where=ONLY_REVERSALS,
        sqlite_where=ONLY_REVERSALS,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="ledger_entries")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.create_unique_constraint(CONSTRAINT, ["user_id", "reverses_entry_id"])
