"""Domain errors: what went wrong, in the caller's terms.

Each error names its `reason` (the `google.rpc.ErrorInfo.reason` callers see) and belongs
to one category; the API layer maps categories to status codes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from server.domain.model import EntryType

# Errors quote at most this many characters of what the caller sent, so that an error
# always fits in the response trailers.
QUOTE_LIMIT = 100


def quote(value: object) -> str:
    """Render a caller-supplied value for an error message, cut to QUOTE_LIMIT chars."""
    text = str(value)
    if len(text) > QUOTE_LIMIT:
        text = text[:QUOTE_LIMIT] + "..."
    return repr(text)


class Category(Enum):
    """What kind of failure an error is; the API layer maps each to one status code."""

    INVALID = "invalid"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PRECONDITION = "precondition"
    EXHAUSTED = "exhausted"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    UNAVAILABLE = "unavailable"


class TallyError(Exception):
    """Base of every error a caller may see."""

    reason: ClassVar[str]
    category: ClassVar[Category]

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Metadata often echoes what the caller sent: cut it like messages are.
        self.metadata: dict[str, str] = {
            key: value[:QUOTE_LIMIT] for key, value in (metadata or {}).items()
        }


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, named by its proto path (e.g. `items[2].amount`)."""

    field: str
    description: str


# At most this many field violations are reported, so that an error fits in the trailers.
MAX_VIOLATIONS = 20
# The message names the first few; the BadRequest details carry them all.
VIOLATIONS_IN_MESSAGE = 3


class ValidationFailed(TallyError):
    reason = "VALIDATION_FAILED"
    category = Category.INVALID

    def __init__(self, violations: list[FieldViolation]) -> None:
        violations = violations[:MAX_VIOLATIONS]
        summary = "; ".join(
            f"{v.field}: {v.description}" for v in violations[:VIOLATIONS_IN_MESSAGE]
        )
        more = len(violations) - VIOLATIONS_IN_MESSAGE
        if more > 0:
            summary += f" (and {more} more in the BadRequest details)"
        first = {"field": violations[0].field} if violations else {}
        super().__init__(f"invalid request: {summary}", metadata={**first, **self.extra_metadata})
        self.violations = violations

    # Metadata this kind of validation error always carries (see IdempotencyKeyMismatch).
    extra_metadata: ClassVar[dict[str, str]] = {}


class IdempotencyKeyInvalid(ValidationFailed):
    reason = "IDEMPOTENCY_KEY_INVALID"


class IdempotencyKeyMismatch(ValidationFailed):
    reason = "IDEMPOTENCY_KEY_MISMATCH"
    extra_metadata: ClassVar[dict[str, str]] = {"metadata_key": "idempotency-key"}


class NotFound(TallyError):
    category = Category.NOT_FOUND


class SystemNotFound(NotFound):
    reason = "SYSTEM_NOT_FOUND"

    def __init__(self, key: str) -> None:
        super().__init__(f"points system {quote(key)} not found", metadata={"system_key": key})


class UserNotFound(NotFound):
    reason = "USER_NOT_FOUND"

    def __init__(self, user_id: str, system_key: str) -> None:
        super().__init__(
            f"user {quote(user_id)} not found",
            metadata={"system_key": system_key, "user_id": user_id},
        )


class TriggerNotFound(NotFound):
    reason = "TRIGGER_NOT_FOUND"

    def __init__(self, trigger_id: str) -> None:
        super().__init__(
            f"trigger {quote(trigger_id)} not found", metadata={"trigger_id": trigger_id}
        )


class LevelNotFound(NotFound):
    reason = "LEVEL_NOT_FOUND"

    def __init__(self, key: str) -> None:
        super().__init__(f"level {quote(key)} not found", metadata={"level_key": key})


class BoostNotFound(NotFound):
    reason = "BOOST_NOT_FOUND"

    def __init__(self, boost_id: str) -> None:
        super().__init__(f"boost {quote(boost_id)} not found", metadata={"boost_id": boost_id})


class EntryNotFound(NotFound):
    reason = "ENTRY_NOT_FOUND"

    def __init__(self, entry_id: str) -> None:
        super().__init__(
            f"ledger entry {quote(entry_id)} not found", metadata={"entry_id": entry_id}
        )


class NoMatchingTrigger(NotFound):
    reason = "NO_MATCHING_TRIGGER"

    def __init__(self, event_type: str) -> None:
        super().__init__(
            f"no trigger names event type {quote(event_type)}",
            metadata={"event_type": event_type},
        )


class AlreadyExists(TallyError):
    category = Category.ALREADY_EXISTS


class SystemExists(AlreadyExists):
    reason = "SYSTEM_EXISTS"

    def __init__(self, key: str) -> None:
        super().__init__(f"points system {quote(key)} already exists", metadata={"system_key": key})


