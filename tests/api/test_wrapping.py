"""Interceptors build their wrapped handler once per method, not on every call."""

from __future__ import annotations

from typing import Any

import grpc

from server.api.errors import ErrorInterceptor
from server.api.shutdown import ShutdownGate


class Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_a_method_handler_is_wrapped_once_and_reused() -> None:
    registered: dict[str, Any] = {
        name: grpc.unary_unary_rpc_method_handler(lambda request, context: request)
        for name in ("/tally.v1.PointsService/Award", "/tally.v1.PointsService/Deduct")
    }
    inner, outer = ErrorInterceptor(), ShutdownGate()

    def lookup(details: Any) -> Any:
        return registered.get(details.method)

    def chain(method: str) -> Any:
        return outer.intercept_service(
            lambda d: inner.intercept_service(lookup, d), Details(method)
        )

    award = chain("/tally.v1.PointsService/Award")
    assert award is not registered["/tally.v1.PointsService/Award"]  # it is wrapped
    assert chain("/tally.v1.PointsService/Award") is award
    assert chain("/tally.v1.PointsService/Deduct") is not award
    assert chain("/tally.v1.PointsService/Nope") is None
