"""One structured log line per call: method, status code, duration and the id of the
API key that made it (never the key or a token).

Logged by `tally.access` at INFO as one JSON object, e.g.
{"method": "/tally.v1.PointsService/Award", "code": "OK", "ms": 3.1, "key_id": "4f2a9c0e11b7"}
`key_id` is empty when the call named no valid key (and for health checks).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from server.api.wrapping import Streaming, Unary, WrappingInterceptor, iterate_in

log = logging.getLogger("tally.access")


@dataclass
class _Note:
    """What inner interceptors learn about a call that its log line reports."""

    key_id: str = ""


_NOTE: contextvars.ContextVar[_Note | None] = contextvars.ContextVar("tally_call", default=None)


def note_key(key_id: str) -> None:
    """Record which key makes the current call (the guard calls this)."""
    note = _NOTE.get()
    if note is not None:
        note.key_id = key_id


class AccessLog(WrappingInterceptor):
    """Outside the error mapping, so that it sees each call's final status code."""

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            if not log.isEnabledFor(logging.INFO):
                return behaviour(request, context)
            note, started, code = _Note(), time.perf_counter(), "OK"
            token = _NOTE.set(note)
            try:
                return behaviour(request, context)
            except BaseException:
                code = _code(context)
                raise
            finally:
                _NOTE.reset(token)
                _write(method, code, started, note)

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if not log.isEnabledFor(logging.INFO):
                yield from behaviour(request, context)
                return
            note, started, code = _Note(), time.perf_counter(), "OK"
            call_context = contextvars.copy_context()
            call_context.run(_NOTE.set, note)
            try:
                yield from iterate_in(call_context, call_context.run(behaviour, request, context))
            except GeneratorExit:  # the caller went away
                code = "CANCELLED"
                raise
            except BaseException:
                code = _code(context)
                raise
            finally:
                _write(method, code, started, note)

        return stream


def _code(context: grpc.ServicerContext) -> str:
    code = getattr(context, "code", lambda: None)()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _write(method: str, code: str, started: float, note: _Note) -> None:
    ms = round((time.perf_counter() - started) * 1000, 3)
    log.info(json.dumps({"method": method, "code": code, "ms": ms, "key_id": note.key_id}))
