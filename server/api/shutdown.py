"""Draining at shutdown: calls that arrive once stopping has begun are answered
UNAVAILABLE (which callers and gRPC retry policies retry, with the same idempotency key),
while calls already running finish. Only then does the server stop, so no call the server
never ran ends CANCELLED.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc

from server.api.wrapping import Streaming, Unary, WrappingInterceptor

# Health and reflection keep answering while draining: health reports NOT_SERVING.
ALWAYS_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class ShutdownGate(WrappingInterceptor):
    """Counts calls in flight; once closed, refuses new ones with UNAVAILABLE."""

    def __init__(self) -> None:
        super().__init__()
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

    def applies_to(self, method: str) -> bool:
        return not method.startswith(ALWAYS_OPEN)

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            if not self._enter():
                context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry")
            try:
                return behaviour(request, context)
            finally:
                self._leave()

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if not self._enter():
                context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry")
            try:
                yield from behaviour(request, context)
            finally:
                self._leave()

        return stream
