"""Tally's errors as Python exceptions, unpacked from the rich status details.

A failed call becomes a `TallyError` subclass chosen by status code (and, for the common
ones, by reason), carrying the `google.rpc.ErrorInfo` reason and metadata, any
`google.rpc.BadRequest` field violations and the `google.rpc.RetryInfo` delay, all decoded
from `grpc-status-details-bin` by grpcio-status, so nobody reads base64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


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
    fields: dict[str, Any] = {}
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # details that disagree with the status: keep the code and message
        status = None
    for detail in status.details if status is not None else ():
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
    return cls(code=code, message=details, **fields)
