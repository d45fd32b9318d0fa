"""Levels of points systems, and the level changes that points changes make.

Levels are configuration (read whole into memory); a user's level is never stored, it
is derived from the basis value and the thresholds. Level changes are per user (keyed by
user first) and numbered in one order for WatchLevelChanges.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "levels",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("system_key", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("badge_url", sa.Text(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_levels"),
    )
    op.create_index("ix_levels_system_key_key", "levels", ["system_key", "key"], unique=True)
    op.create_index("ix_levels_system_key_points", "levels", ["system_key", "points"], unique=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.schema.CreateSequence(sa.Sequence("level_change_sequence")))
    op.create_table(
        "level_changes",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("system_key", sa.String(64), nullable=False),
        sa.Column("previous_level", JSON, nullable=True),
        sa.Column("new_level", JSON, nullable=True),
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "sequence", name="pk_level_changes"),
    )
    op.create_index("ix_level_changes_sequence", "level_changes", ["sequence"])


def downgrade() -> None:
    op.drop_index("ix_level_changes_sequence", table_name="level_changes")
    op.drop_table("level_changes")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.schema.DropSequence(sa.Sequence("level_change_sequence")))
    op.drop_index("ix_levels_system_key_points", table_name="levels")
    op.drop_index("ix_levels_system_key_key", table_name="levels")
    op.drop_table("levels")
