"""Draining at shutdown: calls that arrive once stopping has begun are answered
UNAVAILABLE (which callers and gRPC retry policies retry, with the same idempotency key),
while calls already running finish. Only then does the server stop, so no call the server
never ran ends CANCELLED.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

# Health and reflection keep answering while draining: health reports NOT_SERVING.
ALWAYS_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class ShutdownGate(grpc.ServerInterceptor):
    """Counts calls in flight; once closed, refuses new ones with UNAVAILABLE."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = True
        self._in_flight = 0
        self._last_arrival = 0.0

    def close(self) -> None:
        with self._lock:
            self._open = False

    def drain(self, timeout: float, quiet: float = 0.1, backlog: float = 1.0) -> None:
        """Wait (at most `timeout`) for the calls in flight to finish, then for calls still
        queued for a thread to reach the gate and be refused: until none has arrived for
        `quiet` seconds, but no longer than `backlog` seconds, since a caller that keeps
        retrying would otherwise hold the server up for the whole grace period."""
        deadline = time.monotonic() + timeout
        while self._in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        deadline = min(deadline, time.monotonic() + backlog)
        while time.monotonic() - self._last_arrival < quiet and time.monotonic() < deadline:
            time.sleep(0.01)

    def _enter(self) -> bool:
        with self._lock:
            self._last_arrival = time.monotonic()
            if not self._open:
                return False
            self._in_flight += 1
            return True

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        method: str = details.method
        if handler is None or method.startswith(ALWAYS_OPEN):
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._gate_unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._gate_stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _gate_unary(self, behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Any:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            if not self._enter():
                context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry")
            try:
                return behaviour(request, context)
            finally:
                self._leave()

        return unary

    def _gate_stream(self, behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Any:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if not self._enter():
                context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry")
            try:
                yield from behaviour(request, context)
            finally:
                self._leave()

        return stream
