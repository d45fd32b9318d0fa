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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from server.api.wrapping import (
    Ended,
    Streaming,
    Unary,
    WrappingInterceptor,
    iterate_in,
    iterate_timed,
    run_timed,
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
            note = _Note()
            token = _NOTE.set(note)
            try:
                return run_timed(behaviour, request, context, _writer(method, note))
            finally:
                _NOTE.reset(token)

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            if not log.isEnabledFor(logging.INFO):
                yield from behaviour(request, context)
                return
            note = _Note()
            call_context = contextvars.copy_context()
            call_context.run(_NOTE.set, note)

            def in_call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                return iterate_in(call_context, call_context.run(behaviour, request, context))

            yield from iterate_timed(in_call, request, context, _writer(method, note))

        return stream


def _writer(method: str, note: _Note) -> Ended:
    """What writes a call's log line once it ends."""

    def write(code: str, seconds: float) -> None:
        ms = round(seconds * 1000, 3)
        log.info(
            "%s %s %s ms key %s",
            method,
            code,
            ms,
            note.key_id or "-",
            extra={"method": method, "code": code, "ms": ms, "key_id": note.key_id},
        )

    return write
