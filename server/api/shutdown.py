"""Draining at shutdown: calls that arrive once stopping has begun are answered
UNAVAILABLE `STORE_UNAVAILABLE` (which callers and gRPC retry policies retry, with the same
idempotency key), while calls already running finish. Only then does the server stop, so
no call the server never ran ends CANCELLED.

The refusal carries a RetryInfo of REFUSED_RETRY_SECONDS: callers that keep retrying at
once would keep arriving until the server stops, and a call that reaches a server in the
act of stopping is cut CANCELLED by gRPC (which callers do not retry). Told to wait, they
fall quiet, the drain sees it and stops the server while none is on its way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc

from server.api.errors import to_status, with_operation
from server.api.wrapping import Streaming, Unary, WrappingInterceptor
from server.domain.errors import ServerStopping

# Health and reflection keep answering while draining: health reports NOT_SERVING.
ALWAYS_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")

T = TypeVar("T")
# How long a stop waits, at most, for calls still on their way to arrive and be refused.
BACKLOG_SECONDS = 3.0
# How long a refused caller is asked to wait: well beyond the quiet spell the drain waits
# for (ShutdownGate.drain), so that the server stops while nobody is calling it.
REFUSED_RETRY_SECONDS = 1.0


class CallExecutor(futures.ThreadPoolExecutor):
    """The server's thread pool, knowing how many calls wait for a thread: those the
    shutdown gate has not seen yet."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._waiting = 0
        self._count = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> futures.Future[T]:
        with self._count:
            self._waiting += 1

        def started(*args: Any, **kwargs: Any) -> T:
            with self._count:
                self._waiting -= 1
            return fn(*args, **kwargs)

        return super().submit(started, *args, **kwargs)

    def waiting(self) -> int:
        return self._waiting


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

    def drain(
        self,
        timeout: float,
        queued: Callable[[], int],
        quiet: float = 0.1,
        backlog: float = BACKLOG_SECONDS,
    ) -> None:
        """Wait (at most `timeout`) for the calls in flight, and those queued for a thread
        (`queued`), to finish or be refused; then for the calls gRPC has not handed over
        yet to arrive and be refused, of which the only sign is that calls keep arriving:
        until none has for `quiet` seconds, but no longer than `backlog` seconds, since a
        caller that keeps retrying would otherwise hold the server up for the whole grace
        period. A call still on its way when the server stops ends CANCELLED, which
        callers do not retry."""
        deadline = time.monotonic() + timeout
        while (self._in_flight > 0 or queued() > 0) and time.monotonic() < deadline:
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
                _refuse(context, method)
            try:
                return behaviour(request, context)
            finally:
                self._leave()

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if not self._enter():
                _refuse(context, method)
            try:
                yield from behaviour(request, context)
            finally:
                self._leave()

        return stream


def _refuse(context: grpc.ServicerContext, method: str) -> None:
    """UNAVAILABLE STORE_UNAVAILABLE, naming the RPC, with a RetryInfo (raises)."""
    refused = with_operation(ServerStopping(REFUSED_RETRY_SECONDS), method.rsplit("/", 1)[-1])
    context.abort_with_status(to_status(refused))
