"""Indexes for the live ledger feed and the points analytics.

WatchLedger for one system reads `system_key = ? AND sequence > ?` in sequence order
(all systems use the existing index on `sequence`). The analytics read a system's
entries by time: earned points per period, first entries of new users. Both are plain
indexes on the distributed table (Citus builds them on every shard).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BY_SYSTEM = "ix_ledger_entries_system_key_sequence"
BY_TIME = "ix_ledger_entries_system_key_create_time"


def upgrade() -> None:
    op.create_index(BY_SYSTEM, "ledger_entries", ["system_key", "sequence"])
    op.create_index(BY_TIME, "ledger_entries", ["system_key", "create_time"])


def downgrade() -> None:
    op.drop_index(BY_TIME, table_name="ledger_entries")
    op.drop_index(BY_SYSTEM, table_name="ledger_entries")
