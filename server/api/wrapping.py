"""Wrapping what a servicer method does: the one mechanism Tally's interceptors share.

A gRPC server interceptor sees a method handler, not a call; to act on each call it must
rebuild the handler around the servicer's behaviour (and, for streams, around iterating
it). Subclasses say how to wrap a unary behaviour and a streaming one; every kind of
handler is wrapped: a client-streaming one (its request an iterator of messages) as a
unary one, a bidirectional one as a stream, so that no RPC passes unchecked (server
reflection's ServerReflectionInfo is bidirectional).

A wrapped behaviour is a plain (blocking) one: gRPC's experimental non-blocking form
(`experimental_non_blocking`, a `send_response_callback` argument), which the health
servicer's Watch offers, is not carried over, and the servicer falls back to its
blocking form, which holds a thread for as long as the watch lasts. That is why keyless
streams have a budget and threads of their own (api/streams.py).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import grpc

Unary = Callable[[Any, grpc.ServicerContext], Any]
Streaming = Callable[[Any, grpc.ServicerContext], Iterator[Any]]
Deserializer = Callable[[bytes], Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# What is told of a call once it ends: its final status code's name and its seconds.
Ended = Callable[[str, float], None]


class WrappingInterceptor(grpc.ServerInterceptor):
    """Rebuilds every method handler around wrapped behaviours, once per method: gRPC
    asks on every call, and the wrapped handler is kept for the next.

    `wrap_unary` wraps unary-unary and stream-unary behaviours, `wrap_stream` unary-stream
    and stream-stream ones; for a streaming request the `request` they see is the
    iterator of request messages."""

    def __init__(self) -> None:
        # method -> (the handler gRPC gave, the one built around it)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def applies_to(self, method: str) -> bool:
        return True

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        raise NotImplementedError

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        raise NotImplementedError

    def wrap_deserializer(self, deserializer: Deserializer | None) -> Deserializer | None:
        return deserializer

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        method: str = details.method
        if handler is None or not self.applies_to(method):
            return handler
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        built = self._wrap(handler, method)
        self._wrapped[method] = (handler, built)
        return built

    def _wrap(self, handler: Handler, method: str) -> Handler:
        deserializer = self.wrap_deserializer(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self.wrap_unary(handler.unary_unary, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self.wrap_stream(handler.unary_stream, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self.wrap_unary(handler.stream_unary, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self.wrap_stream(handler.stream_stream, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def status_name(context: grpc.ServicerContext) -> str:
    """The status code a call that raised has been given ("UNKNOWN" when none)."""
    code = getattr(context, "code", lambda: None)()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def run_timed(behaviour: Unary, request: Any, context: grpc.ServicerContext, ended: Ended) -> Any:
    """Run a unary behaviour, timed, and tell `ended` its final code: "OK", or the code a
    call that raised has been given."""
    started, code = time.perf_counter(), "OK"
    try:
        return behaviour(request, context)
    except BaseException:
        code = status_name(context)
        raise
    finally:
        ended(code, time.perf_counter() - started)


def iterate_timed(
    behaviour: Streaming, request: Any, context: grpc.ServicerContext, ended: Ended
) -> Iterator[Any]:
    """Iterate a streaming behaviour, timed to its last item, and tell `ended` its final
    code: "OK", "CANCELLED" when the caller went away, or the code it has been given."""
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
        ended(code, time.perf_counter() - started)


def iterate_in(context: contextvars.Context, items: Iterator[Any]) -> Iterator[Any]:
    """Iterate a stream's items with each step run in `context`: what a stream's body
    sees of context variables then stays with the call, whichever thread runs the
    step, and never leaks into the thread's next call."""
    while True:
        try:
            item = context.run(next, items)
        except StopIteration:
            return
        yield item
