"""The error mapping bounds what a status carries, so that it always fits in the trailers."""

from __future__ import annotations

from google.rpc import error_details_pb2

from server.api import errors
from server.domain import errors as domain
from server.domain.errors import FieldViolation

# Characters that grow most on the way out: four bytes of UTF-8, percent-encoded in
# grpc-message and escaped to ten characters by repr() in quoted values.
WIDE = "\U000e0001"


def details(status: object) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest]:
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for packed in status.details:  # type: ignore[attr-defined]
        if packed.Is(info.DESCRIPTOR):
            packed.Unpack(info)
        elif packed.Is(bad.DESCRIPTOR):
            packed.Unpack(bad)
    return info, bad


def test_many_oversized_violations_fit_and_keep_the_first_field() -> None:
    violations = [
        FieldViolation(f"update_mask{WIDE * 100}", f"names {domain.quote(WIDE * 300)} {i}")
        for i in range(1000)
    ]
    status = errors.to_status_proto(domain.ValidationFailed(violations))
    assert errors.trailer_bytes(status) <= errors.STATUS_BUDGET
    info, bad = details(status)
    assert info.reason == "VALIDATION_FAILED"
    assert bad.field_violations[0].field.startswith("update_mask")
    assert 1 <= len(bad.field_violations) < domain.MAX_VIOLATIONS
    left_out = domain.MAX_VIOLATIONS - len(bad.field_violations)
    assert status.message.endswith(f"({left_out} more bad fields not listed)")


def test_values_are_cut_to_their_bounds_at_a_character_boundary() -> None:
    error = domain.SystemNotFound(WIDE * 5000)
    error.metadata["system_key"] = WIDE * 5000  # as if a domain error forgot to cut it
    status = errors.to_status_proto(error)
    info, _ = details(status)
    assert len(status.message.encode()) <= errors.MAX_MESSAGE_BYTES
    assert status.message.endswith("...")
    value = info.metadata["system_key"]
    assert len(value.encode()) <= errors.MAX_METADATA_VALUE_BYTES
    assert value == WIDE * ((errors.MAX_METADATA_VALUE_BYTES - 3) // 4) + "..."


def test_a_small_error_is_left_whole() -> None:
    error = domain.ValidationFailed([FieldViolation("amount", "must be between 1 and 10, got 0")])
    status = errors.to_status_proto(error)
    _, bad = details(status)
    assert status.message == "invalid request: amount: must be between 1 and 10, got 0"
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("amount", "must be between 1 and 10, got 0")
    ]
