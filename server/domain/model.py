"""The things Tally keeps: points systems, users, ledger entries, balances, levels.

Plain frozen dataclasses; the store maps them to rows and the API layer to messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.domain.access import Reach
    from server.domain.rules import Rules

JsonObject = dict[str, Any]


class LevelBasis(Enum):
    """What a user's level follows."""

    BALANCE = "BALANCE"
    LIFETIME_EARNED = "LIFETIME_EARNED"


class TriggerType(Enum):
    EVENT = "EVENT"
    METRIC = "METRIC"
    USER_IDENTIFIED = "USER_IDENTIFIED"
    TIME_INTERVAL = "TIME_INTERVAL"


class TriggerStatus(Enum):
    INACTIVE = "INACTIVE"
    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"


class IntervalUnit(Enum):
    MINUTES = "MINUTES"
    HOURS = "HOURS"
    DAYS = "DAYS"


INTERVAL_UNIT_LENGTHS = {
    IntervalUnit.MINUTES: timedelta(minutes=1),
    IntervalUnit.HOURS: timedelta(hours=1),
    IntervalUnit.DAYS: timedelta(days=1),
}


class EntryType(Enum):
    AWARD = "AWARD"
    DEDUCT = "DEDUCT"
    EXPIRE = "EXPIRE"
    REVERSAL = "REVERSAL"


@dataclass(frozen=True)
class PointsSystem:
    key: str
    name: str
    description: str
    badge_url: str
    max_points: int  # 0 = no cap
    level_basis: LevelBasis
    create_time: datetime
    update_time: datetime


Attributes = tuple[tuple[str, str], ...]  # (key, value) pairs a filter requires, all of them
# One entry moves at most this many points (METRIC firings and boosts multiply amounts).
MAX_ENTRY_POINTS = 10**12


def attributes_match(required: Attributes, present: Mapping[str, str]) -> bool:
    """All of a filter's attributes are present with these values."""
    return all(present.get(key) == value for key, value in required)


@dataclass(frozen=True)
class Trigger:
    """A rule that awards (or, with negative points, deducts) when something happens.

    `activate_time` is when the trigger last became ACTIVE (None while it never was):
    TIME_INTERVAL accrual counts from it. `version` is the configuration version that last
    changed the trigger (the accrual sweep compares accounts against it)."""

    id: str
    system_key: str
    type: TriggerType
    points: int
    status: TriggerStatus
    create_time: datetime
    update_time: datetime
    event_type: str = ""
    metric_threshold: Decimal = Decimal(0)
    interval_unit: IntervalUnit | None = None
    interval_count: int = 0
    event_attributes: Attributes = ()
    user_attributes: Attributes = ()
    activate_time: datetime | None = None
    version: int = 0

    @property
    def active(self) -> bool:
        return self.status is TriggerStatus.ACTIVE

    @property
    def interval(self) -> timedelta:
        """TIME_INTERVAL: the time between firings."""
        assert self.interval_unit is not None, "only TIME_INTERVAL triggers have an interval"
        return INTERVAL_UNIT_LENGTHS[self.interval_unit] * self.interval_count


class Rounding(Enum):
    DOWN = "DOWN"
    UP = "UP"
    NEAREST = "NEAREST"


class BoostStatus(Enum):
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"
    ARCHIVED = "ARCHIVED"


@dataclass(frozen=True)
class Boost:
    """A multiplier of positive awards within a window: for one user, or (no user) for
    every user of the system matching `user_attributes`."""

    id: str
    system_key: str
    user_id: str  # '' = global
    name: str
    multiplier: Decimal  # the double the caller sent, in its shortest decimal form
    rounding: Rounding
    start_time: datetime
    end_time: datetime | None
    user_attributes: Attributes
    create_time: datetime
    archive_time: datetime | None = None

    def status(self, now: datetime) -> BoostStatus:
        if self.archive_time is not None:
            return BoostStatus.ARCHIVED
        if now < self.start_time:
            return BoostStatus.SCHEDULED
        if self.end_time is not None and now >= self.end_time:
            return BoostStatus.ENDED
        return BoostStatus.ACTIVE

    def applies(self, when: datetime) -> bool:
        """Whether the window holds `when` (and the boost is not archived)."""
        return self.status(when) is BoostStatus.ACTIVE


@dataclass(frozen=True)
class Event:
    """Something a user did, as RecordEvent recorded it (PreviewTriggers replays these).
    `reach` names the systems its caller could use ('' for every one: see access.Reach);
    `total_after` is the user's running total of `event_type` in that reach once it was
    counted."""

    id: str
    user_id: str
    event_type: str
    value: Decimal
    total_after: Decimal
    attributes: dict[str, str]
    create_time: datetime
    reach: str = ""


@dataclass(frozen=True)
class UserProfile:
    """A user as a call names it: the id, plus profile fields to set (None = leave as is)."""

    id: str
    display_name: str | None = None
    email: str | None = None
    attributes: dict[str, str] | None = None


