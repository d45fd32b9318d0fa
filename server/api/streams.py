"""Budgets of open server streams, apart from the threads that answer unary calls.

In the threaded server every open stream holds a worker thread for as long as it lasts,
and a follower of WatchLedger lasts until it is stopped. So the pool has `threads`
threads for calls plus one for each stream a budget allows, and a stream beyond its
budget is refused at once, RESOURCE_EXHAUSTED `RATE_LIMITED` with a RetryInfo, rather
than taking a thread that unary calls need: streams can never starve them.

Two budgets, each with threads of its own:
- Tally's streams: `max_streams` open at once, of which one API key (with every user
  token it issued) holds at most `max_streams_per_key`, so that one key's followers
  do not refuse every other key's streams. The guard runs before the budget, so the
  caller is known here; a server without keys (--insecure-no-auth) has one trusted
  caller, held only to `max_streams`.
- The services that need no key (health's Watch, server reflection's bidirectional
  ServerReflectionInfo): `max_open_streams`, so that callers without a key cannot take
  the threads of those with one. A health Watch held open is the health servicer's
  blocking form (api/wrapping.py says why), a thread for as long as it lasts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc

from server.api.guard import OPEN_SERVICES
from server.api.wrapping import Streaming, Unary, WrappingInterceptor
from server.domain.access import TRUSTED
from server.domain.errors import RateLimited
from server.services.held import callers

RETRY_SECONDS = 1.0
# A caller's streams are counted under its API key's id.
CallerId = str


class StreamBudget(WrappingInterceptor):
    """Counts the open streams, Tally's per caller and in all, and the keyless ones, and
    refuses one beyond its budget (ErrorInfo metadata `budget`: "per_key", "server" or
    "keyless", and its `limit`)."""

    def __init__(self, max_streams: int, per_caller: int, max_open_streams: int) -> None:
        super().__init__()
        self.max_streams = max_streams
        self.per_caller = min(per_caller, max_streams)
        self.max_open_streams = max_open_streams
        self._lock = threading.Lock()
        self._open = 0  # Tally's streams
        self._by_caller: dict[CallerId, int] = {}
        self._keyless = 0

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        return behaviour

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        if method.startswith(OPEN_SERVICES):
            return self._keyless_stream(behaviour)

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            caller = _caller_id()  # in the call's context (the guard's): the caller is current
            self._take(caller)
            try:
                yield from behaviour(request, context)
            finally:
                self._give_back(caller)

        return stream

    def _keyless_stream(self, behaviour: Streaming) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._lock:
                if self._keyless >= self.max_open_streams:
                    raise _refusal("keyless", self.max_open_streams)
                self._keyless += 1
            try:
                yield from behaviour(request, context)
            finally:
                with self._lock:
                    self._keyless -= 1

        return stream

    def _take(self, caller: CallerId | None) -> None:
        with self._lock:
            if self._open >= self.max_streams:
                raise _refusal("server", self.max_streams)
            if caller is not None:
                mine = self._by_caller.get(caller, 0)
                if mine >= self.per_caller:
                    raise _refusal("per_key", self.per_caller)
                self._by_caller[caller] = mine + 1
            self._open += 1

    def _give_back(self, caller: CallerId | None) -> None:
        with self._lock:
            self._open -= 1
            if caller is not None:
                left = self._by_caller[caller] - 1
                if left:
                    self._by_caller[caller] = left
                else:
                    del self._by_caller[caller]


def _refusal(budget: str, limit: int) -> RateLimited:
    return RateLimited(RETRY_SECONDS, {"budget": budget, "limit": f"{limit} streams"})


def _caller_id() -> CallerId | None:
    """Whom the current stream counts against: its API key, also for the user tokens the
    key issued (a write key mints tokens for any user it likes, so counting each token's
    user apart would let one key hold the whole budget); None for the trusted caller of a
    server without keys, held to the whole budget only."""
    caller = callers.current()
    if caller == TRUSTED:
        return None
    return caller.key_id
