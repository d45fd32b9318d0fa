"""Calls counted by method and status code, and timed by method (server/metrics.py).

Outside the error mapping, like the access log, so that it sees each call's final
status. What a call records is bound once per method: a call pays for two clock reads,
one dictionary look-up and two updates of an instrument.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
from prometheus_client import Counter

from server import metrics
from server.api.wrapping import Streaming, Unary, WrappingInterceptor, status_name


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

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        seconds, codes = self._bound(method)

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            started, code = time.perf_counter(), "OK"
            try:
                return behaviour(request, context)
            except BaseException:
                code = status_name(context)
                raise
            finally:
                seconds.observe(time.perf_counter() - started)
                codes.inc(code)

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        seconds, codes = self._bound(method)

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started, code = time.perf_counter(), "OK"
            try:
                yield from behaviour(request, context)
            except GeneratorExit:  # the caller went away
                code = "CANCELLED"
                raise
            except BaseException:
                code = status_name(context)
                raise
            finally:
                seconds.observe(time.perf_counter() - started)
                codes.inc(code)

        return stream