@dataclass(frozen=True)
class Welcomed:
    """The points systems a user has been welcomed in (their USER_IDENTIFIED triggers
    considered): those named in `systems`, and every system created at or before
    `through` (None: no such bound). Users are shared by every system, so a welcome is
    owed per system, by the first call that names the user and may use it.

    `through` is what a call of every system leaves: the newest create_time among the
    systems it read, so that a system created after it still owes the user its welcome
    (to a call of every system, or of a key limited to it, whose answers then do not tell
    the user from a new one). A call limited to some systems adds those it welcomed in to
    `systems`. Users created before welcomes were kept per system are welcomed through
    the time of migration 0015."""

    systems: frozenset[str] = frozenset()
    through: datetime | None = None

    def owed(self, reach: Reach, rules: Rules) -> frozenset[str]:
        """The systems a call of `reach` welcomes the user in: those of `rules` it may use
        that the user has not been welcomed in. A user welcomed through the newest system's
        create_time costs one comparison."""
        newest = rules.newest_system
        through = self.through
        if newest is None or (through is not None and through >= newest):
            return NOTHING_OWED  # the cheap path
        systems = rules.systems
        keys = reach.systems if reach.systems else systems.keys()
        owed = frozenset(
            key
            for key in keys
            if key in systems
            and key not in self.systems
            and (through is None or systems[key].create_time > through)
        )
        return owed or NOTHING_OWED

    def after(self, reach: Reach, rules: Rules) -> Welcomed:
        """Where the user is welcomed once a call of `reach` has welcomed them (this same
        value when it owes nothing)."""
        return self.paid(self.owed(reach, rules), reach, rules)

    def paid(self, owed: frozenset[str], reach: Reach, rules: Rules) -> Welcomed:
        """Where the user is welcomed once a call of `reach` has welcomed them in `owed`
        (what `owed` gave: this same value when it is empty). A call of every system
        welcomes through the newest system it read (the rules' time, not the clock's), and
        keeps only the systems it does not know (made since, by a call that read newer
        rules); a limited call adds the systems it welcomed in, and no other: a system of
        its reach created later is still owed."""
        if not owed:
            return self
        if not reach.systems:
            unknown = frozenset(key for key in self.systems if key not in rules.systems)
            return Welcomed(unknown, rules.newest_system)
        return Welcomed(self.systems | owed, self.through)

    @property
    def name(self) -> str:
        """How the store keeps it: the systems sorted and comma-separated ('' for none);
        with a bound, '*' and its UTC time in ISO 8601 first, then ';' and the systems
        when there are any. No system key holds ',', ';' or '*'."""
        systems = ",".join(sorted(self.systems))
        if self.through is None:
            return systems
        stamp = "*" + self.through.astimezone(UTC).isoformat()
        return f"{stamp};{systems}" if systems else stamp

    @classmethod
    def named(cls, name: str) -> Welcomed:
        """The value `name` gives; ValueError for a name no value gives."""
        through, keys = None, name
        if name.startswith("*"):
            stamp, semicolon, keys = name[1:].partition(";")
            through = datetime.fromisoformat(stamp)  # ValueError when not a time
            if through.tzinfo is None or (semicolon and not keys):
                raise ValueError(f"not a welcome: {name!r}")
        systems = frozenset(keys.split(",")) if keys else frozenset()
        if "" in systems or any("*" in key or ";" in key for key in systems):
            raise ValueError(f"not a welcome: {name!r}")
        return cls(systems, through)


NOTHING_OWED: frozenset[str] = frozenset()
WELCOMED_NOWHERE = Welcomed()


@dataclass(frozen=True)
class User:
    id: str
    display_name: str
    email: str
    attributes: dict[str, str]
    create_time: datetime
    # Where the user has been welcomed (as stored; a user made by User.new: nowhere yet).
    welcomed: Welcomed = WELCOMED_NOWHERE

    @classmethod
    def new(cls, profile: UserProfile, now: datetime) -> User:
        return cls(
            id=profile.id,
            display_name=profile.display_name or "",
            email=profile.email or "",
            attributes=dict(profile.attributes or {}),
            create_time=now,
            welcomed=WELCOMED_NOWHERE,
        )

    def welcomed_by(self, reach: Reach, rules: Rules) -> User:
        """The user once a call of `reach` under `rules` has welcomed them (this same user
        when it owes them no welcome)."""
        welcomed = self.welcomed.after(reach, rules)
        return self if welcomed is self.welcomed else replace(self, welcomed=welcomed)

    def with_profile(self, profile: UserProfile) -> User:
        """The user with the profile fields a call gave (attributes given replace only
        those keys); this same user when nothing changes."""
        changes: dict[str, Any] = {}
        if profile.display_name is not None and profile.display_name != self.display_name:
            changes["display_name"] = profile.display_name
        if profile.email is not None and profile.email != self.email:
            changes["email"] = profile.email
        if profile.attributes:
            merged = {**self.attributes, **profile.attributes}
            if merged != self.attributes:
                changes["attributes"] = merged
        return replace(self, **changes) if changes else self


@dataclass(frozen=True)
class LedgerEntry:
    """One immutable line of the ledger; `sequence` is given by the store when written."""

    id: str
    system_key: str
    user_id: str
    type: EntryType
    amount: int
    base_amount: int
    multiplier: Decimal
    capped: bool
    balance_after: int
    reason: str
    create_time: datetime
    sequence: int = 0
    boost_ids: tuple[str, ...] = ()
    metadata: JsonObject = field(default_factory=dict)
    idempotency_key: str = ""
    trigger_id: str = ""
    event_type: str = ""
    expire_time: datetime | None = None
    reverses_entry_id: str = ""


@dataclass(frozen=True)
class Level:
    id: str
    system_key: str
    key: str
    name: str
    description: str
    badge_url: str
    points: int


@dataclass(frozen=True)
class LevelChange:
    system_key: str
    user_id: str
    previous_level: Level | None
    new_level: Level | None
    entry_id: str
    create_time: datetime
    sequence: int = 0


@dataclass(frozen=True)
class Balance:
    """A user's standing in one points system, as callers see it."""

    system_key: str
    user_id: str
    balance: int
    total_earned: int
    total_spent: int
    total_expired: int
    max_points: int
    last_earned_time: datetime | None = None
    level: Level | None = None


@dataclass(frozen=True)
class Page:
    """A slice of a longer list and the token that continues it ('' on the last page)."""

    items: list[Any]
    next_page_token: str
