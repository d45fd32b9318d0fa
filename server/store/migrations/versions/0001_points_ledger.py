"""The points ledger: systems, users, accounts, credit lots, ledger entries, idempotency keys.

Every per-user table carries user_id in its primary key and unique keys (Citus-ready).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.schema.CreateSequence(sa.Sequence("ledger_entry_sequence")))

    op.create_table(
        "points_systems",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("badge_url", sa.Text(), nullable=False),
        sa.Column("max_points", sa.BigInteger(), nullable=False),
        sa.Column("level_basis", sa.String(32), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("update_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_points_systems")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_table(
        "accounts",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("system_key", sa.String(64), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("total_earned", sa.BigInteger(), nullable=False),
        sa.Column("total_spent", sa.BigInteger(), nullable=False),
        sa.Column("total_expired", sa.BigInteger(), nullable=False),
        sa.Column("last_earned_time", TIME, nullable=True),
        sa.Column("next_expire_time", TIME, nullable=True),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("update_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "system_key", name=op.f("pk_accounts")),
    )
    op.create_index(op.f("ix_accounts_system_key_balance"), "accounts", ["system_key", "balance"])
    op.create_table(
        "credit_lots",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("system_key", sa.String(64), nullable=False),
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("expire_time", TIME, nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "system_key", "entry_id", name=op.f("pk_credit_lots")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("system_key", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("base_amount", sa.BigInteger(), nullable=False),
        sa.Column("multiplier", sa.String(64), nullable=False),
        sa.Column("boost_ids", JSON, nullable=False),
        sa.Column("capped", sa.Boolean(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("trigger_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("expire_time", TIME, nullable=True),
        sa.Column("reverses_entry_id", sa.String(36), nullable=True),
        sa.Column("create_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint(
            "user_id",
            "reverses_entry_id",
            name=op.f("uq_ledger_entries_user_id_reverses_entry_id"),
        ),
    )
    op.create_index(op.f("ix_ledger_entries_id"), "ledger_entries", ["id"])
    op.create_index(op.f("ix_ledger_entries_sequence"), "ledger_entries", ["sequence"])
    op.create_index(
        op.f("ix_ledger_entries_user_id_system_key_sequence"),
        "ledger_entries",
        ["user_id", "system_key", "sequence"],
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("create_time", TIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "scope", "key", name=op.f("pk_idempotency_keys")),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("ledger_entries")
    op.drop_table("credit_lots")
    op.drop_table("accounts")
    op.drop_table("users")
    op.drop_table("points_systems")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.schema.DropSequence(sa.Sequence("ledger_entry_sequence")))
