"""Boosts: multipliers of positive awards within a window, for one user or a cohort.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "boosts",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("system_key", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("multiplier", sa.String(64), nullable=False),
        sa.Column("rounding", sa.String(16), nullable=False),
        sa.Column("start_time", TIME, nullable=False),
        sa.Column("end_time", TIME, nullable=True),
        sa.Column("user_attributes", JSON, nullable=False),
        sa.Column("archive_time", TIME, nullable=True),
        sa.Column("create_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_boosts"),
    )
    op.create_index(
        "ix_boosts_system_key_create_time_id", "boosts", ["system_key", "create_time", "id"]
    )
    op.create_index(
        "ix_boosts_system_key_user_id_create_time_id",
        "boosts",
        ["system_key", "user_id", "create_time", "id"],
    )
    op.create_index("ix_boosts_end_time", "boosts", ["end_time"])


def downgrade() -> None:
    op.drop_index("ix_boosts_end_time", table_name="boosts")
    op.drop_index("ix_boosts_system_key_user_id_create_time_id", table_name="boosts")
    op.drop_index("ix_boosts_system_key_create_time_id", table_name="boosts")
    op.drop_table("boosts")
