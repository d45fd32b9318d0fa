"""Idempotency keys: a repeat of a call returns the first call's response, once.

A key is remembered with a fingerprint of the request it came with and the response it
got (services/pipeline/codec.py), in the same transaction as the entries that response describes.
Keys live in the user's rows (scope = system key, or '' for user-wide keys), so all of it
stays on one shard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from server.domain.errors import IdempotencyKeyReused
from server.domain.model import Trigger
from server.services.pipeline import codec
from server.services.pipeline.results import EventResult, WriteResult
from server.services.ports import StoredResponse

fingerprint = codec.fingerprint


def replay(
    stored: StoredResponse | None,
    request_hash: str,
    *,
    key: str,
    triggers: Mapping[str, Trigger] | None = None,
) -> WriteResult | EventResult | None:
    """The remembered response (as read under the user's lock, so that racing repeats
    see each other's writes), or None when the key is new."""
    if stored is None:
        return None
    if stored.request_hash != request_hash:
        raise IdempotencyKeyReused(key)
    return dataclasses.replace(codec.loads(stored.response, triggers), replayed=True)


def remember(result: WriteResult | EventResult, request_hash: str) -> StoredResponse:
    return StoredResponse(request_hash, codec.dumps(result))
