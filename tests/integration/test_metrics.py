"""What the services record (server/metrics.py), read from the process's instruments:
entries by type as committed, store retries, a follower's lag as it catches up.
The instruments belong to the process, so each test compares before with after."""

from __future__ import annotations

from types import GeneratorType

import pytest

from server import metrics
from server.domain import commands, reports
from server.services.held import feed
from server.services.tally import Tally
from server.services.transactions import in_transaction
from server.services.use_cases import points_changes, watch
from tests.integration.helpers import award, deduct, later, system
from tests.integration.test_uow import FlakyStore, committing, fast_retries

__all__ = ["fast_retries"]  # a fixture, used by name


def sample(name: str, **labels: str) -> float:
    found = metrics.instruments().registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def entries_by_type() -> dict[str, float]:
    return {
        kind: sample("tally_ledger_entries_total", type=kind)
        for kind in ("AWARD", "DEDUCT", "EXPIRE", "REVERSAL")
    }


def moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {kind: after[kind] - before[kind] for kind in before}


def test_entries_are_counted_by_type_once_committed(tally: Tally) -> None:
    """Also those no response names (the expiry a deduction settles first); never a dry
    run's, nor a replay's."""
    system(tally)
    before = entries_by_type()
    award(tally, "alice", 50, expire_time=later(60))
    award(tally, "alice", 10, idempotency_key="k1")
    award(tally, "alice", 10, idempotency_key="k1")  # replayed: nothing written
    award(tally, "alice", 7, validate_only=True)  # a dry run
    taken = deduct(tally, "alice", 5, at=later(120))  # the 50 lapsed at 60: EXPIRE first
    points_changes.reverse(tally, commands.Reverse(taken.entry.id), later(130))
    assert moved(before, entries_by_type()) == {
        "AWARD": 2,
        "DEDUCT": 1,
        "EXPIRE": 1,
        "REVERSAL": 1,
    }


def test_store_retries_are_counted_by_kind(fast_retries: None) -> None:
    before = sample("tally_store_retries_total", kind="write")
    assert in_transaction(FlakyStore(failures=2), committing, write=True) == "ok"  # type: ignore[arg-type]
    assert sample("tally_store_retries_total", kind="write") - before == 2


def test_a_followers_lag_falls_as_it_catches_up(
    tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One entry a chunk: the lag is what was handed out beyond what the follower has
    been sent, summed over followers; a follower that ends takes its share away."""
    monkeypatch.setattr(feed, "CHUNK", 1)
    system(tally)
    first = award(tally, "a", 1).entry.sequence
    for user in ("b", "c"):
        award(tally, user, 1)

    def lag() -> float:
        return sample("tally_feed_lag_items", feed="ledger")

    def followers() -> float:
        return sample("tally_feed_followers", feed="ledger")

    lag_before, followers_before = lag(), followers()
    stream = watch.watch_ledger(tally, reports.WatchLedger("", first - 1, follow=True))
    seen = []
    for _ in range(2):
        seen.extend(next(stream))
        # the generator waits here, just after sending: its lag is as it was read
        assert followers() - followers_before == 1
        assert lag() - lag_before == 3 - (len(seen) - 1)
    assert isinstance(stream, GeneratorType)
    stream.close()
    assert (lag() - lag_before, followers() - followers_before) == (0, 0)
