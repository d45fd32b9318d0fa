"""User tokens: one user's read access for a front end, signed so that checking one
needs no store read.

A token is `t1.<payload>.<signature>`: the payload is base64url JSON naming the issuing
key's id, the user and the expiry (Unix milliseconds); the signature is HMAC-SHA256 of
the payload under a secret of the issuing key's own, which every process holds with the
keys. So a token dies with its key (a revoked key's secret is no longer accepted), and one
key's tokens cannot be made from another key's.

That secret is `signing_secret` of the key's stored random secret: with a server secret
(the operator's, never in the store), HMAC-SHA256 of the stored one under it, so that a
copy of the store alone cannot sign tokens; without one, the stored secret itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.domain.errors import TokenInvalid
from server.domain.validation import Violations

PREFIX = "t1"
MIN_TTL = timedelta(seconds=1)
MAX_TTL = timedelta(hours=24)
DEFAULT_TTL = timedelta(hours=1)
# Longer than any token this server makes (a 255-character user id, base64 twice over).
MAX_TOKEN_CHARS = 2048
# What a token that no live key's secret verifies is told, whether its key id names no
# key or a key whose secret signed something else: the answer reveals no key ids.
NOT_VERIFIED = "its signature does not verify"
# Derivation label, so that the derived secret is used for nothing but user tokens.
_DERIVATION = b"tally user token v1\x00"


@dataclass(frozen=True)
class TokenClaims:
    key_id: str
    user_id: str
    expire_time: datetime


def check_request(user_id: str, ttl: timedelta | None) -> timedelta:
    """The ttl to use (the default when unset); VALIDATION_FAILED naming bad fields."""
    v = Violations()
    v.user_id("user_id", user_id)
    if ttl is not None and not MIN_TTL <= ttl <= MAX_TTL:
        v.add("ttl", f"must be from 1 second to 24 hours, got {ttl.total_seconds():g} s")
    v.raise_if_any()
    return DEFAULT_TTL if ttl is None else ttl


def sign(claims: TokenClaims, secret: bytes) -> str:
    body = {
        "k": claims.key_id,
        "u": claims.user_id,
        "e": int(claims.expire_time.timestamp() * 1000),
    }
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{PREFIX}.{payload}.{_b64(_mac(payload, secret))}"


def read_claims(token: str) -> tuple[TokenClaims, str, bytes]:
    """The claims a token makes, unverified, with what its signature must cover and the
    signature: the caller finds the issuing key's secret, then calls `verify`."""
    parts = token.split(".")
    if len(token) > MAX_TOKEN_CHARS or len(parts) != 3 or parts[0] != PREFIX:
        raise TokenInvalid("not a Tally user token")
    _, payload, signature = parts
    try:
        body = json.loads(_unb64(payload))
        claims = TokenClaims(
            key_id=_text(body["k"]),
            user_id=_text(body["u"]),
            expire_time=datetime.fromtimestamp(int(body["e"]) / 1000, UTC),
        )
        mac = _unb64(signature)
    except (ValueError, KeyError, TypeError, OverflowError, OSError) as error:
        raise TokenInvalid("malformed") from error
    return claims, payload, mac


def signing_secret(stored: bytes, server_secret: bytes | None) -> bytes:
    """The secret a key's tokens are signed with: HMAC-SHA256 of the key's stored secret
    (a per-key salt) under the server secret, or the stored secret when there is none."""
    if not server_secret:
        return stored
    return hmac.new(server_secret, _DERIVATION + stored, hashlib.sha256).digest()


def verify(payload: str, mac: bytes, secret: bytes) -> None:
    if not hmac.compare_digest(mac, _mac(payload, secret)):
        raise TokenInvalid(NOT_VERIFIED)


def _mac(payload: str, secret: bytes) -> bytes:
    return hmac.new(secret, payload.encode(), hashlib.sha256).digest()


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError("not base64url") from error
