"""Table definitions (SQLAlchemy 2.0 typed ORM), shaped to be distributable by user.

Every per-user table has `user_id` in its primary key and in every unique key, so that
Citus can shard by user and each write of one user stays on one shard. Systems, triggers,
levels, boosts and API keys are small configuration tables that can be reference tables.
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


# One order over all level changes (WatchLevelChanges), numbered as the ledger is.
LEVEL_CHANGE_SEQUENCE = Sequence("level_change_sequence", metadata=Base.metadata)

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
    # The systems the user has been welcomed in (model.Welcomed.name). Its default, set by
    # 0015, welcomes a row written without it (before 0015, or by an older server) in every
    # system that existed at the upgrade: a literal of that time, so none here.
    welcomed: Mapped[str] = mapped_column(Text)


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
    # TIME_INTERVAL accrual: each trigger's last firing (trigger id -> ISO time), when the
    # next is due, and the configuration version it was worked out at (Account).
    interval_marks: Mapped[dict[str, Any] | None]
    next_accrual_time: Mapped[datetime | None]
    accrual_version: Mapped[int] = mapped_column(server_default="0")
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]

    __table_args__ = (
        # Level counts (GetLevelSummary) and the balance histogram: ranges of one system
        # (LIFETIME_EARNED levels read total_earned through it too: one more index here
        # would be written by every award).
        Index(None, "system_key", "balance"),
        # The expiry sweep finds accounts with credit due to lapse.
        Index(None, "next_expire_time"),
        # The accrual sweep finds accounts with a firing due. Partial: only accounts of
        # systems with TIME_INTERVAL triggers have one, and an index entry per account
        # would cost every award (an account update changes indexed columns, so it
        # writes every index of the table). Accounts worked out before a trigger of
        # their system changed are found by one pass over the system (the sweep).
        Index(
            None,
            "system_key",
            "next_accrual_time",
            postgresql_where=text("next_accrual_time IS NOT NULL"),
            sqlite_where=text("next_accrual_time IS NOT NULL"),
        ),
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
        # Reverse may name an entry by id alone; its user is read through this before the
        # write (under Citus, from every shard: no row keyed by entry id on another shard).
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

    `scope` is the system key, or for a key of the user's (RecordEvent's) its caller's reach
    (access.Reach.tag: '@*' for every system), '' for those kept before reaches.
    """

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime]


class TriggerRow(Base):
    """A trigger (configuration, read whole into memory; a reference table under Citus)."""

    __tablename__ = "triggers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    system_key: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    points: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str] = mapped_column(String(255))
    metric_threshold: Mapped[str] = mapped_column(String(64))  # exact decimal text
    interval_unit: Mapped[str | None] = mapped_column(String(16))
    interval_count: Mapped[int]
    event_attributes: Mapped[list[Any]] = mapped_column(JsonType)  # [[key, value], ...]
    user_attributes: Mapped[list[Any]] = mapped_column(JsonType)
    activate_time: Mapped[datetime | None]
    version: Mapped[int]  # the configuration version that last changed it
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]


class MetricTotalRow(Base):
    """A user's running total of one event type (exact decimal text), in one reach: the
    systems the recording callers could use, sorted and comma-separated ('' for every
    system), so that a key limited to some systems moves no other system's totals."""

    __tablename__ = "metric_totals"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(255), primary_key=True)
    reach: Mapped[str] = mapped_column(Text, primary_key=True, server_default="")
    total: Mapped[str] = mapped_column(String(64))
    update_time: Mapped[datetime]


class EventRow(Base):
    """An event as RecordEvent recorded it (PreviewTriggers replays them). `reach` is the
    systems its caller could use ('' for every one); `total_after` is the running total
    of that reach once it was counted, so a replay knows the total before it."""

    __tablename__ = "events"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(64))
    total_after: Mapped[str] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]]
    create_time: Mapped[datetime]
    reach: Mapped[str] = mapped_column(Text, server_default="")

    __table_args__ = (Index(None, "create_time", "id"),)


class LevelRow(Base):
    """A level of a points system (configuration, read whole into memory)."""

    __tablename__ = "levels"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    system_key: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    badge_url: Mapped[str] = mapped_column(Text)
    points: Mapped[int]

    __table_args__ = (
        Index(None, "system_key", "key", unique=True),
        Index(None, "system_key", "points", unique=True),
    )


class LevelChangeRow(Base):
    """A user's move across a threshold, as the change that made it saw the levels."""

    __tablename__ = "level_changes"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    sequence: Mapped[int] = mapped_column(primary_key=True)
    system_key: Mapped[str] = mapped_column(String(64))
    previous_level: Mapped[dict[str, Any] | None]  # the Level as it was, or null
    new_level: Mapped[dict[str, Any] | None]
    entry_id: Mapped[str] = mapped_column(String(36))
    create_time: Mapped[datetime]

    __table_args__ = (Index(None, "sequence"),)


class BoostRow(Base):
    """A boost (configuration: those not archived nor ended are held in memory)."""

    __tablename__ = "boosts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    system_key: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(255))  # '' = global
    name: Mapped[str] = mapped_column(String(200))
    multiplier: Mapped[str] = mapped_column(String(64))  # exact decimal text
    rounding: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[datetime]
    end_time: Mapped[datetime | None]
    user_attributes: Mapped[list[Any]] = mapped_column(JsonType)
    archive_time: Mapped[datetime | None]
    create_time: Mapped[datetime]

    __table_args__ = (
        # ListBoosts: a system's boosts (or one user's) newest first, in keyset pages.
        Index(None, "system_key", "create_time", "id"),
        Index(None, "system_key", "user_id", "create_time", "id"),
        # What the configuration loads: boosts not yet ended.
        Index(None, "end_time"),
    )


class ApiKeyRow(Base):
    """An API key: only the SHA-256 of the key is kept, never the key. Small and the same
    for every user, so on Citus it is a reference table like points_systems."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))
    # Points systems the key may use, comma-separated (keys hold no commas); '': all.
    systems: Mapped[str] = mapped_column(Text)
    # HMAC secret of the user tokens this key issues (hex); dies with the key.
    token_secret: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime]
    revoke_time: Mapped[datetime | None]
