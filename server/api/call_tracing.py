"""A span per call, when tracing is on (server/tracing.py): opentelemetry-instrumentation-
grpc's server interceptor, outermost, continuing a trace the caller sent (traceparent),
and inside it one that gives the span the call's final status.

The instrumentation notes a status set by context.abort(), but not by
context.abort_with_status(), which is how every Tally error is answered
(api/errors.py): without the second interceptor every failed call's span would say OK.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from server import tracing
from server.api.wrapping import Streaming, Unary, WrappingInterceptor, status_name

# Codes that are the server's fault: a server span with one of these is an error
# (OpenTelemetry's semantic conventions for gRPC); the others are the caller's.
SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)


def interceptors() -> list[grpc.ServerInterceptor]:
    """The tracing interceptors, outermost first; none when tracing is off."""
    provider = tracing.provider()
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import server_interceptor

    return [server_interceptor(tracer_provider=provider), CallStatus()]


def _mark(code: str) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    span = trace.get_current_span()
    span.set_attribute("rpc.grpc.status_code", grpc.StatusCode[code].value[0])
    if code in SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, code))


class CallStatus(WrappingInterceptor):
    """Sets the call span's status code from the status the call ends with."""

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behaviour(request, context)
            except BaseException:
                _mark(status_name(context))
                raise

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from behaviour(request, context)
            except GeneratorExit:
                raise
            except BaseException:
                _mark(status_name(context))
                raise

        return stream
