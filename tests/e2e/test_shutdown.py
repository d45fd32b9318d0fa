"""A server that is stopping refuses new calls as a documented, retryable error."""

from __future__ import annotations

import grpc
import pytest

from clients.errors import error_from
from server import app
from server.api.shutdown import REFUSED_RETRY_SECONDS
from server.settings import Settings
from server.store.database import SqlStore
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc


def test_a_call_refused_while_stopping_is_store_unavailable_with_a_retry_delay(
    store: SqlStore,
) -> None:
    """UNAVAILABLE STORE_UNAVAILABLE with the RPC named (retry with the same key), and a
    RetryInfo, so that retrying callers fall quiet and the server stops while none is on
    its way (a call reaching a server in the act of stopping is cut CANCELLED)."""
    server = app.build(Settings(listen="127.0.0.1:0", threads=4, insecure_no_auth=True), store)
    server.start()
    try:
        server.gate.close()  # what stop() does first
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            points = points_pb2_grpc.PointsServiceStub(channel)
            award = points_pb2.AwardRequest(
                system_key="xp", user=common_pb2.User(id="u"), amount=1, idempotency_key="k1"
            )
            with pytest.raises(grpc.RpcError) as refused:
                points.Award(award, timeout=10)
            watch = points.WatchLedger(points_pb2.WatchLedgerRequest(follow=True), timeout=10)
            with pytest.raises(grpc.RpcError) as watch_refused:
                next(watch)
    finally:
        server.stop(grace_seconds=1)
    for call, operation in ((refused.value, "Award"), (watch_refused.value, "WatchLedger")):
        error = error_from(call)
        assert (error.code, error.reason, error.domain) == (
            grpc.StatusCode.UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "tally",
        )
        assert error.metadata["operation"] == operation
        assert error.retry_delay == pytest.approx(REFUSED_RETRY_SECONDS)
