"""Idempotency keys: a repeat of a call returns the first call's response, once (the
decision replays it: domain/batch.py).

A key is remembered with a fingerprint of the request it came with and the response it
got (services/pipeline/codec.py), in the same transaction as the entries that response
describes. Keys live in the user's rows (scope = system key; for a user-wide key,
RecordEvent's, the caller's reach, access.Reach.tag, or '' for those kept before
reaches), so all of it stays on one shard.
"""

from __future__ import annotations

from server.domain.results import EventResult, WriteResult
from server.services.pipeline import codec
from server.services.ports import StoredResponse

fingerprint = codec.fingerprint


def remember(result: WriteResult | EventResult, request_hash: str) -> StoredResponse:
    return StoredResponse(request_hash, codec.dumps(result))
