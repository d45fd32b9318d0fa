"""What callers ask Tally to do, as plain values (the API layer builds these from requests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from server.domain.model import EntryType, JsonObject, LevelBasis, UserProfile


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
