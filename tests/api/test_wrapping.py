"""Interceptors build their wrapped handler once per method, not on every call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError

from server.api.errors import ErrorInterceptor, Undecodable
from server.api.shutdown import ShutdownGate
from server.domain.errors import RateLimited


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


class Aborted(Exception):
    pass


class Context:
    """Enough of a servicer context for an interceptor's wrapper: aborting records the
    status and raises, as gRPC's does."""

    def __init__(self) -> None:
        self.status: grpc.Status | None = None

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def code(self) -> grpc.StatusCode | None:
        return None if self.status is None else grpc.StatusCode.INTERNAL

    def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise Aborted()


def refusing(requests: Iterator[Any], context: Any) -> Iterator[Any]:
    for request in requests:
        yield request
        raise RateLimited(1.0)


def summing(requests: Iterator[Any], context: Any) -> Any:
    return sum(requests)


def test_client_and_bidirectional_streams_are_wrapped_like_unary_calls_and_streams() -> None:
    """Every interceptor applies to RPCs with a request stream (reflection's is one): the
    error mapping, here, and so the guard, the budgets and the gate."""
    handlers: dict[str, Any] = {
        "/t.S/Bidi": grpc.stream_stream_rpc_method_handler(refusing),
        "/t.S/Client": grpc.stream_unary_rpc_method_handler(summing),
    }
    errors = ErrorInterceptor()
    bidi: Any = errors.intercept_service(lambda d: handlers[d.method], Details("/t.S/Bidi"))
    client: Any = errors.intercept_service(lambda d: handlers[d.method], Details("/t.S/Client"))
    assert bidi is not None
    assert client is not None
    assert bidi.stream_stream is not refusing
    assert client.stream_unary is not summing

    context: Any = Context()
    answers = bidi.stream_stream(iter([1, 2]), context)
    assert next(answers) == 1
    with pytest.raises(Aborted):
        next(answers)
    assert context.status is not None
    assert context.status.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.stream_unary(iter([1, 2, 3]), context) == 6

    # an undecodable message of a request stream is a bad request, as a unary one is
    wrapped = errors.wrap_stream(refusing, "/t.S/Bidi")
    context = Context()
    with pytest.raises(Aborted):
        next(wrapped(iter([Undecodable(DecodeError("garbage"))]), context))
    assert context.status is not None
    assert context.status.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_closed_gate_refuses_a_bidirectional_stream() -> None:
    gate = ShutdownGate()
    gate.close()
    handler: Any = gate.intercept_service(
        lambda d: grpc.stream_stream_rpc_method_handler(refusing), Details("/t.S/Bidi")
    )
    assert handler is not None
    context: Any = Context()
    with pytest.raises(Aborted):
        next(handler.stream_stream(iter([1]), context))
    assert context.status is not None
    assert context.status.code == grpc.StatusCode.UNAVAILABLE
