"""Table definitions (SQLAlchemy 2.0 typed ORM), shaped to be distributable by user.

Every per-user table has `user_id` in its primary key and in every unique key, so that
Citus can shard by user and each write of one user stays on one shard. Systems (and later
triggers, levels, boosts) are small configuration tables that can be reference tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every dialect (SQLite keeps none)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonType = JSON().with_variant(JSONB(), "postgresql")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy, never mutated
        datetime: UTCDateTime(),
        int: BigInteger(),
        dict[str, Any]: JsonType,
        list[str]: JsonType,
    }


# One order over all ledger entries. On SQLite (one writer at a time) the store numbers
# entries itself; on PostgreSQL this sequence does.
LEDGER_SEQUENCE = Sequence("ledger_entry_sequence", metadata=Base.metadata)


class SystemRow(Base):
    __tablename__ = "points_systems"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    badge_url: Mapped[str] = mapped_column(Text)
    max_points: Mapped[int]
    level_basis: Mapped[str] = mapped_column(String(32))
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]


class ConfigVersionRow(Base):
    """One row: the configuration's version, raised by every change to a system (and
    later to triggers, levels, boosts). Processes compare it with what they hold."""

    __tablename__ = "config_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int]


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    attributes: Mapped[dict[str, Any]]
    create_time: Mapped[datetime]


class AccountRow(Base):
    """A user's running totals in one system; changed in the same transaction as its entries."""

    __tablename__ = "accounts"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    system_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    balance: Mapped[int]
    total_earned: Mapped[int]
    total_spent: Mapped[int]
    total_expired: Mapped[int]
    # Entries of each type, kept with the balance so a page's total needs no count(*).
    award_entries: Mapped[int] = mapped_column(server_default="0")
    deduct_entries: Mapped[int] = mapped_column(server_default="0")
    expire_entries: Mapped[int] = mapped_column(server_default="0")
    reversal_entries: Mapped[int] = mapped_column(server_default="0")
    last_earned_time: Mapped[datetime | None]
    next_expire_time: Mapped[datetime | None]
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]

    __table_args__ = (
        Index(None, "system_key", "balance"),
        # The expiry sweep finds accounts with credit due to lapse.
        Index(None, "next_expire_time"),
    )


class CreditLotRow(Base):
    """What is left of one expiring award; deleted once nothing is left."""

    __tablename__ = "credit_lots"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    system_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    expire_time: Mapped[datetime]
    remaining: Mapped[int]


class LedgerEntryRow(Base):
    """The append-only ledger: rows are inserted, never updated or deleted."""

    __tablename__ = "ledger_entries"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sequence: Mapped[int]
    system_key: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int]
    base_amount: Mapped[int]
    # Exact decimal text (the product of the boosts applied), e.g. "1" or "4.5".
    multiplier: Mapped[str] = mapped_column(String(64))
    boost_ids: Mapped[list[str]]
    capped: Mapped[bool]
    balance_after: Mapped[int]
    reason: Mapped[str] = mapped_column(Text)
    # `metadata` is taken by SQLAlchemy's declarative base; the column keeps the name.
    entry_metadata: Mapped[dict[str, Any]] = mapped_column("metadata")
    idempotency_key: Mapped[str] = mapped_column(String(255))
    trigger_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(255))
    expire_time: Mapped[datetime | None]
    reverses_entry_id: Mapped[str | None] = mapped_column(String(36))
    create_time: Mapped[datetime]

    __table_args__ = (
        Index(None, "user_id", "system_key", "sequence"),
        Index(None, "sequence"),  # WatchLedger over all systems
        Index(None, "system_key", "sequence"),  # WatchLedger for one system
        Index(None, "system_key", "create_time"),  # analytics: a system's entries by time
        Index(None, "id"),
        # An entry is reversed once. Partial: only reversals carry reverses_entry_id, and
        # an index over every entry would compete with the one above for history reads.
        Index(
            None,
            "user_id",
            "reverses_entry_id",
            unique=True,
            postgresql_where=text("reverses_entry_id IS NOT NULL"),
            sqlite_where=text("reverses_entry_id IS NOT NULL"),
        ),
    )


class IdempotencyRow(Base):
    """A used idempotency key, the fingerprint of its request and the response it got.

    `scope` is the system key (or '' for keys scoped to the user alone, as RecordEvent's).
    """

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime]
