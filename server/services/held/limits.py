"""Per-user write limits: a token bucket per (system, user), held in each process.
(RateLimiter keys its buckets by whatever it is told to: the process also bounds each
caller's look-ups of an entry by id alone on a sharded store, a bucket per API key.)

Every write of a user in a system (award, deduct, each AwardBatch item, reverse, and
RecordEvent once it comes: `take_all`, one token per system it writes) takes one token
first; a bucket holds at most `burst` and refills at `rate` a second. A write without a
token is RESOURCE_EXHAUSTED RATE_LIMITED, with RetryInfo saying when the next token
comes, and nothing is written. The check is a dictionary look-up under a lock: no store
read on the write path.

Buckets live in the process, so with `serve --workers N` each worker keeps its own and a
user's calls spread over the workers may reach up to N times the limit. Memory is
bounded: a bucket left alone long enough to refill completely is forgotten (it would
read as full anyway), and past `max_buckets` the least recently used go first.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence

from server.domain.errors import RateLimited

DEFAULT_RATE = 50.0
DEFAULT_BURST = 100
MAX_BUCKETS = 100_000
# A bucket per caller, by its API key's id: the bound on look-ups of an entry by id alone
# (use_cases/points_changes.py: reverse).
BY_KEY = ("key_id",)


class RateLimiter:
    """Token buckets per (system, user), or per whatever `names` names: a bucket is keyed
    by one value of each, and a refusal's metadata names them. `rate` <= 0 turns the
    limit off."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
        names: tuple[str, ...] = ("system_key", "user_id"),
    ) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.clock = clock
        self.max_buckets = max_buckets
        self.names = names
        # Seconds in which an empty bucket fills: a bucket idle this long is forgotten.
        self.refill_seconds = self.burst / rate if rate > 0 else 0.0
        # bucket (a value of each name) -> (tokens, when counted), least recently used first
        self._buckets: OrderedDict[tuple[str, ...], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def unlimited(cls) -> RateLimiter:
        return cls(rate=0)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, *bucket: str) -> None:
        """Take one token of this bucket (one write of this user in this system), or
        raise RateLimited (with the seconds until a token is there) and take nothing."""
        self.take_all([bucket])

    def take_all(self, accounts: Sequence[tuple[str, ...]]) -> None:
        """One write of each (system_key, user_id), all or none: a call that writes
        several accounts (RecordEvent, one per system whose triggers fire) is refused
        whole, without using up the others' tokens, when one of them has none."""
        if self.rate <= 0 or not accounts:
            return
        now = self.clock()
        wanted = Counter(accounts)
        with self._lock:
            counted = {key: self._tokens(key, now) for key in wanted}
            short = next(
                ((key, counted[key]) for key, n in wanted.items() if counted[key] < n), None
            )
            for key, tokens in counted.items():
                self._buckets[key] = (tokens if short else tokens - wanted[key], now)
            self._forget_idle(now)
        if short is not None:
            bucket, tokens = short
            raise RateLimited(
                (wanted[bucket] - tokens) / self.rate,
                metadata={
                    "limit": f"{self.rate:g}/s",
                    "burst": f"{self.burst:g}",
                    **dict(zip(self.names, bucket, strict=True)),
                },
            )

    def _tokens(self, key: tuple[str, ...], now: float) -> float:
        """The bucket's tokens now (a new bucket is full), marked as just used."""
        held = self._buckets.get(key)
        if held is None:
            return self.burst
        self._buckets.move_to_end(key)
        return min(self.burst, held[0] + (now - held[1]) * self.rate)

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_idle(self, now: float) -> None:
        """Drop buckets from the least recently used end while they are full again (or
        there are too many): each bucket is dropped once, so this is O(1) amortized."""
        buckets = self._buckets
        while buckets:
            key, (_tokens, counted) = next(iter(buckets.items()))
            if len(buckets) <= self.max_buckets and now - counted < self.refill_seconds:
                return
            del buckets[key]
