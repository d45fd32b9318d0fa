"""Triggers, recorded events, running event totals, and TIME_INTERVAL accrual state.

Triggers are configuration (read whole into memory). Events and totals are per user,
keyed by user first, like every per-user table. Accounts gain what accrual needs: each
trigger's last firing, when the next is due, and the configuration version that worked
it out (the sweep that accrues idle users finds the first by a partial index).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "triggers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("system_key", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("metric_threshold", sa.String(64), nullable=False),
        sa.Column("interval_unit", sa.String(16), nullable=True),
        sa.Column("interval_count", sa.BigInteger(), nullable=False),
        sa.Column("event_attributes", JSON, nullable=False),
        sa.Column("user_attributes", JSON, nullable=False),
        sa.Column("activate_time", TIME, nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("update_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_triggers"),
    )
    op.create_table(
        "metric_totals",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("total", sa.String(64), nullable=False),
        sa.Column("update_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "event_type", name="pk_metric_totals"),
    )
    op.create_table(
        "events",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("total_after", sa.String(64), nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "id", name="pk_events"),
    )
    op.create_index("ix_events_create_time_id", "events", ["create_time", "id"])
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("interval_marks", JSON, nullable=True))
        batch.add_column(sa.Column("next_accrual_time", TIME, nullable=True))
        batch.add_column(
            sa.Column("accrual_version", sa.BigInteger(), server_default="0", nullable=False)
        )
    # Partial: only accounts with a firing to come (an index entry per account would be
    # written by every award: an account update changes indexed columns).
    op.create_index(
        "ix_accounts_system_key_next_accrual_time",
        "accounts",
        ["system_key", "next_accrual_time"],
        postgresql_where=sa.text("next_accrual_time IS NOT NULL"),
        sqlite_where=sa.text("next_accrual_time IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_accounts_system_key_next_accrual_time", table_name="accounts")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("accrual_version")
        batch.drop_column("next_accrual_time")
        batch.drop_column("interval_marks")
    op.drop_index("ix_events_create_time_id", table_name="events")
    op.drop_table("events")
    op.drop_table("metric_totals")
    op.drop_table("triggers")
