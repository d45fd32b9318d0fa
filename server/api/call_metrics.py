"""Calls counted by method and status code, and timed by method (server/metrics.py).

Outside the error mapping, like the access log, so that it sees each call's final
status. What a call records is bound once per method: a call pays for two clock reads,
one dictionary look-up and two updates of an instrument.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from prometheus_client import Counter

from server import metrics
from server.api.wrapping import (
    Ended,
    Streaming,
    Unary,
    WrappingInterceptor,
    iterate_timed,
    run_timed,
)


class _Codes:
    """A method's call counters by status code, each bound on first use."""

    def __init__(self, calls: Counter, service: str, method: str) -> None:
        self._calls = calls
        self._service = service
        self._method = method
        self._by_code: dict[str, Any] = {}

    def inc(self, code: str) -> None:
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._calls.labels(self._service, self._method, code)
        counter.inc()


class CallMetrics(WrappingInterceptor):
    def __init__(self, instruments: metrics.Instruments | None = None) -> None:
        super().__init__()
        self.instruments = instruments or metrics.instruments()

    def _bound(self, full_method: str) -> tuple[Any, _Codes]:
        service, _, method = full_method.lstrip("/").partition("/")
        return (
            self.instruments.call_seconds.labels(service, method),
            _Codes(self.instruments.calls, service, method),
        )

    def _ended(self, full_method: str) -> Ended:
        """What a call of this method records when it ends."""
        seconds, codes = self._bound(full_method)

        def ended(code: str, elapsed: float) -> None:
            seconds.observe(elapsed)
            codes.inc(code)

        return ended

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        ended = self._ended(method)

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            return run_timed(behaviour, request, context, ended)

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        ended = self._ended(method)

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            return iterate_timed(behaviour, request, context, ended)

        return stream
