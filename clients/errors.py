"""Tally's errors as Python exceptions, unpacked from the rich status details.

A failed call becomes a `TallyError` subclass chosen by status code (and, for the common
ones, by reason), carrying the `google.rpc.ErrorInfo` reason and metadata, any
`google.rpc.BadRequest` field violations and the `google.rpc.RetryInfo` delay, all decoded
from `grpc-status-details-bin` by grpcio-status, so nobody reads base64. The same for an
error another tool printed as Connect JSON (`buf curl`, whose details stay base64).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

TYPE_URL_PREFIX = "type.googleapis.com/"


@dataclass
class TallyError(Exception):
    """A failed call: its status code, the ErrorInfo reason and metadata, and bad fields."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: dict[str, str] = field(default_factory=dict)
    retry_delay: float | None = None

    def __str__(self) -> str:
        return (
            f"{self.code.name} {self.reason}: {self.message}"
            if self.reason
            else (f"{self.code.name}: {self.message}")
        )

    def describe(self) -> str:
        """The error in words for a person: code, reason, message, then each detail."""
        lines = [str(self)]
        shown = {
            k: v for k, v in self.metadata.items() if not (k == "field" and self.field_violations)
        }
        lines += [f"  {name}: {value}" for name, value in sorted(shown.items())]
        lines += [f"  field {name}: {why}" for name, why in self.field_violations.items()]
        if self.retry_delay is not None:
            lines.append(f"  retry after {self.retry_delay:g} s")
        return "\n".join(lines)


class InvalidArgument(TallyError):
    pass


class NotFound(TallyError):
    pass


class AlreadyExists(TallyError):
    pass


class FailedPrecondition(TallyError):
    pass


class InsufficientPoints(FailedPrecondition):
    @property
    def available(self) -> int:
        return int(self.metadata.get("available", 0))

    @property
    def requested(self) -> int:
        return int(self.metadata.get("requested", 0))


class Unauthenticated(TallyError):
    pass


class PermissionDenied(TallyError):
    pass


class ResourceExhausted(TallyError):
    """RATE_LIMITED carries `retry_delay` (RetryInfo); the client waits that long and retries."""


class Unavailable(TallyError):
    """Safe to retry with the same idempotency key (the client does, a few times)."""


class DeadlineExceeded(TallyError):
    """The call's deadline passed; a write may or may not have been applied (retry with its key)."""


# One table, keyed by status code, then a few reasons that deserve their own class.
BY_CODE: dict[grpc.StatusCode, type[TallyError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}
BY_REASON: dict[str, type[TallyError]] = {"INSUFFICIENT_POINTS": InsufficientPoints}


def error_from(call: grpc.RpcError) -> TallyError:
    """The typed error for a failed call, with its rich details unpacked."""
    code: grpc.StatusCode = call.code()
    details: str = call.details() or ""
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # details that disagree with the status: keep the code and message
        status = None
    return error_from_status(code, details, status.details if status is not None else ())


def error_from_status(
    code: grpc.StatusCode, message: str, details: Iterable[any_pb2.Any]
) -> TallyError:
    """The typed error for a status code, message and packed details (google.rpc.Status)."""
    fields: dict[str, Any] = {}
    for detail in details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            fields.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields["field_violations"] = {v.field: v.description for v in bad.field_violations}
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            fields["retry_delay"] = retry.retry_delay.ToTimedelta().total_seconds()
    cls = BY_REASON.get(fields.get("reason", ""), BY_CODE.get(code, TallyError))
    return cls(code=code, message=message, **fields)


# Connect's code names are gRPC's in lower case, but for this one spelling.
CONNECT_SPELLING = {"canceled": "CANCELLED"}


def is_connect_error(document: Any) -> bool:
    """Whether a JSON document is an error as Connect writes it (and `buf curl` prints it):
    `{"code": "failed_precondition", "message": ..., "details": [{"type", "value"}]}`."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("code"), str)
        and set(document) <= {"code", "message", "details"}
        and all(
            isinstance(d, dict) and {"type", "value"} <= set(d) for d in document.get("details", [])
        )
    )


def packed_details(document: dict[str, Any]) -> list[any_pb2.Any]:
    """The details of a Connect JSON error as the Any messages they are: `value` is the
    message's bytes in base64 (unpadded, standard or URL alphabet)."""
    packed = []
    for detail in document.get("details", []):
        value = str(detail["value"])
        data = base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4))
        packed.append(any_pb2.Any(type_url=f"{TYPE_URL_PREFIX}{detail['type']}", value=data))
    return packed


def error_from_connect_json(document: dict[str, Any]) -> TallyError:
    """The typed error for a Connect JSON error (what `buf curl` prints on a failed call)."""
    name = str(document["code"])
    code_name = CONNECT_SPELLING.get(name, name.upper())
    code = getattr(grpc.StatusCode, code_name, grpc.StatusCode.UNKNOWN)
    return error_from_status(code, str(document.get("message", "")), packed_details(document))
