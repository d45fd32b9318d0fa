"""The one place where domain errors become gRPC statuses.

Every error carries a `google.rpc.ErrorInfo` (domain "tally", the error's reason and
metadata); validation errors add `google.rpc.BadRequest` naming each bad field, rate
limits add `google.rpc.RetryInfo`. A request that cannot be decoded is bad input too
(gRPC alone would answer INTERNAL). Anything unexpected becomes a bare INTERNAL whose
details go only to the log. The interceptor covers unary calls and the iteration of
server streams alike, so servicers never handle errors themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server import metrics
from server.api.wrapping import Deserializer, Streaming, Unary, WrappingInterceptor
from server.domain.errors import (
    Category,
    FieldViolation,
    RateLimited,
    ServerStopping,
    StoreUnavailable,
    TallyError,
    ValidationFailed,
)

log = logging.getLogger(__name__)

DOMAIN = "tally"

CODES: dict[Category, grpc.StatusCode] = {
    Category.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Category.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Category.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Category.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Category.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Category.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Category.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Category.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


def status_code(error: TallyError) -> grpc.StatusCode:
    return CODES[error.category]


def to_status_proto(error: TallyError) -> status_pb2.Status:
    details = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    ]
    if isinstance(error, ValidationFailed):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    if isinstance(error, RateLimited | ServerStopping):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_seconds * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)
        packed.append(any_detail)
    code: grpc.StatusCode = status_code(error)
    return status_pb2.Status(code=code.value[0], message=error.message, details=packed)


def to_status(error: TallyError) -> grpc.Status:
    return rpc_status.to_status(to_status_proto(error))  # type: ignore[no-any-return]


INTERNAL = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


def with_operation(error: TallyError, operation: str) -> TallyError:
    """The error with the metadata only the API layer knows: STORE_UNAVAILABLE names the
    operation (the RPC) that could not complete."""
    if isinstance(error, StoreUnavailable) and "operation" not in error.metadata:
        error.metadata["operation"] = operation
    return error


def _abort(context: grpc.ServicerContext, error: Exception, method: str) -> None:
    if isinstance(error, TallyError):
        operation = method.rsplit("/", 1)[-1]
        if isinstance(error, StoreUnavailable):
            metrics.instruments().store_unavailable.labels(operation).inc()
        context.abort_with_status(to_status(with_operation(error, operation)))
    if isinstance(error, NotImplementedError):  # generated base classes for RPCs to come
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    log.exception("unexpected error in %s", method, exc_info=error)
    context.abort_with_status(rpc_status.to_status(INTERNAL))


class Undecodable:
    """What a request that could not be decoded becomes, so that it is answered like any
    other bad input rather than by gRPC's own INTERNAL "Exception deserializing request"."""

    def __init__(self, error: DecodeError) -> None:
        self.error = error


def _check_decoded(request: Any) -> None:
    if isinstance(request, Undecodable):
        raise ValidationFailed(
            [FieldViolation("request", f"is not a valid message: {str(request.error)[:100]}")]
        )


class ErrorInterceptor(WrappingInterceptor):
    """Maps exceptions raised by servicers (and by stream iteration) to statuses."""

    def wrap_deserializer(self, deserializer: Deserializer | None) -> Deserializer | None:
        if deserializer is None:
            return None
        decode = deserializer

        def tolerant(data: bytes) -> Any:
            try:
                return decode(data)
            except DecodeError as error:  # corrupt bytes, or nesting past protobuf's limit
                return Undecodable(error)

        return tolerant

    def wrap_unary(self, behaviour: Unary, method: str) -> Unary:
        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                _check_decoded(request)
                return behaviour(request, context)
            except Exception as error:
                if _is_abort(error, context):
                    raise
                _abort(context, error, method)

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                _check_decoded(request)
                yield from behaviour(request, context)
            except Exception as error:
                if _is_abort(error, context):
                    raise
                _abort(context, error, method)

        return stream


def _is_abort(error: Exception, context: grpc.ServicerContext) -> bool:
    """context.abort() raises a bare Exception after setting the status; let it through."""
    code = getattr(context, "code", lambda: None)()
    return type(error) is Exception and code is not None
