"""Input rules shared by every call: what a key, an id, an amount or a reason may be.

Each validator collects every violation of a request, named by its proto field path, and
raises one ValidationFailed, so a caller fixes all of them in one round.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from server.domain import commands
from server.domain.errors import (
    FieldViolation,
    IdempotencyKeyInvalid,
    IdempotencyKeyMismatch,
    ValidationFailed,
    quote,
)
from server.domain.model import TriggerType, UserProfile

MAX_AMOUNT = 1_000_000_000
MAX_REASON_CHARS = 500
MAX_METADATA_BYTES = 16 * 1024
# JSON levels of metadata: a response nests it several messages deeper than the request
# did (RecordEvent's: eight), and protobuf refuses to decode messages nested past 100
# levels (an object is three: Struct, its map entry, Value).
MAX_METADATA_DEPTH = 20
MAX_USER_ID_CHARS = 255
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
MAX_URL_CHARS = 2048
MAX_EMAIL_CHARS = 320
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY_CHARS = 64
MAX_ATTRIBUTE_VALUE_CHARS = 256
MAX_POINTS_CAP = 10**15
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50
# ListTriggers and ListLevels returned everything before they were paged: their default
# page is also their largest, and holds every trigger or level of any realistic system.
CONFIGURATION_PAGE_SIZE = 1000
MAX_RECENT_ENTRIES = 100

SYSTEM_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_KEY_CHARS = 255
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_\-:.]{1,255}")


class Violations:
    """Collects the bad fields of one request."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if all(v.field.endswith("idempotency_key") for v in self.items):
            raise IdempotencyKeyInvalid(self.items)
        raise ValidationFailed(self.items)

    # -- field rules ---------------------------------------------------------------------

    def system_key(self, field: str, value: str) -> None:
        if not SYSTEM_KEY.fullmatch(value):
            self.add(
                field,
                f"must be 1-64 characters of [a-z0-9_-] starting with a letter or digit, "
                f"got {quote(value)}",
            )

    def user_id(self, field: str, value: str) -> None:
        if not value:
            self.add(field, "is required")
        elif len(value) > MAX_USER_ID_CHARS:
            self.add(field, f"must be at most {MAX_USER_ID_CHARS} characters, got {len(value)}")
        elif value != value.strip():
            self.add(field, f"must not start or end with whitespace, got {quote(value)}")
        elif _has_control_characters(value):
            self.add(field, f"must not contain control characters, got {quote(value)}")

    def user(self, field: str, user: UserProfile) -> None:
        self.user_id(f"{field}.id", user.id)
        self.text(f"{field}.display_name", user.display_name or "", MAX_NAME_CHARS)
        self.text(f"{field}.email", user.email or "", MAX_EMAIL_CHARS)
        self.attributes(f"{field}.attributes", user.attributes or {})

    def attributes(self, field: str, attributes: Mapping[str, str]) -> None:
        if len(attributes) > MAX_ATTRIBUTES:
            self.add(field, f"must have at most {MAX_ATTRIBUTES} entries, got {len(attributes)}")
        for key, value in attributes.items():
            if not key or len(key) > MAX_ATTRIBUTE_KEY_CHARS or _has_control_characters(key):
                self.add(
                    field,
                    f"keys must be 1-{MAX_ATTRIBUTE_KEY_CHARS} printable characters, "
                    f"got {quote(key)}",
                )
            self.text(f"{field}[{key[:MAX_ATTRIBUTE_KEY_CHARS]}]", value, MAX_ATTRIBUTE_VALUE_CHARS)

    def amount(self, field: str, value: int) -> None:
        if not 1 <= value <= MAX_AMOUNT:
            self.add(field, f"must be between 1 and {MAX_AMOUNT:,}, got {value}")

    def text(self, field: str, value: str, limit: int) -> None:
        if len(value) > limit:
            self.add(field, f"must be at most {limit} characters, got {len(value)}")
        elif "\x00" in value:
            self.add(field, "must not contain NUL characters")

    def reason(self, field: str, value: str) -> None:
        self.text(field, value, MAX_REASON_CHARS)

    def metadata(self, field: str, value: Mapping[str, Any]) -> None:
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            self.add(field, "must not contain NaN or infinite numbers")
            return
        size = len(text.encode())
        if size > MAX_METADATA_BYTES:
            self.add(field, f"must be at most {MAX_METADATA_BYTES} bytes as JSON, got {size}")
        elif _depth(value) > MAX_METADATA_DEPTH:
            self.add(field, f"must nest at most {MAX_METADATA_DEPTH} levels of objects and lists")
        elif _contains_nul(value):
            self.add(field, "must not contain NUL characters")

    def idempotency_key(self, field: str, value: str) -> None:
        if value and not IDEMPOTENCY_KEY.fullmatch(value):
            self.add(
                field,
                f"must be 1-255 characters of [A-Za-z0-9_-:.], got {quote(value)}",
            )

    def future_time(self, field: str, value: datetime | None, now: datetime) -> None:
        if value is not None and value <= now:
            self.add(field, f"must be in the future, got {value.isoformat()}")

    def page_size(
        self, field: str, value: int, largest: int = MAX_PAGE_SIZE, default: int = DEFAULT_PAGE_SIZE
    ) -> None:
        if not 0 <= value <= largest:
            self.add(field, f"must be between 1 and {largest} (0 = {default})")

    def entry_id(self, field: str, value: str) -> None:
        try:
            uuid.UUID(value)
        except ValueError:
            self.add(field, f"must be a ledger entry id (a UUID), got {quote(value)}")


