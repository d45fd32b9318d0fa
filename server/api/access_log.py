"""One structured log line per call: method, status code, duration and the id of the
API key that made it (never the key or a token).

Logged by `tally.access` at INFO, the fields as the record's extra fields (`method`,
`code`, `ms`, `key_id`), so that with TALLY_LOG_FORMAT=json (server/logs.py) the line is
one object:
{"time": "...", "level": "INFO", "logger": "tally.access",
 "message": "/tally.v1.PointsService/Award OK 3.1 ms key 4f2a9c0e11b7",
 "method": "/tally.v1.PointsService/Award", "code": "OK", "ms": 3.1, "key_id": "4f2a9c0e11b7"}
and in text the message alone. `key_id` is empty when the call named no valid key (and
for health checks).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from server.api.wrapping import (
    Streaming,
    Unary,
    WrappingInterceptor,
    iterate_in,
    status_name,
)

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
                code = status_name(context)
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
                code = status_name(context)
                raise
            finally:
                _write(method, code, started, note)

        return stream


def _write(method: str, code: str, started: float, note: _Note) -> None:
    ms = round((time.perf_counter() - started) * 1000, 3)
    log.info(
        "%s %s %s ms key %s",
        method,
        code,
        ms,
        note.key_id or "-",
        extra={"method": method, "code": code, "ms": ms, "key_id": note.key_id},
    )
