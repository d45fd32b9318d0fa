"""Index accounts by their next expiry, for the periodic expiry sweep.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_accounts_next_expire_time"), "accounts", ["next_expire_time"])


def downgrade() -> None:
    op.drop_index(op.f("ix_accounts_next_expire_time"), table_name="accounts")
