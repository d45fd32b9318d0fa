"""Hostile input: generated requests over every RPC (tests/faults/hostile.py says what they
hold) each get a documented code with its documented reason, never INTERNAL or UNKNOWN,
in a status that fits the trailers; and afterwards every account equals its ledger.

The short form runs in the normal test command. The full form, 100,000 requests:

    TALLY_HOSTILE_REQUESTS=100000 .venv/bin/pytest tests/faults/test_hostile.py -s -k documented

(add `-k 'documented and sqlite'` for one store); it prints requests sent, codes seen,
the largest status and the invariant checks.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from random import Random

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from server import app
from server.domain.access import Scope
from server.services.operations import api_keys
from server.settings import Settings
from server.store.database import SqlStore
from tally.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    boosts_pb2,
    boosts_pb2_grpc,
    common_pb2,
    levels_pb2,
    levels_pb2_grpc,
    points_pb2,
    points_pb2_grpc,
)
from tests.faults.hostile import (
    DETAILS_KEY,
    STATUS_LIMIT,
    Call,
    Outcome,
    Report,
    Seeded,
    Splicer,
    calls,
    ledger_problems,
    send,
)
from tests.strategies import METHODS

# Requests sent, each drawn by hypothesis or carrying a drawn field (hostile.Splicer).
REQUESTS = int(os.environ.get("TALLY_HOSTILE_REQUESTS", "600"))
# Each hypothesis example draws a request of every RPC; each also goes out spliced into
# good requests (hostile.Splicer), and all of them are sent at once.
BATCH = len(METHODS)
THREADS = 8


@pytest.fixture
def target(store: SqlStore) -> Iterator[str]:
    """The real server, its rate limit off so that writes reach the rules."""
    settings = Settings(listen="127.0.0.1:0", threads=16, rate_limit_per_second=0)
    built = app.build(settings, store)
    built.start()
    yield f"127.0.0.1:{built.port}"
    built.stop(grace_seconds=1)


@pytest.fixture
def channel(target: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(target) as channel:
        yield channel


def key(store: SqlStore, scope: Scope, systems: tuple[str, ...] = ()) -> str:
    return api_keys.create_key(store, f"hostile {scope.value}", scope, systems, app.utc_now()).text


@pytest.fixture
def seeded(store: SqlStore, channel: grpc.Channel) -> Seeded:
    """Two systems with a trigger of each kind, levels, a boost, entries of each user, and
    the ids and page tokens they gave; keys of each scope, a revoked one, a user token."""
    admin = key(store, Scope.ADMIN)
    revoked = api_keys.create_key(store, "revoked", Scope.ADMIN, (), app.utc_now())
    api_keys.revoke_key(store, revoked.key.id, app.utc_now())
    md = (("x-api-key", admin),)
    points = points_pb2_grpc.PointsServiceStub(channel)
    levels = levels_pb2_grpc.LevelsServiceStub(channel)
    boosts = boosts_pb2_grpc.BoostsServiceStub(channel)
    ids: list[str] = []
    entries: list[str] = []
    triggers: list[str] = []
    boost_ids: list[str] = []
    for system in (
        points_pb2.PointsSystem(key="xp"),
        points_pb2.PointsSystem(
            key="capped", max_points=1000, level_basis=points_pb2.LEVEL_BASIS_LIFETIME_EARNED
        ),
    ):
        points.CreateSystem(points_pb2.CreateSystemRequest(system=system), metadata=md)
        active = points_pb2.TRIGGER_STATUS_ACTIVE
        for trigger in (
            points_pb2.Trigger(type=points_pb2.TRIGGER_TYPE_EVENT, points=5, event_type="lesson"),
            points_pb2.Trigger(
                type=points_pb2.TRIGGER_TYPE_METRIC,
                points=-3,
                event_type="steps",
                metric_threshold=0.5,
            ),
            points_pb2.Trigger(type=points_pb2.TRIGGER_TYPE_USER_IDENTIFIED, points=10),
            points_pb2.Trigger(
                type=points_pb2.TRIGGER_TYPE_TIME_INTERVAL,
                points=1,
                interval_unit=points_pb2.INTERVAL_UNIT_HOURS,
                interval_count=1,
            ),
        ):
            trigger.status = active
            made = points.CreateTrigger(
                points_pb2.CreateTriggerRequest(system_key=system.key, trigger=trigger), metadata=md
            )
            triggers.append(made.trigger.id)
        for level_key, threshold in (("bronze", 0), ("silver", 100)):
            level = levels.CreateLevel(
                levels_pb2.CreateLevelRequest(
                    system_key=system.key, level=common_pb2.Level(key=level_key, points=threshold)
                ),
                metadata=md,
            )
            ids.append(level.level.id)
        created = boosts.CreateBoosts(
            boosts_pb2.CreateBoostsRequest(
                system_key=system.key, boosts=[boosts_pb2.Boost(name="double", multiplier=2)]
            ),
            metadata=md,
        )
        boost_ids += [b.id for b in created.created]
        for user in ("alice", "bob"):
            for n in range(3):
                awarded = points.Award(
                    points_pb2.AwardRequest(
                        system_key=system.key,
                        user=common_pb2.User(id=user),
                        amount=40,
                        idempotency_key=f"seed-{n}",
                        expire_time=timestamp_pb2.Timestamp(
                            seconds=int((app.utc_now() + timedelta(days=30)).timestamp())
                        ),
                    ),
                    metadata=md,
                )
                entries.append(awarded.entry.id)
            deducted = points.Deduct(
                points_pb2.DeductRequest(
                    system_key=system.key, user_id=user, amount=15, idempotency_key="seed-d"
                ),
                metadata=md,
            )
            entries.append(deducted.entry.id)
    page_tokens = [
        points.ListTransactions(
            points_pb2.ListTransactionsRequest(system_key="xp", user_id="alice", page_size=1),
            metadata=md,
        ).next_page_token,
        points.ListSystems(points_pb2.ListSystemsRequest(page_size=1), metadata=md).next_page_token,
        boosts.ListBoosts(
            boosts_pb2.ListBoostsRequest(system_key="xp", page_size=1), metadata=md
        ).next_page_token,
    ]
    token = auth_pb2_grpc.AuthServiceStub(channel).CreateUserToken(
        auth_pb2.CreateUserTokenRequest(user_id="alice"), metadata=md
    )
    return Seeded(
        admin=admin,
        others=(
            key(store, Scope.WRITE),
            key(store, Scope.READ),
            key(store, Scope.ADMIN, ("capped",)),
            revoked.text,
        ),
        tokens=(token.token,),
        systems=("xp", "capped"),
        users=("alice", "bob", "carol"),
        ids=(*ids, *entries, *triggers, *boost_ids, str(uuid.uuid4())),
        page_tokens=tuple(t for t in page_tokens if t),
        entries=tuple(entries),
        triggers=tuple(triggers),
        boosts=tuple(boost_ids),
    )


def test_hostile_requests_get_documented_answers(
    store: SqlStore, channel: grpc.Channel, seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    report = Report()
    splicer = Splicer(seeded, (("x-api-key", seeded.admin),))
    pool = ThreadPoolExecutor(THREADS)

    def batches(examples: int) -> Callable[[], None]:
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            # Every answer is checked, and all problems reported at the end, rather than
            # the first shrunk: a batch of concurrent calls does not replay exactly anyway.
            database=None,
            phases=[Phase.generate],
        )
        @given(batch=calls(seeded), rng=st.randoms())
        def run(batch: tuple[Call, ...], rng: Random) -> None:
            everything = [c for call in batch for c in (call, *splicer.spliced(call, rng))]
            report.drawn += len(batch)

            def one(call: Call) -> Outcome:
                outcome = send(channel, call.service, call.method, call.request, call.metadata)
                splicer.learn(outcome, call.method)
                return outcome

            for outcome in pool.map(one, everything):
                report.add(outcome)

        return run

    try:
        while report.sent < REQUESTS:
            # About two requests go out per request drawn (hostile.Splicer).
            batches(math.ceil((REQUESTS - report.sent) / (2 * BATCH)))()
    finally:
        pool.shutdown()
        accounts, problems = ledger_problems(store)
        with capsys.disabled():
            print(f"\nhostile input on {store.engine.dialect.name}:")
            for line in report.lines():
                print(f"  {line}")
            print(
                f"  invariants: {accounts} accounts checked (balance == sum(ledger) == earned - "
                f"spent - expired, >= 0, entry counts, last balance_after): "
                f"{len(problems)} problems"
            )
            for problem in report.problems[:10] + problems[:10]:
                print(f"    {problem[:2000]}")
    assert report.problems == []
    assert report.sent >= REQUESTS
    assert set(report.methods) == {m.name for _, m in METHODS}
    assert report.max_status <= STATUS_LIMIT
    assert problems == []


def error_details(
    outcome: Outcome,
) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest]:
    status = status_pb2.Status.FromString(dict(outcome.trailers)[DETAILS_KEY])
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad.DESCRIPTOR):
            detail.Unpack(bad)
    return info, bad


WIDE = "\U000e0001"  # four bytes of UTF-8, ten characters once repr() escapes it


def test_oversized_update_system_is_invalid_argument_naming_the_field(
    channel: grpc.Channel, seeded: Seeded
) -> None:
    """Seen by a hostile user: this answer overflowed the trailers (24 KiB of details), so
    the client saw RESOURCE_EXHAUSTED instead of the error."""
    service = points_pb2.DESCRIPTOR.services_by_name["PointsService"]
    request = points_pb2.UpdateSystemRequest(
        system=points_pb2.PointsSystem(key="xp", name="Experience"),
        update_mask=field_mask_pb2.FieldMask(paths=[WIDE * 300 + str(i) for i in range(30)]),
    )
    outcome = send(
        channel,
        service,
        service.methods_by_name["UpdateSystem"],
        request,
        (("x-api-key", seeded.admin),),
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert outcome.size <= STATUS_LIMIT
    info, bad = error_details(outcome)
    assert info.reason == "VALIDATION_FAILED"
    assert info.metadata["field"] == "update_mask"
    assert bad.field_violations[0].field == "update_mask"
    assert outcome.problems() == []


def test_many_bad_attribute_keys_are_invalid_argument_naming_the_field(
    channel: grpc.Channel, seeded: Seeded
) -> None:
    service = points_pb2.DESCRIPTOR.services_by_name["PointsService"]
    request = points_pb2.AwardRequest(
        system_key="xp",
        amount=1,
        user=common_pb2.User(id="alice", attributes={WIDE * 300 + str(i): "v" for i in range(100)}),
    )
    outcome = send(
        channel, service, service.methods_by_name["Award"], request, (("x-api-key", seeded.admin),)
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert outcome.size <= STATUS_LIMIT
    info, bad = error_details(outcome)
    assert info.metadata["field"] == "user.attributes"
    assert {v.field for v in bad.field_violations} == {"user.attributes"}
