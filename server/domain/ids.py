"""Ids the domain gives what it makes (ledger entries, events), from a source it is handed.

The domain never draws a random id itself: a decision is handed a seed (the pipeline draws
one per batch) and derives every id from it in the order it needs them, so the same input
always gives the same ids. A derived id is a version-4 UUID in form, like the ids callers
have always seen: the seed's hash, plus n for the n-th (a batch's ids are a run of 128-bit
numbers starting at a point as random as its seed; two runs meet with the odds of two
random UUIDs meeting)."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable

IdSource = Callable[[], str]  # the next id, each call a new one


def seeded(seed: str) -> IdSource:
    """The ids derived from `seed`, one per call."""
    start = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:16], "big")
    numbers = itertools.count(start)

    def next_id() -> str:
        return str(uuid.UUID(int=next(numbers) & _BITS, version=4))

    return next_id


_BITS = (1 << 128) - 1


# For accounts changed outside a decision (the ledger's own tests): a decision always
# hands its accounts the batch's source (domain/book.py).
UNSEEDED: IdSource = seeded("unseeded")
