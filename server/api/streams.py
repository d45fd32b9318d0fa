"""A budget of open server streams, apart from the threads that answer unary calls.

In the threaded server every open stream holds a worker thread for as long as it lasts,
and a follower of WatchLedger lasts until it is stopped. So the pool has `threads`
threads for calls plus `max_streams` more, and a stream beyond `max_streams` open ones
is refused at once, RESOURCE_EXHAUSTED `RATE_LIMITED` with a RetryInfo, rather than
taking a thread that unary calls need: followers can never starve them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc

from server.api.shutdown import ALWAYS_OPEN
from server.api.wrapping import Streaming, Unary, WrappingInterceptor
from server.domain.errors import RateLimited

RETRY_SECONDS = 1.0


class StreamBudget(WrappingInterceptor):
    """Counts the open streams of Tally's services and refuses one beyond the budget."""

    def __init__(self, max_streams: int) -> None:
        super().__init__()
        self.max_streams = max_streams
        self._slots = threading.BoundedSemaphore(max_streams)

    def applies_to(self, method: str) -> bool:
        return not method.startswith(ALWAYS_OPEN)

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        return behaviour

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if not self._slots.acquire(blocking=False):
                raise RateLimited(RETRY_SECONDS)
            try:
                yield from behaviour(request, context)
            finally:
                self._slots.release()

        return stream
