"""GetPointsSummary, GetUserPointsSummary and GetPointsAnalytics over the real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from tally.v1 import common_pb2, points_pb2
from tally.v1.points_pb2_grpc import PointsServiceStub
from tests.e2e.test_api import create_system, error_of


def award(points: PointsServiceStub, user: str, amount: int) -> None:
    points.Award(
        points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id=user), amount=amount)
    )


def test_summaries_and_analytics_answer_from_the_ledger(points: PointsServiceStub) -> None:
    create_system(points)
    for user, amount in [("a", 5), ("b", 30), ("a", 10), ("c", 1)]:
        award(points, user, amount)
    today = datetime.now(UTC).date()
    start, end = (today - timedelta(days=2)).isoformat(), (today + timedelta(days=1)).isoformat()

    summary = points.GetPointsSummary(points_pb2.GetPointsSummaryRequest(system_key="xp"))
    assert len(summary.buckets) == 11
    assert summary.total_users == 3
    assert [getattr(b, "from") for b in summary.buckets[:3]] == [0, 1, 4]  # width ceil(30/10)
    assert [b.users for b in summary.buckets if b.users] == [1, 1, 1]

    mine = points.GetUserPointsSummary(
        points_pb2.GetUserPointsSummaryRequest(
            system_key="xp", user_id="a", start_date=start, end_date=end
        )
    )
    assert [p.date for p in mine.points] == [
        (today + timedelta(days=d)).isoformat() for d in range(-2, 2)
    ]
    assert sum(p.change for p in mine.points) == 15
    assert mine.points[-1].total == 15

    report = points.GetPointsAnalytics(
        points_pb2.GetPointsAnalyticsRequest(
            system_key="xp",
            start_date=start,
            end_date=end,
            aggregation=points_pb2.AGGREGATION_MONTHLY,
            time_zone="Pacific/Kiritimati",  # UTC+14: today may be tomorrow there
            top=2,
        )
    )
    assert sum(p.points for p in report.earned) == 46
    assert [(t.user_id, t.points) for t in report.top_earners] == [("b", 30), ("a", 15)]
    assert report.new_users == 3
    assert report.average_first_14_days == pytest.approx(46 / 3)
    (direct,) = report.triggers
    assert (direct.trigger_id, direct.awards, direct.points) == ("", 4, 46)
    assert not direct.HasField("trigger")


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"time_zone": "Nowhere/Land"}, "time_zone"),
        ({"aggregation": 9}, "aggregation"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"top": 500}, "top"),
    ],
)
def test_bad_requests_name_their_field(
    points: PointsServiceStub, request_fields: dict[str, object], field: str
) -> None:
    create_system(points)
    fields: dict[str, object] = {
        "system_key": "xp",
        "start_date": "2026-01-01",
        "end_date": "2026-01-31",
        **request_fields,
    }
    with pytest.raises(grpc.RpcError) as failed:
        points.GetPointsAnalytics(points_pb2.GetPointsAnalyticsRequest(**fields))  # type: ignore[arg-type]
    code, reason, _metadata, bad = error_of(failed.value)
    assert (code, reason, bad) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION_FAILED", [field])
    with pytest.raises(grpc.RpcError) as failed:
        points.GetPointsSummary(
            points_pb2.GetPointsSummaryRequest(system_key="xp", bucket_count=101)
        )
    assert error_of(failed.value)[3] == ["bucket_count"]
    with pytest.raises(grpc.RpcError) as failed:
        points.GetUserPointsSummary(
            points_pb2.GetUserPointsSummaryRequest(
                system_key="xp", user_id="ghost", start_date="2026-01-01", end_date="2026-01-02"
            )
        )
    assert error_of(failed.value)[:2] == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