def _depth(value: object) -> int:
    """How many objects and lists deep a JSON-shaped value is (a scalar is 0)."""
    if isinstance(value, Mapping):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _contains_nul(value: object) -> bool:
    """Whether a JSON-shaped value holds a NUL anywhere (PostgreSQL text and JSONB refuse it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def resolve_idempotency_key(field_value: str, metadata_value: str | None) -> str:
    """The key a call carries: in its `idempotency_key` field or `idempotency-key` metadata."""
    if metadata_value is None or metadata_value == field_value:
        return field_value
    if not field_value:
        return metadata_value
    raise IdempotencyKeyMismatch(
        [
            FieldViolation(
                "idempotency_key",
                f"differs from the idempotency-key metadata ({quote(field_value)} vs "
                f"{quote(metadata_value)})",
            )
        ]
    )


# -- per-command validators --------------------------------------------------------------


def create_system(cmd: commands.CreateSystem) -> None:
    v = Violations()
    v.system_key("system.key", cmd.key)
    _system_fields(v, cmd.name, cmd.description, cmd.badge_url, cmd.max_points)
    v.raise_if_any()


def update_system(cmd: commands.UpdateSystem) -> None:
    v = Violations()
    v.system_key("system.key", cmd.key)
    _system_fields(v, cmd.name, cmd.description, cmd.badge_url, cmd.max_points)
    v.raise_if_any()


def _system_fields(v: Violations, name: str, description: str, badge_url: str, cap: int) -> None:
    v.text("system.name", name, MAX_NAME_CHARS)
    v.text("system.description", description, MAX_DESCRIPTION_CHARS)
    v.text("system.badge_url", badge_url, MAX_URL_CHARS)
    if not 0 <= cap <= MAX_POINTS_CAP:
        v.add("system.max_points", f"must be between 0 (no cap) and {MAX_POINTS_CAP:,}, got {cap}")


def award(cmd: commands.Award, now: datetime, prefix: str = "") -> None:
    v = Violations()
    award_fields(v, cmd, prefix)
    v.future_time(f"{prefix}expire_time", cmd.expire_time, now)
    v.raise_if_any()


def award_fields(v: Violations, cmd: commands.Award, prefix: str = "") -> None:
    v.system_key(f"{prefix}system_key", cmd.system_key)
    v.user(f"{prefix}user", cmd.user)
    v.amount(f"{prefix}amount", cmd.amount)
    v.reason(f"{prefix}reason", cmd.reason)
    v.metadata(f"{prefix}metadata", cmd.metadata)
    v.idempotency_key(f"{prefix}idempotency_key", cmd.idempotency_key)


def deduct(cmd: commands.Deduct) -> None:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    v.user_id("user_id", cmd.user_id)
    v.amount("amount", cmd.amount)
    v.reason("reason", cmd.reason)
    v.metadata("metadata", cmd.metadata)
    v.idempotency_key("idempotency_key", cmd.idempotency_key)
    v.raise_if_any()


def reverse(cmd: commands.Reverse) -> None:
    v = Violations()
    v.entry_id("entry_id", cmd.entry_id)
    if cmd.user_id:  # optional: where to look
        v.user_id("user_id", cmd.user_id)
    v.reason("reason", cmd.reason)
    v.idempotency_key("idempotency_key", cmd.idempotency_key)
    v.raise_if_any()


def account_key(system_key: str, user_id: str) -> None:
    v = Violations()
    v.system_key("system_key", system_key)
    v.user_id("user_id", user_id)
    v.raise_if_any()


def get_balance(cmd: commands.GetBalance) -> None:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    v.user_id("user_id", cmd.user_id)
    if not 0 <= cmd.recent_entries <= MAX_RECENT_ENTRIES:
        v.add("recent_entries", f"must be between 0 and {MAX_RECENT_ENTRIES}")
    v.raise_if_any()


def list_transactions(cmd: commands.ListTransactions) -> None:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    v.user_id("user_id", cmd.user_id)
    v.page_size("page_size", cmd.page_size)
    v.raise_if_any()


def stream_history(cmd: commands.StreamHistory) -> None:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    v.user_id("user_id", cmd.user_id)
    if cmd.start_time and cmd.end_time and cmd.end_time < cmd.start_time:
        v.add("end_time", "must not be before start_time")
    v.raise_if_any()


def page_size(
    field: str, value: int, largest: int = MAX_PAGE_SIZE, default: int = DEFAULT_PAGE_SIZE
) -> None:
    v = Violations()
    v.page_size(field, value, largest, default)
    v.raise_if_any()


# -- triggers and events -----------------------------------------------------------------

MAX_EVENT_TYPE_CHARS = 255
MAX_EVENT_VALUE = Decimal(1_000_000_000)
MAX_INTERVAL_COUNT = 1_000_000
MAX_METRIC_THRESHOLD = Decimal(10**12)
MAX_TRIGGER_FILTERS = 32
MAX_PREVIEW_DRAFTS = 20
# A preview given only its end_time starts this long before it.
PREVIEW_DEFAULT_WINDOW = timedelta(days=30)
# What one preview may replay: a read key must not be able to buy seconds of the server's
# CPU with one call (100,000 events replay in about 3 s).
PREVIEW_MAX_WINDOW = timedelta(days=366)
PREVIEW_MAX_EVENTS = 100_000
EARLIEST = datetime.min.replace(tzinfo=UTC)
EVENT_TRIGGERS = (TriggerType.EVENT, TriggerType.METRIC)


def event_type(v: Violations, field: str, value: str) -> None:
    if not value:
        v.add(field, "is required")
    elif len(value) > MAX_EVENT_TYPE_CHARS:
        v.add(field, f"must be at most {MAX_EVENT_TYPE_CHARS} characters, got {len(value)}")
    elif value != value.strip() or _has_control_characters(value):
        v.add(field, f"must be printable, without leading or trailing spaces, got {quote(value)}")


def record_event(cmd: commands.RecordEvent) -> None:
    v = Violations()
    v.user("user", cmd.user)
    event_type(v, "event_type", cmd.event_type)
    if not cmd.value.is_finite() or not 0 < cmd.value <= MAX_EVENT_VALUE:
        v.add("value", f"must be finite, > 0 and at most {MAX_EVENT_VALUE:,}, got {cmd.value}")
    v.attributes("attributes", cmd.attributes)
    v.metadata("metadata", cmd.metadata)
    v.idempotency_key("idempotency_key", cmd.idempotency_key)
    v.raise_if_any()


def trigger_fields(v: Violations, prefix: str, t: commands.TriggerFields) -> None:
    """A whole trigger: each field, and the fields its type needs (or must leave unset)."""
    if t.type is None:
        v.add(f"{prefix}type", "is required")
    if t.points == 0 or abs(t.points) > MAX_AMOUNT:
        v.add(f"{prefix}points", f"must be non-zero and at most {MAX_AMOUNT:,} either way")
    for name, attributes in (
        ("event_attributes", t.event_attributes),
        ("user_attributes", t.user_attributes),
    ):
        if len(attributes) > MAX_TRIGGER_FILTERS:
            v.add(f"{prefix}{name}", f"must have at most {MAX_TRIGGER_FILTERS} entries")
        v.attributes(f"{prefix}{name}", dict(attributes))
    events = t.type in EVENT_TRIGGERS
    if events:
        event_type(v, f"{prefix}event_type", t.event_type)
    elif t.event_type:
        v.add(f"{prefix}event_type", "is only for EVENT and METRIC triggers")
    if not events and t.event_attributes:
        v.add(f"{prefix}event_attributes", "is only for EVENT and METRIC triggers")
    if t.type is TriggerType.METRIC:
        threshold = t.metric_threshold
        if not threshold.is_finite() or not 0 < threshold <= MAX_METRIC_THRESHOLD:
            v.add(
                f"{prefix}metric_threshold",
                f"must be finite, > 0 and at most {MAX_METRIC_THRESHOLD:,}, got {threshold}",
            )
    elif t.metric_threshold:
        v.add(f"{prefix}metric_threshold", "is only for METRIC triggers")
    if t.type is TriggerType.TIME_INTERVAL:
        if t.interval_unit is None:
            v.add(f"{prefix}interval_unit", "is required for TIME_INTERVAL triggers")
        if not 1 <= t.interval_count <= MAX_INTERVAL_COUNT:
            v.add(
                f"{prefix}interval_count",
                f"must be between 1 and {MAX_INTERVAL_COUNT:,}, got {t.interval_count}",
            )
    else:
        if t.interval_unit is not None:
            v.add(f"{prefix}interval_unit", "is only for TIME_INTERVAL triggers")
        if t.interval_count:
            v.add(f"{prefix}interval_count", "is only for TIME_INTERVAL triggers")


def create_trigger(cmd: commands.CreateTrigger) -> None:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    trigger_fields(v, "trigger.", cmd.trigger)
    v.raise_if_any()


def trigger_id(field: str, value: str) -> None:
    v = Violations()
    try:
        uuid.UUID(value)
    except ValueError:
        v.add(field, f"must be a trigger id (a UUID), got {quote(value)}")
    v.raise_if_any()


def updated_trigger(fields: commands.TriggerFields) -> None:
    """The trigger an update would leave: it must still be a valid trigger of its type."""
    v = Violations()
    trigger_fields(v, "trigger.", fields)
    v.raise_if_any()


def preview_triggers(cmd: commands.PreviewTriggers) -> None:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    if not cmd.drafts and not cmd.trigger_ids:
        v.add("triggers", "give at least one draft trigger or trigger id")
    if len(cmd.drafts) + len(cmd.trigger_ids) > MAX_PREVIEW_DRAFTS:
        v.add("triggers", f"at most {MAX_PREVIEW_DRAFTS} triggers (drafts and ids) per preview")
    for index, draft in enumerate(cmd.drafts):
        trigger_fields(v, f"triggers[{index}].", draft)
        if draft.type is TriggerType.TIME_INTERVAL:
            v.add(
                f"triggers[{index}].type",
                "TIME_INTERVAL triggers follow the clock, not events: a preview replays events",
            )
    for index, value in enumerate(cmd.trigger_ids):
        try:
            uuid.UUID(value)
        except ValueError:
            v.add(f"trigger_ids[{index}]", f"must be a trigger id (a UUID), got {quote(value)}")
    if cmd.start_time and cmd.end_time and cmd.end_time <= cmd.start_time:
        v.add("end_time", "must be after start_time")
    if not cmd.start_time and cmd.end_time and cmd.end_time - EARLIEST < PREVIEW_DEFAULT_WINDOW:
        v.add("end_time", "must leave room for the default window of 30 days before it")
    v.raise_if_any()


# -- levels --------------------------------------------------------------------------------


def level_fields(v: Violations, level: commands.LevelFields) -> None:
    v.system_key("level.key", level.key)
    v.text("level.name", level.name, MAX_NAME_CHARS)
    v.text("level.description", level.description, MAX_DESCRIPTION_CHARS)
    v.text("level.badge_url", level.badge_url, MAX_URL_CHARS)
    if not 0 <= level.points <= MAX_POINTS_CAP:
        v.add("level.points", f"must be between 0 and {MAX_POINTS_CAP:,}, got {level.points}")


def create_level(cmd: commands.CreateLevel) -> None:
    v = Violations()
    v.system_key("system_key", cmd.system_key)
    level_fields(v, cmd.level)
    v.raise_if_any()


def level(level: commands.LevelFields) -> None:
    v = Violations()
    level_fields(v, level)
    v.raise_if_any()


# -- boosts ----------------------------------------------------------------------------------

MAX_BOOSTS_PER_CALL = 1000
MAX_MULTIPLIER = Decimal(1000)


def boost_problems(boost: commands.BoostFields) -> list[FieldViolation]:
    """What is wrong with one CreateBoosts item (fields named inside the item)."""
    v = Violations()
    if boost.user_id:
        v.user_id("user_id", boost.user_id)
    v.text("name", boost.name, MAX_NAME_CHARS)
    m = boost.multiplier
    if not m.is_finite() or not 0 < m <= MAX_MULTIPLIER:
        v.add("multiplier", f"must be finite, > 0 and at most {MAX_MULTIPLIER}, got {m}")
    if boost.start_time and boost.end_time and boost.end_time <= boost.start_time:
        v.add("end_time", "must be after start_time")
    if len(boost.user_attributes) > MAX_TRIGGER_FILTERS:
        v.add("user_attributes", f"must have at most {MAX_TRIGGER_FILTERS} entries")
    v.attributes("user_attributes", dict(boost.user_attributes))
    return v.items


def create_boosts(system_key: str, count: int) -> None:
    v = Violations()
    v.system_key("system_key", system_key)
    if not 1 <= count <= MAX_BOOSTS_PER_CALL:
        v.add("boosts", f"must hold 1 to {MAX_BOOSTS_PER_CALL} boosts, got {count}")
    v.raise_if_any()
