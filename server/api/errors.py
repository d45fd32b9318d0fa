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
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server import metrics
from server.api.scopes import REQUIRED_SCOPE
from server.api.wrapping import Deserializer, Streaming, Unary, WrappingInterceptor
from server.domain.errors import (
    MAX_VIOLATIONS,
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


# gRPC clients refuse response trailers past 16 KiB (grpc.absolute_max_metadata_size) and,
# by default, some past 8 KiB (grpc.max_metadata_size, a soft limit): the caller of an error
# whose details overflow sees RESOURCE_EXHAUSTED instead. Everything an error carries is cut
# here, so that grpc-message (percent-encoded) and grpc-status-details-bin (base64) together
# stay under STATUS_BUDGET bytes whatever the request held.
STATUS_BUDGET = 6 * 1024
MAX_MESSAGE_BYTES = 512
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 256
MAX_METADATA_KEY_BYTES = 64
MAX_METADATA_VALUE_BYTES = 128
MAX_METADATA_ENTRIES = 16
ELLIPSIS = "..."


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` bytes of UTF-8, ending in "..." when it was longer."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len(ELLIPSIS)].decode(errors="ignore") + ELLIPSIS


def trailer_bytes(status: status_pb2.Status) -> int:
    """What a status costs in the trailers: its message percent-encoded (grpc-message),
    and the whole status in base64 (grpc-status-details-bin)."""
    text: str = status.message
    message = sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode())
    size: int = status.ByteSize()
    return message + 4 * -(-size // 3)


def _violations(error: TallyError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    if not isinstance(error, ValidationFailed):
        return []
    return [
        error_details_pb2.BadRequest.FieldViolation(
            field=cut(v.field, MAX_FIELD_BYTES),
            description=cut(v.description, MAX_DESCRIPTION_BYTES),
        )
        for v in error.violations[:MAX_VIOLATIONS]
    ]


def _status(
    error: TallyError,
    message: str,
    violations: list[error_details_pb2.BadRequest.FieldViolation],
) -> status_pb2.Status:
    metadata = {
        cut(key, MAX_METADATA_KEY_BYTES): cut(value, MAX_METADATA_VALUE_BYTES)
        for key, value in list(error.metadata.items())[:MAX_METADATA_ENTRIES]
    }
    details: list[Message] = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata)
    ]
    if isinstance(error, ValidationFailed):
        details.append(error_details_pb2.BadRequest(field_violations=violations))
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
    return status_pb2.Status(code=code.value[0], message=message, details=packed)


def to_status_proto(error: TallyError) -> status_pb2.Status:
    """The error as a google.rpc.Status that fits in the trailers: values cut to their
    bounds, and field violations past what STATUS_BUDGET holds left out (the message
    says how many). The first violation, naming a bad field, is always kept."""
    message = cut(error.message, MAX_MESSAGE_BYTES)
    violations = _violations(error)
    status = _status(error, message, violations)
    kept = len(violations)
    while trailer_bytes(status) > STATUS_BUDGET and kept > 1:
        kept -= 1
        note = f" ({len(violations) - kept} more bad fields not listed)"
        status = _status(
            error, cut(error.message, MAX_MESSAGE_BYTES - len(note)) + note, violations[:kept]
        )
    return status


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


def _check_decoded(request: Any) -> Any:
    """The request, refused when it could not be decoded; a client stream's messages are
    each checked as the servicer takes it."""
    if isinstance(request, Undecodable):
        raise ValidationFailed(
            [FieldViolation("request", f"is not a valid message: {str(request.error)[:100]}")]
        )
    if isinstance(request, Iterator):  # a client stream, not a message
        return (_check_decoded(message) for message in request)
    return request


class ErrorInterceptor(WrappingInterceptor):
    """Maps exceptions raised by servicers (and by stream iteration) to statuses."""

    def __init__(self) -> None:
        super().__init__()
        # Every RPC's STORE_UNAVAILABLE count is shown at 0 from the start (in every
        # worker of a pool too), so that the first one is an increase Prometheus sees.
        counted = metrics.instruments().store_unavailable
        for method in REQUIRED_SCOPE:
            counted.labels(method.rsplit("/", 1)[-1])

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
                return behaviour(_check_decoded(request), context)
            except Exception as error:
                if _is_abort(error, context):
                    raise
                _abort(context, error, method)

        return unary

    def wrap_stream(self, behaviour: Streaming, method: str) -> Streaming:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from behaviour(_check_decoded(request), context)
            except Exception as error:
                if _is_abort(error, context):
                    raise
                _abort(context, error, method)

        return stream


def _is_abort(error: Exception, context: grpc.ServicerContext) -> bool:
    """context.abort() raises a bare Exception after setting the status; let it through."""
    code = getattr(context, "code", lambda: None)()
    return type(error) is Exception and code is not None
