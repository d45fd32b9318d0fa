"""Page tokens: opaque, bound to the query that made them, keyed on a position.

A token says where the last page ended (a sequence number or a key), so the next page is
a keyset read that costs what the first did and never shifts when new rows arrive. It
also carries a fingerprint of the query, so a token from one list is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import TypeVar

from server.domain.errors import FieldViolation, ValidationFailed

P = TypeVar("P", int, str)
MAX_POSITION = 2**63 - 1
MAX_KEY_CHARS = 255


def _in_range(position: int | str) -> bool:
    if isinstance(position, int):
        return 0 <= position <= MAX_POSITION
    return len(position) <= MAX_KEY_CHARS and "\x00" not in position


def query_id(*parts: object) -> str:
    """A short fingerprint of what a list was asked for."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def encode(position: str | int, query: str) -> str:
    raw = json.dumps({"p": position, "q": query}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, query: str, kind: type[P]) -> P | None:
    """The position a token holds, of the type its list uses (None for no token);
    VALIDATION_FAILED naming `page_token` for a token this query did not give.

    Tokens are opaque, not secret: a caller can forge one, so the position is checked to
    be something the store can compare with (a sequence fits in int64)."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = data["p"]
        if data["q"] == query and type(position) is kind and _in_range(position):
            return position
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise _refused()


def at(time: datetime, row_id: str) -> str:
    """The position of a row in a list ordered by (time, id): for `encode`."""
    return f"{time.isoformat()}|{row_id}"


def time_and_id(position: str | None) -> tuple[datetime, str] | None:
    """The (time, id) a position made by `at` holds (None for none); VALIDATION_FAILED
    naming `page_token` for anything else, as a forged token may hold."""
    if position is None:
        return None
    when, bar, row_id = position.partition("|")
    try:
        time = datetime.fromisoformat(when)
    except ValueError:
        raise _refused() from None
    if not bar or time.tzinfo is None:
        raise _refused()
    return time, row_id


def _refused() -> ValidationFailed:
    return ValidationFailed(
        [FieldViolation("page_token", "is not a token this list gave for the same request")]
    )
