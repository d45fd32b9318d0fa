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

from server.domain.errors import FieldViolation, ValidationFailed


def query_id(*parts: object) -> str:
    """A short fingerprint of what a list was asked for."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def encode(position: str | int, query: str) -> str:
    raw = json.dumps({"p": position, "q": query}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, query: str) -> str | int | None:
    """The position a token holds (None for no token); VALIDATION_FAILED naming
    `page_token` for a token this query did not give."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data["q"] == query and isinstance(data["p"], (str, int)):
            return data["p"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise ValidationFailed(
        [FieldViolation("page_token", "is not a token this list gave for the same request")]
    )
