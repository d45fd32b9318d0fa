"""Under Citus, which shard holds a user's rows and which worker holds that shard.

Citus places a row of `users` (and every per-user table, colocated with it) by
PostgreSQL's `hashtext` of the user id, in the shard whose hash range holds it; the
shards' ranges and their workers are in the coordinator's `pg_dist_shard` and
`pg_dist_placement`. The hash is computed here, in Python, so that grouping a write by
its worker costs no round trip (tests/integration/test_citus.py checks it against the
cluster's own). The map is read again when older than REFRESH_SECONDS. Until then, a shard
moved meanwhile (a rebalance) makes a batch span two workers, which Citus commits in two
phases; a shard split makes one lock statement span two shards, which Citus refuses, and
the writer then posts each change of that batch alone. Either costs speed for a while,
never a wrong write.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

REFRESH_SECONDS = 60.0
_MASK = 0xFFFFFFFF

_SHARDS = text(
    "SELECT s.shardid, s.shardminvalue::int AS low, p.groupid"
    " FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)"
    " WHERE s.logicalrelid = 'users'::regclass AND p.shardstate = 1"
    " ORDER BY s.shardminvalue::int, p.groupid"
)


def hashtext(value: str) -> int:
    """PostgreSQL's hashtext (src/common/hashfn.c, hash_bytes: Bob Jenkins' lookup3 on
    the UTF-8 bytes, little-endian words), as a signed 32-bit integer."""
    key = value.encode()
    n = len(key)
    a = b = c = (0x9E3779B9 + n + 3923095) & _MASK
    i = 0
    while n - i >= 12:
        a = (a + int.from_bytes(key[i : i + 4], "little")) & _MASK
        b = (b + int.from_bytes(key[i + 4 : i + 8], "little")) & _MASK
        c = (c + int.from_bytes(key[i + 8 : i + 12], "little")) & _MASK
        a, b, c = _mix(a, b, c)
        i += 12
    tail = key[i:]
    if len(tail) > 8:  # the lowest byte of c is the length's, in the initial value
        c = (c + (int.from_bytes(tail[8:], "little") << 8)) & _MASK
    if len(tail) > 4:
        b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    if tail:
        a = (a + int.from_bytes(tail[:4], "little")) & _MASK
    c = _final(a, b, c)
    return c - (1 << 32) if c >= 1 << 31 else c


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & _MASK ^ _rot(c, 4)
    c = (c + b) & _MASK
    b = (b - a) & _MASK ^ _rot(a, 6)
    a = (a + c) & _MASK
    c = (c - b) & _MASK ^ _rot(b, 8)
    b = (b + a) & _MASK
    a = (a - c) & _MASK ^ _rot(c, 16)
    c = (c + b) & _MASK
    b = (b - a) & _MASK ^ _rot(a, 19)
    a = (a + c) & _MASK
    c = (c - b) & _MASK ^ _rot(b, 4)
    b = (b + a) & _MASK
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c = (c ^ b) - _rot(b, 14) & _MASK
    a = (a ^ c) - _rot(c, 11) & _MASK
    b = (b ^ a) - _rot(a, 25) & _MASK
    c = (c ^ b) - _rot(b, 16) & _MASK
    a = (a ^ c) - _rot(c, 4) & _MASK
    b = (b ^ a) - _rot(a, 14) & _MASK
    return (c ^ b) - _rot(b, 24) & _MASK


@dataclass(frozen=True)
class Shards:
    """The shards of `users` by the low end of their hash ranges (ascending), and the
    worker (node group) of each."""

    lows: Sequence[int]
    ids: Sequence[int]
    groups: Sequence[int]

    @classmethod
    def read(cls, connection: Connection) -> Shards:
        rows = connection.execute(_SHARDS).all()
        return cls([r.low for r in rows], [r.shardid for r in rows], [r.groupid for r in rows])

    def index(self, user_id: str) -> int:
        """The position of the user's shard (0 when `users` is not distributed yet)."""
        return max(bisect.bisect_right(self.lows, hashtext(user_id)) - 1, 0)

    def shard(self, user_id: str) -> int:
        """The id of the shard that holds the user's rows."""
        return self.ids[self.index(user_id)] if self.ids else 0

    def group(self, user_id: str) -> int:
        """The worker (its node group) that holds the user's shard."""
        return self.groups[self.index(user_id)] if self.groups else 0


class ShardMap:
    """The cluster's Shards, read when first needed and again once they are older than
    `max_age` seconds; shared by a store's threads."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        *,
        max_age: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._shards: Shards | None = None
        self._read_at = 0.0

    def current(self) -> Shards:
        shards = self._shards
        if shards is not None and self._clock() - self._read_at < self._max_age:
            return shards
        with self._lock:
            if self._shards is None or self._clock() - self._read_at >= self._max_age:
                with self._connect() as connection:
                    self._shards = Shards.read(connection)
                self._read_at = self._clock()
            return self._shards
