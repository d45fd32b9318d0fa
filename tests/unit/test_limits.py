"""The per-user write limit: a token bucket per (system, user), with bounded memory."""

from __future__ import annotations

import pytest

from server.domain.errors import RateLimited
from server.services.held.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_refusals_that_say_when_to_retry() -> None:
    clock = Clock()
    limits = RateLimiter(rate=4, burst=3, clock=clock)
    for _ in range(3):
        limits.take("xp", "alice")
    with pytest.raises(RateLimited) as refused:
        limits.take("xp", "alice")
    assert refused.value.retry_after_seconds == pytest.approx(0.25)
    assert refused.value.metadata == {
        "limit": "4/s",
        "burst": "3",
        "system_key": "xp",
        "user_id": "alice",
    }
    clock.now += 0.125  # half a token: still refused, and sooner
    with pytest.raises(RateLimited) as again:
        limits.take("xp", "alice")
    assert again.value.retry_after_seconds == pytest.approx(0.125)
    clock.now += 0.125
    limits.take("xp", "alice")  # one token came back


def test_a_refusal_takes_nothing() -> None:
    clock = Clock()
    limits = RateLimiter(rate=1, burst=1, clock=clock)
    limits.take("xp", "alice")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limits.take("xp", "alice")
    clock.now += 1.0
    limits.take("xp", "alice")  # refusals did not push the next token further away


def test_buckets_are_per_system_and_user() -> None:
    limits = RateLimiter(rate=1, burst=1, clock=Clock())
    limits.take("xp", "alice")
    limits.take("xp", "bob")
    limits.take("coins", "alice")
    with pytest.raises(RateLimited):
        limits.take("xp", "alice")


def test_buckets_of_other_names_are_named_in_refusals() -> None:
    """A limiter keyed by something else (an API key's id) says so in its metadata."""
    limits = RateLimiter(rate=2, burst=1, clock=Clock(), names=("key_id",))
    limits.take("k1")
    limits.take("k2")
    with pytest.raises(RateLimited) as refused:
        limits.take("k1")
    assert refused.value.retry_after_seconds == pytest.approx(0.5)
    assert refused.value.metadata == {"limit": "2/s", "burst": "1", "key_id": "k1"}


def test_a_rate_of_zero_is_no_limit() -> None:
    limits = RateLimiter(rate=0, burst=1, clock=Clock())
    for _ in range(1000):
        limits.take("xp", "alice")
    assert len(limits) == 0
    assert not RateLimiter.unlimited().enabled


def test_idle_buckets_are_forgotten() -> None:
    """A bucket that has refilled reads as a new one, so it is dropped: memory follows
    the users written in the last burst/rate seconds, not every user ever seen."""
    clock = Clock()
    limits = RateLimiter(rate=10, burst=20, clock=clock)  # refills in 2 s
    for i in range(1000):
        limits.take("xp", f"user-{i}")
    assert len(limits) == 1000
    clock.now += 2.0
    limits.take("xp", "late")
    assert len(limits) == 1


def test_memory_is_bounded_by_max_buckets() -> None:
    limits = RateLimiter(rate=1, burst=100, clock=Clock(), max_buckets=50)
    for i in range(500):
        limits.take("xp", f"user-{i}")
    assert len(limits) == 50


def test_take_all_is_all_or_nothing() -> None:
    """RecordEvent writes one account per system whose triggers fire: refused whole when
    one has no token, and then the others keep theirs."""
    limits = RateLimiter(rate=1, burst=2, clock=Clock())
    limits.take("coins", "alice")
    limits.take("coins", "alice")
    with pytest.raises(RateLimited) as refused:
        limits.take_all([("xp", "alice"), ("coins", "alice")])
    assert refused.value.metadata["system_key"] == "coins"
    limits.take_all([("xp", "alice"), ("xp", "alice")])  # xp kept both its tokens
    with pytest.raises(RateLimited):
        limits.take("xp", "alice")
