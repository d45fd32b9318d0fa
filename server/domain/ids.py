"""Ids the domain gives what it makes (ledger entries, events), from a source it is handed.

The domain never draws a random id itself: a decision is handed a seed (the pipeline draws
one per batch) and derives every id from it in the order it needs them, so the same input
always gives the same ids. A derived id is a version-4 UUID in form, like the ids callers
have always seen, and two seeds share none."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable

IdSource = Callable[[], str]  # the next id, each call a new one


def seeded(seed: str) -> IdSource:
    """The ids derived from `seed`, one per call: the n-th is a hash of the seed and n."""
    counter = itertools.count()
    stem = seed.encode()

    def next_id() -> str:
        digest = hashlib.sha256(stem + next(counter).to_bytes(8, "big")).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    return next_id


# For accounts changed outside a decision (the ledger's own tests): a decision always
# hands its accounts the batch's source (domain/book.py).
UNSEEDED: IdSource = seeded("unseeded")
