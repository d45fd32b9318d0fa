"""Which shard and worker hold a user under Citus (store/shard_map.py), without a cluster:
PostgreSQL's hashtext against values the cluster gave (tests/integration/test_citus.py
checks many more against a live one), the shard a hash falls in, and a map that is read
again once it is old, so that a moved shard costs speed for a while, never more."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from server.store import shard_map
from server.store.shard_map import ShardMap, Shards

# SELECT hashtext(...) on PostgreSQL 15 (Citus 13.2 coordinator)
KNOWN = {
    "": -1477818771,
    "alice": 791529341,
    "héllo wörld ☃": -371832097,
    "exactly-12ch": 185894515,
    "a string longer than twenty-four bytes": 456486827,
}


@pytest.mark.parametrize(("text", "hashed"), KNOWN.items())
def test_hashtext_is_postgresqls(text: str, hashed: int) -> None:
    assert shard_map.hashtext(text) == hashed


def test_a_user_is_in_the_shard_whose_range_holds_its_hash() -> None:
    shards = Shards(lows=[-(2**31), 0, 791529341], ids=[101, 102, 103], groups=[1, 2, 1])
    assert (shards.shard("alice"), shards.group("alice")) == (103, 1)  # its hash, the low end
    assert (shards.shard(""), shards.group("")) == (101, 1)  # negative
    assert (shards.shard("exactly-12ch"), shards.group("exactly-12ch")) == (102, 2)
    undistributed = Shards(lows=[], ids=[], groups=[])  # before `users` is distributed
    assert (undistributed.shard("alice"), undistributed.group("alice")) == (0, 0)


class Cluster:
    """What pg_dist_shard and pg_dist_placement say, and how often they were read."""

    def __init__(self, groups: list[int]) -> None:
        self.groups = groups
        self.reads = 0

    @contextmanager
    def connect(self) -> Iterator[Any]:
        self.reads += 1
        yield self

    def execute(self, _statement: Any) -> Any:
        rows = [
            type("Row", (), {"low": low, "shardid": 100 + i, "groupid": group})
            for i, (low, group) in enumerate(zip((-(2**31), 0), self.groups, strict=True))
        ]
        return type("Result", (), {"all": lambda _self: rows})()


def test_the_map_is_read_again_once_it_is_old() -> None:
    cluster = Cluster([1, 2])
    now = [0.0]
    shards = ShardMap(cluster.connect, max_age=60, clock=lambda: now[0])  # type: ignore[arg-type]
    assert shards.current().group("alice") == 2
    cluster.groups = [1, 1]  # the shard moved to the other worker (a rebalance)
    now[0] = 59
    assert shards.current().group("alice") == 2  # still the map read before
    assert cluster.reads == 1
    now[0] = 61
    assert shards.current().group("alice") == 1
    assert cluster.reads == 2
