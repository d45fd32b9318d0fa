"""What callers ask Tally to do, as plain values (the API layer builds these from requests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from server.domain.model import (
    Attributes,
    EntryType,
    IntervalUnit,
    JsonObject,
    LevelBasis,
    Rounding,
    TriggerStatus,
    TriggerType,
    UserProfile,
)


@dataclass(frozen=True)
class CreateSystem:
    key: str
    name: str = ""
    description: str = ""
    badge_url: str = ""
    max_points: int = 0
    level_basis: LevelBasis | None = None  # None = the default, BALANCE


@dataclass(frozen=True)
class UpdateSystem:
    """Set the fields named in `fields` (proto field names) to the values given here."""

    key: str
    fields: frozenset[str]
    name: str = ""
    description: str = ""
    badge_url: str = ""
    max_points: int = 0
    level_basis: LevelBasis | None = None


@dataclass(frozen=True)
class Award:
    system_key: str
    user: UserProfile
    amount: int
    reason: str = ""
    metadata: JsonObject = field(default_factory=dict)
    idempotency_key: str = ""
    expire_time: datetime | None = None
    skip_boosts: bool = False
    validate_only: bool = False


@dataclass(frozen=True)
class Deduct:
    system_key: str
    user_id: str
    amount: int
    reason: str = ""
    metadata: JsonObject = field(default_factory=dict)
    idempotency_key: str = ""
    validate_only: bool = False


@dataclass(frozen=True)
class Reverse:
    entry_id: str
    reason: str = ""
    idempotency_key: str = ""
    # The entry's user, when the caller names it: where to look (one shard under Citus),
    # not part of what is asked, so a key's fingerprint leaves it out.
    user_id: str = field(default="", metadata={"fingerprinted": False})


@dataclass(frozen=True)
class GetBalance:
    system_key: str
    user_id: str
    recent_entries: int = 10


@dataclass(frozen=True)
class ListTransactions:
    system_key: str
    user_id: str
    page_size: int = 0  # 0 = the default
    page_token: str = ""
    types: frozenset[EntryType] = frozenset()


@dataclass(frozen=True)
class StreamHistory:
    system_key: str
    user_id: str
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True)
class RecordEvent:
    user: UserProfile
    event_type: str
    value: Decimal = Decimal(1)  # the double the caller sent, in its shortest decimal form
    attributes: dict[str, str] = field(default_factory=dict)
    metadata: JsonObject = field(default_factory=dict)
    idempotency_key: str = ""
    validate_only: bool = False


@dataclass(frozen=True)
class TriggerFields:
    """A trigger as a caller writes it (CreateTrigger, UpdateTrigger, PreviewTriggers);
    `status` None = the default, INACTIVE."""

    type: TriggerType | None = None
    points: int = 0
    status: TriggerStatus | None = None
    event_type: str = ""
    metric_threshold: Decimal = Decimal(0)
    interval_unit: IntervalUnit | None = None
    interval_count: int = 0
    event_attributes: Attributes = ()
    user_attributes: Attributes = ()


@dataclass(frozen=True)
class CreateTrigger:
    system_key: str
    trigger: TriggerFields


@dataclass(frozen=True)
class UpdateTrigger:
    """Set the fields named in `fields` (proto field names) to the values in `trigger`."""

    id: str
    fields: frozenset[str]
    trigger: TriggerFields


@dataclass(frozen=True)
class PreviewTriggers:
    system_key: str
    drafts: tuple[TriggerFields, ...] = ()
    trigger_ids: tuple[str, ...] = ()
    start_time: datetime | None = None  # None: 30 days before now
    end_time: datetime | None = None  # None: now


@dataclass(frozen=True)
class LevelFields:
    key: str = ""
    name: str = ""
    description: str = ""
    badge_url: str = ""
    points: int = 0


@dataclass(frozen=True)
class CreateLevel:
    system_key: str
    level: LevelFields


@dataclass(frozen=True)
class UpdateLevel:
    """Set the fields named in `fields` of the level named by `id` (or, without one, by
    `system_key` and `key`)."""

    id: str
    system_key: str
    key: str
    fields: frozenset[str]
    level: LevelFields


@dataclass(frozen=True)
class BoostFields:
    """A boost as a caller writes it (CreateBoosts); None = the default."""

    user_id: str = ""  # '' = global
    name: str = ""
    multiplier: Decimal = Decimal(0)
    rounding: Rounding | None = None  # None = DOWN
    start_time: datetime | None = None  # None = when created
    end_time: datetime | None = None  # None = open-ended
    user_attributes: Attributes = ()