class LevelExists(AlreadyExists):
    reason = "LEVEL_EXISTS"

    def __init__(self, system_key: str, what: str, value: str) -> None:
        super().__init__(
            f"points system {quote(system_key)} already has a level with {what} {quote(value)}",
            metadata={"system_key": system_key, what: value},
        )


class IdempotencyKeyReused(AlreadyExists):
    reason = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self, key: str) -> None:
        super().__init__(
            f"idempotency key {quote(key)} was already used for a different request",
            metadata={"idempotency_key": key},
        )


class PreconditionFailed(TallyError):
    category = Category.PRECONDITION


class InsufficientPoints(PreconditionFailed):
    reason = "INSUFFICIENT_POINTS"

    def __init__(self, available: int, requested: int) -> None:
        super().__init__(
            f"insufficient points: {available} available, {requested} requested",
            metadata={"available": str(available), "requested": str(requested)},
        )
        self.available = available
        self.requested = requested


class AlreadyReversed(PreconditionFailed):
    reason = "ALREADY_REVERSED"

    def __init__(self, entry_id: str, reversal_id: str) -> None:
        super().__init__(
            f"ledger entry {quote(entry_id)} was already reversed by {reversal_id}",
            metadata={"entry_id": entry_id, "reversal_entry_id": reversal_id},
        )


class NotReversible(PreconditionFailed):
    reason = "NOT_REVERSIBLE"

    def __init__(self, entry_id: str, entry_type: str, why: str) -> None:
        """`entry_type` as the API names it, e.g. ENTRY_TYPE_EXPIRE."""
        super().__init__(
            f"ledger entry {quote(entry_id)} cannot be reversed: {why}",
            metadata={"entry_id": entry_id, "entry_type": entry_type},
        )

    @classmethod
    def of(cls, entry_id: str, entry_type: EntryType, why: str) -> NotReversible:
        """The error for an entry of this type: its metadata names the type as callers know
        it (the API's EntryType enum), as every error's metadata is in the caller's terms."""
        return cls(entry_id, f"ENTRY_TYPE_{entry_type.value}", why)


class RateLimited(TallyError):
    reason = "RATE_LIMITED"
    category = Category.EXHAUSTED

    def __init__(self, retry_after_seconds: float, metadata: dict[str, str] | None = None) -> None:
        super().__init__(f"rate limited; retry after {retry_after_seconds:.3f}s", metadata=metadata)
        self.retry_after_seconds = retry_after_seconds


class Unauthenticated(TallyError):
    """The call did not say, or could not prove, who makes it."""

    category = Category.UNAUTHENTICATED


class ApiKeyMissing(Unauthenticated):
    reason = "API_KEY_MISSING"

    def __init__(self) -> None:
        super().__init__(
            "the call needs an API key in the x-api-key metadata (or a user token as "
            "authorization: Bearer)",
            metadata={"metadata_key": "x-api-key"},
        )


class ApiKeyInvalid(Unauthenticated):
    reason = "API_KEY_INVALID"

    def __init__(self) -> None:
        # Never quote what was sent: it may be a real key with a typo.
        super().__init__("the x-api-key matches no key", metadata={"metadata_key": "x-api-key"})


class ApiKeyRevoked(Unauthenticated):
    reason = "API_KEY_REVOKED"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"API key {key_id} was revoked", metadata={"key_id": key_id})


class TokenInvalid(Unauthenticated):
    reason = "TOKEN_INVALID"

    def __init__(self, why: str) -> None:
        super().__init__(f"invalid user token: {why}", metadata={"metadata_key": "authorization"})


class TokenExpired(Unauthenticated):
    reason = "TOKEN_EXPIRED"

    def __init__(self, expire_time: str) -> None:
        super().__init__(
            f"the user token expired at {expire_time}", metadata={"expire_time": expire_time}
        )


class ScopeInsufficient(TallyError):
    """The caller is known, but may not make this call (or name this system or user)."""

    reason = "SCOPE_INSUFFICIENT"
    category = Category.PERMISSION_DENIED

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message, metadata=metadata)


class StoreUnavailable(TallyError):
    """The store could not complete the call; retrying with the same idempotency key is safe."""

    reason = "STORE_UNAVAILABLE"
    category = Category.UNAVAILABLE

    def __init__(self, detail: str = "the store is unavailable; retry later") -> None:
        # The API layer adds the metadata `operation` (the RPC), which only it knows.
        super().__init__(detail)


class ServerStopping(StoreUnavailable):
    """This server process is stopping and did not run the call: retry (the same
    idempotency key is safe) after `retry_after_seconds`, by when it has gone and the
    caller meets another process, or this server started again."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__("the server is shutting down; retry (the same idempotency key is safe)")
        self.retry_after_seconds = retry_after_seconds


class TransientStoreError(Exception):
    """A store failure worth retrying (serialization failure, deadlock, lost connection).

    Raised by the store, retried by the service layer, never seen by callers: when the
    retry budget runs out it becomes StoreUnavailable.
    """
