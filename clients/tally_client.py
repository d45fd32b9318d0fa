"""A typed Python client for Tally.

    from clients.tally_client import TallyClient, InsufficientPoints

    with TallyClient("127.0.0.1:50051", api_key="...") as tally:
        tally.award("xp", "alice", 50, reason="signup")
        try:
            tally.deduct("xp", "alice", 80)
        except InsufficientPoints as error:
            print(error.available, error.requested)

Every write carries an idempotency key (one is made for you when you give none), so the
client retries a write that failed with UNAVAILABLE with the same key, and the server
applies it at most once. Errors are raised as `TallyError` subclasses chosen by status
code (and, for the common ones, by reason), carrying the `google.rpc.ErrorInfo` reason
and metadata and any `BadRequest` field violations.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from tally.v1 import auth_pb2, auth_pb2_grpc, common_pb2, points_pb2, points_pb2_grpc

R = TypeVar("R")


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
        return f"{self.code.name} {self.reason}: {self.message}"


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
    pass


class Unavailable(TallyError):
    """Safe to retry with the same idempotency key (the client does, a few times)."""


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
}
BY_REASON: dict[str, type[TallyError]] = {"INSUFFICIENT_POINTS": InsufficientPoints}


def error_from(call: grpc.RpcError) -> TallyError:
    """The typed error for a failed call, with its rich details unpacked."""
    code: grpc.StatusCode = call.code()
    details: str = call.details() or ""
    fields: dict[str, Any] = {}
    status = rpc_status.from_call(call)
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


def new_idempotency_key() -> str:
    return f"tc-{uuid.uuid4()}"


def _timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if not value:
        return None
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


class TallyClient:
    """Tally's PointsService over one channel; thread-safe, like the channel under it."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        api_key: str | None = None,
        user_token: str | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        channel: grpc.Channel | None = None,
    ) -> None:
        self._own_channel = channel is None
        self.channel = channel or grpc.insecure_channel(target)
        self.points = points_pb2_grpc.PointsServiceStub(self.channel)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.timeout = timeout
        self.attempts = attempts
        # An API key, or (for a front end reading one user's points) a user token.
        self._metadata: tuple[tuple[str, str], ...] = ()
        if api_key:
            self._metadata = (("x-api-key", api_key),)
        elif user_token:
            self._metadata = (("authorization", f"Bearer {user_token}"),)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()

    # -- calls ---------------------------------------------------------------------------

    def _call(self, rpc: Callable[..., Any], request: Any, response_type: type[R]) -> R:
        """One call, retried on UNAVAILABLE (writes carry their idempotency key)."""

        def once() -> R:
            try:
                response = rpc(request, timeout=self.timeout, metadata=self._metadata)
                assert isinstance(response, response_type)
                return response
            except grpc.RpcError as call:
                raise error_from(call) from None

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            retry=retry_if_exception_type(Unavailable),
            reraise=True,
        )
        return retrying(once)

    def create_user_token(
        self, user_id: str, ttl: timedelta | None = None
    ) -> auth_pb2.CreateUserTokenResponse:
        """A token that lets a front end read `user_id`'s points (TallyClient(user_token=...))."""
        request = auth_pb2.CreateUserTokenRequest(user_id=user_id)
        if ttl is not None:
            request.ttl.FromTimedelta(ttl)
        return self._call(self.auth.CreateUserToken, request, auth_pb2.CreateUserTokenResponse)

    def create_system(
        self, key: str, name: str = "", *, max_points: int = 0, description: str = ""
    ) -> points_pb2.PointsSystem:
        system = points_pb2.PointsSystem(
            key=key, name=name, max_points=max_points, description=description
        )
        request = points_pb2.CreateSystemRequest(system=system)
        return self._call(self.points.CreateSystem, request, points_pb2.CreateSystemResponse).system

    def get_system(self, key: str) -> points_pb2.PointsSystem:
        request = points_pb2.GetSystemRequest(key=key)
        return self._call(self.points.GetSystem, request, points_pb2.GetSystemResponse).system

    def award(
        self,
        system_key: str,
        user_id: str,
        amount: int,
        *,
        reason: str = "",
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        expire_time: datetime | None = None,
        skip_boosts: bool = False,
        validate_only: bool = False,
        display_name: str = "",
        email: str = "",
        attributes: dict[str, str] | None = None,
    ) -> points_pb2.AwardResponse:
        request = points_pb2.AwardRequest(
            system_key=system_key,
            user=common_pb2.User(
                id=user_id, display_name=display_name, email=email, attributes=attributes
            ),
            amount=amount,
            reason=reason,
            metadata=_struct(metadata),
            idempotency_key=idempotency_key or new_idempotency_key(),
            expire_time=_timestamp(expire_time),
            skip_boosts=skip_boosts,
            validate_only=validate_only,
        )
        return self._call(self.points.Award, request, points_pb2.AwardResponse)

    def deduct(
        self,
        system_key: str,
        user_id: str,
        amount: int,
        *,
        reason: str = "",
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        validate_only: bool = False,
    ) -> points_pb2.DeductResponse:
        request = points_pb2.DeductRequest(
            system_key=system_key,
            user_id=user_id,
            amount=amount,
            reason=reason,
            metadata=_struct(metadata),
            idempotency_key=idempotency_key or new_idempotency_key(),
            validate_only=validate_only,
        )
        return self._call(self.points.Deduct, request, points_pb2.DeductResponse)

    def reverse(
        self, entry_id: str, *, reason: str = "", idempotency_key: str | None = None
    ) -> points_pb2.ReverseResponse:
        request = points_pb2.ReverseRequest(
            entry_id=entry_id,
            reason=reason,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return self._call(self.points.Reverse, request, points_pb2.ReverseResponse)

    def get_balance(
        self, system_key: str, user_id: str, *, recent_entries: int | None = None
    ) -> points_pb2.GetBalanceResponse:
        request = points_pb2.GetBalanceRequest(
            system_key=system_key, user_id=user_id, recent_entries=recent_entries
        )
        return self._call(self.points.GetBalance, request, points_pb2.GetBalanceResponse)

    def transactions(
        self,
        system_key: str,
        user_id: str,
        *,
        types: tuple[common_pb2.EntryType, ...] = (),
        page_size: int = 100,
    ) -> Iterator[common_pb2.LedgerEntry]:
        """Every entry, newest first, page by page (keyset pages: none missed or repeated)."""
        token = ""
        while True:
            request = points_pb2.ListTransactionsRequest(
                system_key=system_key,
                user_id=user_id,
                types=types,
                page_size=page_size,
                page_token=token,
            )
            page = self._call(
                self.points.ListTransactions, request, points_pb2.ListTransactionsResponse
            )
            yield from page.entries
            token = page.next_page_token
            if not token:
                return

    def history(
        self,
        system_key: str,
        user_id: str,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> Iterator[common_pb2.LedgerEntry]:
        """The user's entries oldest first, streamed."""
        request = points_pb2.StreamHistoryRequest(
            system_key=system_key,
            user_id=user_id,
            start_time=_timestamp(start_time),
            end_time=_timestamp(end_time),
        )
        try:
            for response in self.points.StreamHistory(request, metadata=self._metadata):
                yield from response.entries
        except grpc.RpcError as call:
            raise error_from(call) from None
