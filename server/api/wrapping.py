"""Wrapping what a servicer method does: the one mechanism Tally's interceptors share.

A gRPC server interceptor sees a method handler, not a call; to act on each call it must
rebuild the handler around the servicer's behaviour (and, for streams, around iterating
it). Subclasses say how to wrap a unary behaviour and a streaming one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

Unary = Callable[[Any, grpc.ServicerContext], Any]
Streaming = Callable[[Any, grpc.ServicerContext], Iterator[Any]]
Deserializer = Callable[[bytes], Any]


class WrappingInterceptor(grpc.ServerInterceptor):
    """Rebuilds unary-unary and unary-stream handlers around wrapped behaviours."""

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
        return handler
