"""The scenarios: what each one calls, with which requests, against which ceiling.

Adding one is a few lines: a request builder (n serialized requests; make write keys
unique with `ctx.key(name)`) and a `Scenario(...)` in SCENARIOS. `baseline` names a ceiling
(see bench/ceilings.py: transport, db_award, db_award_hot, db_history) or an earlier
scenario; `targets` are the issue's pass/fail lines.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench import seed
from tally.v1 import common_pb2, levels_pb2, points_pb2

POINTS = "/tally.v1.PointsService/"


@dataclass
class Context:
    """What request builders and setups need: the seeded data and a random source."""

    run_id: str
    users: int
    history_entries: int
    big_ledger_entries: int
    rng: random.Random
    deep_tokens: list[str] = field(default_factory=list)
    keys_made: int = 0
    watch_after: int = 0  # where watch_ledger starts (0: the whole ledger)

    def key(self, scenario: str) -> str:
        """An idempotency key no other call of this run uses."""
        self.keys_made += 1
        return f"{self.run_id}-{scenario}-{self.keys_made}"

    def any_user(self) -> str:
        return seed.user_id(self.rng.randrange(self.users))

    def any_boosted_user(self) -> str:
        return seed.boosted_user_id(self.rng.randrange(seed.BOOSTED_USERS))


@dataclass(frozen=True)
class Target:
    """One pass/fail line: `metric` (a key of the scenario's result) `op` `value`."""

    # "ratio", "p99_ms", "p50_ratio", "p99_ratio", "closed_p99_ms" (a closed loop's own
    # p99), "throughput", "memory_growth_mb", "server_cpu_us_per_unit", "lag_p99_ms"
    metric: str
    op: str  # ">=" or "<="
    value: float
    label: str

    def check(self, actual: float | None) -> bool | None:
        if actual is None:
            return None
        return actual >= self.value if self.op == ">=" else actual <= self.value


Builder = Callable[[Context, int], list[bytes]]
Setup = Callable[["Harness"], None]
Teardown = Callable[["Harness"], dict[str, Any]]  # its figures join the scenario's


class Harness:
    """What a setup may use; bench/__main__.py provides the real one."""

    ctx: Context

    def seed_big_ledger(self) -> None:
        raise NotImplementedError

    def open_followers(self, count: int, *, measure_lag: bool) -> None:
        raise NotImplementedError

    def last_sequence(self) -> int:
        raise NotImplementedError

    def close_followers(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Scenario:
    name: str
    rpc: str  # method name in PointsService
    build: Builder
    baseline: str  # a ceiling or an earlier scenario
    title: str
    targets: tuple[Target, ...] = ()
    also: tuple[str, ...] = ()  # more ceilings to show ratios against
    units_per_call: int = 1  # AwardBatch: awards per call
    unit: str = "calls"
    entries_per_call: int = 0  # ledger entries one successful call writes
    streaming: bool = False
    units_per_message: int = 1  # StreamHistory: entries per streamed message
    setup: Setup | None = None
    teardown: Teardown | None = None
    quick: bool = True  # run under --quick
    # The load shape (connections, calls in flight per connection); None = the run's.
    in_flight: tuple[int, int] | None = None
    # "open": latency in an open loop at half the baseline's rate; "closed": the closed
    # loop's own latency at `in_flight` (for a latency run at 1 in flight).
    latency: str = "open"
    # Settings (TALLY_* variables) of a server of its own for this scenario; None = the
    # run's server.
    server_env: dict[str, str] | None = None
    service: str = POINTS  # the path prefix of `rpc`'s service

    @property
    def path(self) -> str:
        return self.service + self.rpc


def award(
    ctx: Context, n: int, *, user: Callable[[], str], name: str, system: str = seed.SYSTEM
) -> list[bytes]:
    return [
        points_pb2.AwardRequest(
            system_key=system,
            user=common_pb2.User(id=user()),
            amount=10,
            reason="bench",
            idempotency_key=ctx.key(name),
        ).SerializeToString()
        for _ in range(n)
    ]


def award_spread(ctx: Context, n: int) -> list[bytes]:
    return award(ctx, n, user=ctx.any_user, name="spread")


def award_hot(ctx: Context, n: int) -> list[bytes]:
    return award(ctx, n, user=lambda: seed.HOT_USER, name="hot")


def award_level_change(ctx: Context, n: int) -> list[bytes]:
    return award(ctx, n, user=ctx.any_user, name="level", system=seed.LEVELS_SYSTEM)


def award_boosted(ctx: Context, n: int) -> list[bytes]:
    return award(ctx, n, user=ctx.any_boosted_user, name="boosted")


def level_summary(ctx: Context, n: int) -> list[bytes]:
    request = levels_pb2.GetLevelSummaryRequest(system_key=seed.SYSTEM)
    return [request.SerializeToString()] * n


def record_event(ctx: Context, n: int) -> list[bytes]:
    return [
        points_pb2.RecordEventRequest(
            user=common_pb2.User(id=ctx.any_user()),
            event_type=seed.EVENT_TYPE,
            idempotency_key=ctx.key("event"),
        ).SerializeToString()
        for _ in range(n)
    ]


def award_big_ledger(ctx: Context, n: int) -> list[bytes]:
    return award(ctx, n, user=ctx.any_user, name="big")


def deduct(ctx: Context, n: int) -> list[bytes]:
    return [
        points_pb2.DeductRequest(
            system_key=seed.SYSTEM,
            user_id=ctx.any_user(),
            amount=1,
            reason="bench",
            idempotency_key=ctx.key("deduct"),
        ).SerializeToString()
        for _ in range(n)
    ]


def get_balance(ctx: Context, n: int) -> list[bytes]:
    return [
        points_pb2.GetBalanceRequest(
            system_key=seed.SYSTEM, user_id=ctx.any_user()
        ).SerializeToString()
        for _ in range(n)
    ]


BATCH = 100


def award_batch(ctx: Context, n: int) -> list[bytes]:
    return [
        points_pb2.AwardBatchRequest(
            items=[
                points_pb2.AwardBatchItem(
                    system_key=seed.SYSTEM,
                    user=common_pb2.User(id=ctx.any_user()),
                    amount=10,
                    reason="bench",
                    idempotency_key=ctx.key("batch"),
                )
                for _ in range(BATCH)
            ]
        ).SerializeToString()
        for _ in range(n)
    ]


def list_deep(ctx: Context, n: int) -> list[bytes]:
    """Pages deep in the long history, from tokens the server handed out (see __main__)."""
    return [
        points_pb2.ListTransactionsRequest(
            system_key=seed.SYSTEM,
            user_id=seed.HISTORY_USER,
            page_size=50,
            page_token=ctx.rng.choice(ctx.deep_tokens),
        ).SerializeToString()
        for _ in range(n)
    ]


def stream_history(ctx: Context, n: int) -> list[bytes]:
    request = points_pb2.StreamHistoryRequest(system_key=seed.SYSTEM, user_id=seed.HISTORY_USER)
    return [request.SerializeToString()] * n


def seed_big_ledger(harness: Harness) -> None:
    harness.seed_big_ledger()


def watch_ledger(ctx: Context, n: int) -> list[bytes]:
    """A follower catching up: every entry after `ctx.watch_after`, then the end."""
    request = points_pb2.WatchLedgerRequest(after_sequence=ctx.watch_after)
    return [request.SerializeToString()] * n


CATCH_UP = 1_000_000


def seed_big_ledger_and_watch_its_tail(harness: Harness) -> None:
    """The 5M-entry ledger; the follower catches up on its last CATCH_UP entries."""
    harness.seed_big_ledger()
    harness.ctx.watch_after = max(0, harness.last_sequence() - CATCH_UP)


def points_analytics(ctx: Context, n: int) -> list[bytes]:
    """The last 30 days of the bench system, by day (the seed dates every entry now),
    counted in Paris: today there, which may be tomorrow in UTC."""
    today = datetime.now(ZoneInfo("Europe/Paris")).date()
    request = points_pb2.GetPointsAnalyticsRequest(
        system_key=seed.SYSTEM,
        start_date=(today - timedelta(days=29)).isoformat(),
        end_date=today.isoformat(),
        time_zone="Europe/Paris",
    )
    return [request.SerializeToString()] * n


FOLLOWERS = 50


def open_followers(harness: Harness) -> None:
    harness.open_followers(FOLLOWERS, measure_lag=True)


def open_idle_followers(harness: Harness) -> None:
    harness.open_followers(FOLLOWERS, measure_lag=False)


def close_followers(harness: Harness) -> dict[str, Any]:
    return harness.close_followers()


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "award_spread",
        "Award",
        award_spread,
        baseline="transport",
        title="Award, spread over the users",
        targets=(
            Target("ratio", ">=", 0.5, ">= 0.5 x transport"),
            Target("p99_ms", "<=", 10.0, "p99 <= 10 ms at half the ceiling"),
            Target("server_cpu_us_per_unit", "<=", 600, "server CPU <= 0.6 ms per award"),
        ),
        also=("db_award",),
        entries_per_call=1,
    ),
    Scenario(
        "award_spread_64",
        "Award",
        award_spread,
        baseline="transport",
        title="Award, spread, 64 calls in flight (16 connections x 4)",
        targets=(Target("ratio", ">=", 0.5, ">= 0.5 x transport"),),
        also=("award_spread", "db_award"),
        entries_per_call=1,
        in_flight=(16, 4),
    ),
    Scenario(
        "award_1_unbatched",
        "Award",
        award_spread,
        baseline="transport",
        title="Award, 1 call in flight, on a server posting one change per transaction",
        entries_per_call=1,
        in_flight=(1, 1),
        latency="closed",
        server_env={"TALLY_MAX_BATCH": "1"},
    ),
    Scenario(
        "award_1",
        "Award",
        award_spread,
        baseline="award_1_unbatched",
        title="Award, 1 call in flight (group commit at low load)",
        targets=(Target("p50_ratio", "<=", 1.2, "p50 <= 1.2 x one transaction per award"),),
        entries_per_call=1,
        in_flight=(1, 1),
        latency="closed",
    ),
    Scenario(
        "award_hot",
        "Award",
        award_hot,
        baseline="award_spread",
        title="Award, all to one hot user",
        targets=(Target("ratio", ">=", 0.8, ">= 0.8 x spread Award"),),
        also=("transport", "db_award_hot"),
        entries_per_call=1,
    ),
    Scenario(
        "award_level_change",
        "Award",
        award_level_change,
        baseline="award_spread",
        title="Award, spread, each crossing a level threshold (1,000 levels)",
        targets=(Target("ratio", ">=", 0.9, "within 10% of an Award that changes no level"),),
        entries_per_call=1,
    ),
    Scenario(
        "award_boosted",
        "Award",
        award_boosted,
        baseline="award_spread",
        title="Award, spread over users with three applicable boosts",
        targets=(Target("ratio", ">=", 0.9, "within 10% of a plain Award"),),
        entries_per_call=1,
    ),
    Scenario(
        "level_summary",
        "GetLevelSummary",
        level_summary,
        baseline="transport",
        title="GetLevelSummary over the 100,000 users (four levels), 1 call in flight",
        # the query's own latency: one call at a time (a summary cannot take half the
        # transport ceiling's rate, where the open loop measures)
        targets=(Target("closed_p99_ms", "<=", 100.0, "p99 well under 100 ms"),),
        service="/tally.v1.LevelsService/",
        in_flight=(1, 1),
        latency="closed",
    ),
    Scenario(
        "record_event",
        "RecordEvent",
        record_event,
        baseline="award_spread",
        title="RecordEvent, spread: three matching triggers in two systems",
        targets=(Target("ratio", ">=", 1 / 1.5, "cost <= 1.5 x an Award (ratio >= 0.67)"),),
        also=("transport",),
        entries_per_call=3,
    ),
    Scenario(
        "deduct",
        "Deduct",
        deduct,
        baseline="transport",
        title="Deduct, spread over the users",
        also=("db_award",),
        entries_per_call=1,
    ),
    Scenario(
        "get_balance",
        "GetBalance",
        get_balance,
        baseline="transport",
        title="GetBalance, spread over the users",
        targets=(Target("ratio", ">=", 0.6, ">= 0.6 x transport"),),
    ),
    Scenario(
        "award_batch",
        "AwardBatch",
        award_batch,
        baseline="db_award",
        title="AwardBatch of 100, spread",
        targets=(Target("throughput", ">=", 10_000, ">= 10,000 awards/s"),),
        units_per_call=BATCH,
        unit="awards",
        entries_per_call=BATCH,
        also=("transport",),
    ),
    Scenario(
        "award_batch_1",
        "AwardBatch",
        award_batch,
        baseline="transport",
        title="AwardBatch of 100 users, 1 call in flight (one batch's own latency)",
        units_per_call=BATCH,
        unit="awards",
        entries_per_call=BATCH,
        in_flight=(1, 1),
        latency="closed",
    ),
    Scenario(
        "list_deep",
        "ListTransactions",
        list_deep,
        baseline="transport",
        title="ListTransactions, pages deep in the long history",
    ),
    Scenario(
        "stream_history",
        "StreamHistory",
        stream_history,
        baseline="db_history",
        title="StreamHistory of the long history",
        unit="entries",
        streaming=True,
        units_per_message=500,  # server/api/convert.py CHUNK_ENTRIES (small entries)
        targets=(
            Target("throughput", ">=", 50_000, ">= 50,000 entries/s"),
            Target("memory_growth_mb", "<=", 50, "server memory growth < 50 MB"),
        ),
    ),
    Scenario(
        "watch_ledger",
        "WatchLedger",
        watch_ledger,
        baseline="stream_history",
        title="WatchLedger catching up on the whole ledger (one follower)",
        unit="entries",
        streaming=True,
        units_per_message=500,  # server/api/convert.py CHUNK_ENTRIES (small entries)
        targets=(
            Target("throughput", ">=", 50_000, ">= 50,000 entries/s"),
            Target("memory_growth_mb", "<=", 50, "server memory growth < 50 MB"),
        ),
        also=("db_history",),
    ),
    Scenario(
        "award_idle_followers",
        "Award",
        award_spread,
        baseline="award_spread",
        title=f"Award, spread, with {FOLLOWERS} idle WatchLedger followers open",
        targets=(
            Target("ratio", ">=", 0.9, "within 10% of Award without followers"),
            Target("p99_ratio", "<=", 1.5, "p99 <= 1.5 x Award without followers"),
        ),
        entries_per_call=1,
        setup=open_idle_followers,
        teardown=close_followers,
    ),
    Scenario(
        "award_followed",
        "Award",
        award_spread,
        baseline="award_spread",
        title=f"Award, spread, {FOLLOWERS} idle followers and one following the awards",
        targets=(
            Target("ratio", ">=", 0.9, "within 10% of Award without followers"),
            Target("p99_ratio", "<=", 1.5, "p99 <= 1.5 x Award without followers"),
            Target("lag_p99_ms", "<=", 100, "live lag p99 < 100 ms"),
        ),
        entries_per_call=1,
        setup=open_followers,
        teardown=close_followers,
    ),
    Scenario(
        "points_analytics",
        "GetPointsAnalytics",
        points_analytics,
        baseline="transport",
        title="GetPointsAnalytics, 30 days by day, over the whole seeded system, 1 in flight",
        targets=(Target("closed_p99_ms", "<=", 500, "well under a second (p99 <= 500 ms)"),),
        in_flight=(1, 1),
        latency="closed",
    ),
    Scenario(
        "award_big_ledger",
        "Award",
        award_big_ledger,
        baseline="award_spread",
        title="Award, spread, after growing the ledger to 5M entries",
        targets=(Target("ratio", ">=", 0.9, "within 10% of Award on the small ledger"),),
        also=("transport",),
        entries_per_call=1,
        setup=seed_big_ledger,
        quick=False,
    ),
    Scenario(
        "watch_ledger_big",
        "WatchLedger",
        watch_ledger,
        baseline="watch_ledger",
        title=f"WatchLedger catching up on the last {CATCH_UP:,} entries of the 5M ledger",
        unit="entries",
        streaming=True,
        units_per_message=500,
        targets=(
            Target("throughput", ">=", 50_000, ">= 50,000 entries/s"),
            Target("memory_growth_mb", "<=", 50, "server memory growth < 50 MB"),
        ),
        setup=seed_big_ledger_and_watch_its_tail,
        quick=False,
    ),
)

BY_NAME = {s.name: s for s in SCENARIOS}
