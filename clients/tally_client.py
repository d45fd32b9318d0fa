"""A typed Python client for Tally: every service and RPC, over one channel.

    from clients.tally_client import TallyClient, InsufficientPoints

    with TallyClient("127.0.0.1:50051", api_key="...") as tally:
        tally.award("xp", "alice", 50, reason="signup")
        try:
            tally.deduct("xp", "alice", 80)
        except InsufficientPoints as error:
            print(error.available, error.requested)

It returns the generated stubs' own messages (no parallel model classes). Every call has a
deadline (`timeout`, per attempt). Every write carries an idempotency key (one is made
for you when you give none, once per logical write), so a write that failed with
UNAVAILABLE, or RESOURCE_EXHAUSTED with a RetryInfo (RATE_LIMITED), is retried with the
same key and the server applies it at most once; no other code is retried. Errors are
raised as `TallyError` subclasses (clients/errors.py). `watch_ledger` and
`watch_level_changes` reconnect after UNAVAILABLE and resume after the last sequence seen.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import grpc
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from clients.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InsufficientPoints,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TallyError,
    Unauthenticated,
    Unavailable,
    error_from,
)
from tally.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    boosts_pb2,
    boosts_pb2_grpc,
    common_pb2,
    levels_pb2,
    levels_pb2_grpc,
    points_pb2,
    points_pb2_grpc,
)

__all__ = [
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InsufficientPoints",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "TallyClient",
    "TallyError",
    "Unauthenticated",
    "Unavailable",
    "error_from",
    "new_idempotency_key",
]

R = TypeVar("R")
T = TypeVar("T")


class Page(Protocol):
    """A List RPC's response: its items, and where the next page starts ('' at the end)."""

    next_page_token: str


P = TypeVar("P", bound=Page)


class Sequenced(Protocol):
    @property
    def sequence(self) -> int: ...


S = TypeVar("S", bound=Sequenced)


def new_idempotency_key() -> str:
    return f"tc-{uuid.uuid4()}"


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if not value:
        return None
    made = struct_pb2.Struct()
    made.update(value)
    return made


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def retryable(error: BaseException) -> bool:
    """UNAVAILABLE, and RESOURCE_EXHAUSTED that says when to come back (RATE_LIMITED).

    A RESOURCE_EXHAUSTED without RetryInfo (a message over the size limit) fails the same
    way every time, so it is not repeated.
    """
    if isinstance(error, Unavailable):
        return True
    return isinstance(error, ResourceExhausted) and error.retry_delay is not None


class TallyClient:
    """Tally's PointsService, LevelsService, BoostsService and AuthService over one channel.

    Thread-safe, like the channel under it. `credentials` (grpc.ssl_channel_credentials())
    makes a TLS channel; `options` are passed to the channel as they are.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        api_key: str | None = None,
        user_token: str | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        max_retry_wait: float = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        channel: grpc.Channel | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self._own_channel = channel is None
        if channel is None:
            if credentials is not None:
                channel = grpc.secure_channel(target, credentials, options=list(options))
            else:
                channel = grpc.insecure_channel(target, options=list(options))
        self.channel = channel
        self.points = points_pb2_grpc.PointsServiceStub(channel)
        self.levels = levels_pb2_grpc.LevelsServiceStub(channel)
        self.boosts = boosts_pb2_grpc.BoostsServiceStub(channel)
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.timeout = timeout
        self.attempts = attempts
        self.max_retry_wait = max_retry_wait
        self.sleep = sleep
        # An API key, or (for a front end reading one user's points) a user token.
        self.metadata: tuple[tuple[str, str], ...] = ()
        if api_key:
            self.metadata = (("x-api-key", api_key),)
        elif user_token:
            self.metadata = (("authorization", f"Bearer {user_token}"),)

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

    # -- the machinery -------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        """The server's RetryInfo delay when it gave one, else jittered exponential backoff."""
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TallyError) and error.retry_delay is not None:
            return min(max(error.retry_delay, 0.0), self.max_retry_wait)
        ceiling = min(2.0, 0.05 * 2 ** (state.attempt_number - 1))
        return random.uniform(0, ceiling)

    def call(
        self,
        rpc: Callable[..., Any],
        request: Any,
        response_type: type[R],
        *,
        retry: bool = True,
    ) -> R:
        """One logical call: each attempt with a deadline, retried as `retryable` says.

        The request (and so its idempotency key) is the same object on every attempt.
        """

        def once() -> R:
            try:
                response = rpc(request, timeout=self.timeout, metadata=self.metadata)
            except grpc.RpcError as failed:
                raise error_from(failed) from None
            assert isinstance(response, response_type)
            return response

        if not retry:
            return once()
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(once)

    def _stream(self, rpc: Callable[..., Any], request: Any) -> Iterator[Any]:
        try:
            yield from rpc(request, metadata=self.metadata)
        except grpc.RpcError as failed:
            raise error_from(failed) from None

    def _resume(
        self,
        open_stream: Callable[[int], Iterable[Any]],
        unwrap: Callable[[Any], Iterable[S]],
        after_sequence: int,
        give_up_after: float | None,
    ) -> Iterator[S]:
        """Items in sequence order, reopening the stream after the last one seen.

        UNAVAILABLE (a server restarting, a dropped connection) reconnects with jittered
        backoff, reset by every message received; RATE_LIMITED (the server's budget of open
        streams) waits what its RetryInfo says. `give_up_after` seconds without a message
        end it with that error. Anything else is raised at once. An item at or below the
        last sequence seen is dropped, so the caller never sees one twice.
        """
        last = after_sequence
        failures = 0
        failing_since: float | None = None
        while True:
            responses = open_stream(last)
            try:
                for response in responses:
                    failures, failing_since = 0, None
                    for item in unwrap(response):
                        if item.sequence <= last:
                            continue
                        last = item.sequence
                        yield item
                return
            except grpc.RpcError as failed:
                error = error_from(failed)
                if not retryable(error):
                    raise error from None
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if give_up_after is not None and now - failing_since >= give_up_after:
                    raise error from None
                failures += 1
                if error.retry_delay is not None:
                    self.sleep(min(max(error.retry_delay, 0.0), self.max_retry_wait))
                else:
                    self.sleep(random.uniform(0.5, 1.0) * min(5.0, 0.05 * 2**failures))
            finally:
                cancel = getattr(responses, "cancel", None)
                if cancel is not None:
                    cancel()

    # -- PointsService: systems and triggers -------------------------------------------

    def create_system(
        self,
        key: str,
        name: str = "",
        *,
        description: str = "",
        badge_url: str = "",
        max_points: int = 0,
        level_basis: points_pb2.LevelBasis = points_pb2.LEVEL_BASIS_UNSPECIFIED,
    ) -> points_pb2.PointsSystem:
        system = points_pb2.PointsSystem(
            key=key,
            name=name,
            description=description,
            badge_url=badge_url,
            max_points=max_points,
            level_basis=level_basis,
        )
        request = points_pb2.CreateSystemRequest(system=system)
        return self.call(self.points.CreateSystem, request, points_pb2.CreateSystemResponse).system

    def get_system(self, key: str) -> points_pb2.PointsSystem:
        request = points_pb2.GetSystemRequest(key=key)
        return self.call(self.points.GetSystem, request, points_pb2.GetSystemResponse).system

    def pages(
        self,
        rpc: Callable[..., Any],
        request_for: Callable[[str], Any],
        response_type: type[P],
        items: Callable[[P], Iterable[T]],
    ) -> Iterator[T]:
        """Every item of a List RPC, page after page until one has no next_page_token
        (each page one logical call, retried as `call` says)."""
        token = ""
        while True:
            page = self.call(rpc, request_for(token), response_type)
            yield from items(page)
            token = page.next_page_token
            if not token:
                return

    def list_systems(self, *, page_size: int = 100) -> Iterator[points_pb2.PointsSystem]:
        """Every system the key may see, page by page."""
        return self.pages(
            self.points.ListSystems,
            lambda token: points_pb2.ListSystemsRequest(page_size=page_size, page_token=token),
            points_pb2.ListSystemsResponse,
            lambda page: page.systems,
        )

    def update_system(
        self, system: points_pb2.PointsSystem, paths: Sequence[str]
    ) -> points_pb2.PointsSystem:
        """Set the fields named by `paths` (e.g. ("name", "max_points")) from `system`."""
        request = points_pb2.UpdateSystemRequest(system=system, update_mask=mask(*paths))
        return self.call(self.points.UpdateSystem, request, points_pb2.UpdateSystemResponse).system

    def create_trigger(self, system_key: str, trigger: points_pb2.Trigger) -> points_pb2.Trigger:
        """Not retried on UNAVAILABLE: without an idempotency key a repeat could add a twin."""
        request = points_pb2.CreateTriggerRequest(system_key=system_key, trigger=trigger)
        return self.call(
            self.points.CreateTrigger, request, points_pb2.CreateTriggerResponse, retry=False
        ).trigger

    def update_trigger(
        self, trigger: points_pb2.Trigger, paths: Sequence[str]
    ) -> points_pb2.Trigger:
        request = points_pb2.UpdateTriggerRequest(trigger=trigger, update_mask=mask(*paths))
        return self.call(
            self.points.UpdateTrigger, request, points_pb2.UpdateTriggerResponse
        ).trigger

    def set_trigger_status(
        self, trigger_id: str, status: points_pb2.TriggerStatus
    ) -> points_pb2.Trigger:
        """Activate, deactivate or archive a trigger."""
        return self.update_trigger(points_pb2.Trigger(id=trigger_id, status=status), ["status"])

    def list_triggers(self, system_key: str, *, page_size: int = 0) -> list[points_pb2.Trigger]:
        """Every trigger of the system, oldest first, read page by page (0 = the server's
        default page, which holds every trigger of a realistic system)."""
        return list(
            self.pages(
                self.points.ListTriggers,
                lambda token: points_pb2.ListTriggersRequest(
                    system_key=system_key, page_size=page_size, page_token=token
                ),
                points_pb2.ListTriggersResponse,
                lambda page: page.triggers,
            )
        )

    def preview_triggers(
        self,
        system_key: str,
        *,
        triggers: Sequence[points_pb2.Trigger] = (),
        trigger_ids: Sequence[str] = (),
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        bucket_count: int = 0,
    ) -> points_pb2.PreviewTriggersResponse:
        request = points_pb2.PreviewTriggersRequest(
            system_key=system_key,
            triggers=triggers,
            trigger_ids=trigger_ids,
            start_time=timestamp(start_time),
            end_time=timestamp(end_time),
            bucket_count=bucket_count,
        )
        return self.call(self.points.PreviewTriggers, request, points_pb2.PreviewTriggersResponse)

    # -- PointsService: writes ---------------------------------------------------------

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
            metadata=struct(metadata),
            idempotency_key=idempotency_key or new_idempotency_key(),
            expire_time=timestamp(expire_time),
            skip_boosts=skip_boosts,
            validate_only=validate_only,
        )
        return self.call(self.points.Award, request, points_pb2.AwardResponse)

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
            metadata=struct(metadata),
            idempotency_key=idempotency_key or new_idempotency_key(),
            validate_only=validate_only,
        )
        return self.call(self.points.Deduct, request, points_pb2.DeductResponse)

    def award_batch(
        self, items: Sequence[points_pb2.AwardBatchItem]
    ) -> points_pb2.AwardBatchResponse:
        """1..100 awards; an item without a key gets one, kept across the call's retries.

        One item's failure (RATE_LIMITED among them) is reported in its result and never
        undoes another; the call itself is retried only when it failed as a whole.
        """
        request = points_pb2.AwardBatchRequest(items=items)
        for item in request.items:
            if not item.idempotency_key:
                item.idempotency_key = new_idempotency_key()
        return self.call(self.points.AwardBatch, request, points_pb2.AwardBatchResponse)

    def record_event(
        self,
        user_id: str,
        event_type: str,
        *,
        value: float | None = None,
        attributes: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        validate_only: bool = False,
        display_name: str = "",
        email: str = "",
        user_attributes: dict[str, str] | None = None,
    ) -> points_pb2.RecordEventResponse:
        request = points_pb2.RecordEventRequest(
            user=common_pb2.User(
                id=user_id, display_name=display_name, email=email, attributes=user_attributes
            ),
            event_type=event_type,
            value=value,
            attributes=attributes,
            metadata=struct(metadata),
            idempotency_key=idempotency_key or new_idempotency_key(),
            validate_only=validate_only,
        )
        return self.call(self.points.RecordEvent, request, points_pb2.RecordEventResponse)

    def reverse(
        self,
        entry_id: str,
        *,
        reason: str = "",
        idempotency_key: str | None = None,
        user_id: str = "",
    ) -> points_pb2.ReverseResponse:
        """`user_id` (optional), the entry's user, lets the server look in that user's
        entries alone."""
        request = points_pb2.ReverseRequest(
            entry_id=entry_id,
            reason=reason,
            idempotency_key=idempotency_key or new_idempotency_key(),
            user_id=user_id,
        )
        return self.call(self.points.Reverse, request, points_pb2.ReverseResponse)

    # -- PointsService: reads ----------------------------------------------------------

    def get_balance(
        self, system_key: str, user_id: str, *, recent_entries: int | None = None
    ) -> points_pb2.GetBalanceResponse:
        request = points_pb2.GetBalanceRequest(
            system_key=system_key, user_id=user_id, recent_entries=recent_entries
        )
        return self.call(self.points.GetBalance, request, points_pb2.GetBalanceResponse)

    def transactions(
        self,
        system_key: str,
        user_id: str,
        *,
        types: Sequence[common_pb2.EntryType] = (),
        page_size: int = 100,
    ) -> Iterator[common_pb2.LedgerEntry]:
        """Every entry, newest first, page by page (keyset pages: none missed or repeated)."""
        return self.pages(
            self.points.ListTransactions,
            lambda token: points_pb2.ListTransactionsRequest(
                system_key=system_key,
                user_id=user_id,
                types=types,
                page_size=page_size,
                page_token=token,
            ),
            points_pb2.ListTransactionsResponse,
            lambda page: page.entries,
        )

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
            start_time=timestamp(start_time),
            end_time=timestamp(end_time),
        )
        for response in self._stream(self.points.StreamHistory, request):
            yield from response.entries

    def watch_ledger(
        self,
        system_key: str = "",
        *,
        after_sequence: int = 0,
        follow: bool = True,
        give_up_after: float | None = 300.0,
    ) -> Iterator[common_pb2.LedgerEntry]:
        """Ledger entries in sequence order (every system when `system_key` is empty).

        With `follow` it waits for new entries and never ends by itself; without, it ends at
        the last committed entry. Either way a dropped connection or a server restart is
        invisible: the stream is reopened after the last sequence seen.
        """

        def open_stream(after: int) -> Iterable[Any]:
            request = points_pb2.WatchLedgerRequest(
                system_key=system_key, after_sequence=after, follow=follow
            )
            return self.points.WatchLedger(request, metadata=self.metadata)  # type: ignore[no-any-return]

        return self._resume(
            open_stream, lambda response: response.entries, after_sequence, give_up_after
        )

    def points_summary(
        self,
        system_key: str,
        *,
        bucket_count: int = 0,
        user_attributes: dict[str, str] | None = None,
    ) -> points_pb2.GetPointsSummaryResponse:
        request = points_pb2.GetPointsSummaryRequest(
            system_key=system_key,
            bucket_count=bucket_count,
            user_attributes=attributes(user_attributes),
        )
        return self.call(self.points.GetPointsSummary, request, points_pb2.GetPointsSummaryResponse)

    def user_points_summary(
        self,
        system_key: str,
        user_id: str,
        *,
        aggregation: points_pb2.Aggregation,
        start_date: str,
        end_date: str,
        time_zone: str = "",
    ) -> points_pb2.GetUserPointsSummaryResponse:
        request = points_pb2.GetUserPointsSummaryRequest(
            system_key=system_key,
            user_id=user_id,
            aggregation=aggregation,
            start_date=start_date,
            end_date=end_date,
            time_zone=time_zone,
        )
        return self.call(
            self.points.GetUserPointsSummary, request, points_pb2.GetUserPointsSummaryResponse
        )

    def points_analytics(
        self,
        system_key: str,
        *,
        start_date: str,
        end_date: str,
        aggregation: points_pb2.Aggregation = points_pb2.AGGREGATION_UNSPECIFIED,
        time_zone: str = "",
        top: int = 0,
    ) -> points_pb2.GetPointsAnalyticsResponse:
        request = points_pb2.GetPointsAnalyticsRequest(
            system_key=system_key,
            start_date=start_date,
            end_date=end_date,
            aggregation=aggregation,
            time_zone=time_zone,
            top=top,
        )
        return self.call(
            self.points.GetPointsAnalytics, request, points_pb2.GetPointsAnalyticsResponse
        )

    # -- LevelsService -----------------------------------------------------------------

    def create_level(
        self,
        system_key: str,
        key: str,
        points: int,
        *,
        name: str = "",
        description: str = "",
        badge_url: str = "",
    ) -> common_pb2.Level:
        level = common_pb2.Level(
            key=key, points=points, name=name, description=description, badge_url=badge_url
        )
        request = levels_pb2.CreateLevelRequest(system_key=system_key, level=level)
        return self.call(self.levels.CreateLevel, request, levels_pb2.CreateLevelResponse).level

    def update_level(self, level: common_pb2.Level, paths: Sequence[str]) -> common_pb2.Level:
        """`level` names its level by id, or by system_key and key."""
        request = levels_pb2.UpdateLevelRequest(level=level, update_mask=mask(*paths))
        return self.call(self.levels.UpdateLevel, request, levels_pb2.UpdateLevelResponse).level

    def delete_level(self, system_key: str, key: str) -> None:
        request = levels_pb2.DeleteLevelRequest(system_key=system_key, key=key)
        self.call(self.levels.DeleteLevel, request, levels_pb2.DeleteLevelResponse)

    def list_levels(self, system_key: str, *, page_size: int = 0) -> list[common_pb2.Level]:
        """Every level of the system by threshold ascending, read page by page (0 = the
        server's default page, which holds every level of a realistic ladder)."""
        return list(
            self.pages(
                self.levels.ListLevels,
                lambda token: levels_pb2.ListLevelsRequest(
                    system_key=system_key, page_size=page_size, page_token=token
                ),
                levels_pb2.ListLevelsResponse,
                lambda page: page.levels,
            )
        )

    def get_user_level(self, system_key: str, user_id: str) -> levels_pb2.GetUserLevelResponse:
        request = levels_pb2.GetUserLevelRequest(system_key=system_key, user_id=user_id)
        return self.call(self.levels.GetUserLevel, request, levels_pb2.GetUserLevelResponse)

    def level_summary(self, system_key: str) -> levels_pb2.GetLevelSummaryResponse:
        request = levels_pb2.GetLevelSummaryRequest(system_key=system_key)
        return self.call(self.levels.GetLevelSummary, request, levels_pb2.GetLevelSummaryResponse)

    def watch_level_changes(
        self,
        system_key: str = "",
        *,
        after_sequence: int = 0,
        follow: bool = True,
        give_up_after: float | None = 300.0,
    ) -> Iterator[common_pb2.LevelChange]:
        """Level changes in sequence order, resumed across reconnects as watch_ledger is."""

        def open_stream(after: int) -> Iterable[Any]:
            request = levels_pb2.WatchLevelChangesRequest(
                system_key=system_key, after_sequence=after, follow=follow
            )
            return self.levels.WatchLevelChanges(request, metadata=self.metadata)  # type: ignore[no-any-return]

        return self._resume(
            open_stream, lambda response: (response.level_change,), after_sequence, give_up_after
        )

    # -- BoostsService -----------------------------------------------------------------

    def create_boosts(
        self, system_key: str, boosts: Sequence[boosts_pb2.Boost]
    ) -> boosts_pb2.CreateBoostsResponse:
        """Not retried on UNAVAILABLE: without an idempotency key a repeat could add twins."""
        request = boosts_pb2.CreateBoostsRequest(system_key=system_key, boosts=boosts)
        return self.call(
            self.boosts.CreateBoosts, request, boosts_pb2.CreateBoostsResponse, retry=False
        )

    def list_boosts(
        self,
        system_key: str,
        *,
        user_id: str = "",
        statuses: Sequence[boosts_pb2.BoostStatus] = (),
        page_size: int = 100,
    ) -> Iterator[boosts_pb2.Boost]:
        return self.pages(
            self.boosts.ListBoosts,
            lambda token: boosts_pb2.ListBoostsRequest(
                system_key=system_key,
                user_id=user_id,
                statuses=statuses,
                page_size=page_size,
                page_token=token,
            ),
            boosts_pb2.ListBoostsResponse,
            lambda page: page.boosts,
        )

    def archive_boost(self, boost_id: str) -> boosts_pb2.Boost:
        request = boosts_pb2.ArchiveBoostRequest(id=boost_id)
        return self.call(self.boosts.ArchiveBoost, request, boosts_pb2.ArchiveBoostResponse).boost

    def get_multiplier(
        self, system_key: str, user_id: str, *, at: datetime | None = None
    ) -> boosts_pb2.GetMultiplierResponse:
        request = boosts_pb2.GetMultiplierRequest(
            system_key=system_key, user_id=user_id, time=timestamp(at)
        )
        return self.call(self.boosts.GetMultiplier, request, boosts_pb2.GetMultiplierResponse)

    # -- AuthService -------------------------------------------------------------------

    def create_user_token(
        self, user_id: str, ttl: timedelta | None = None
    ) -> auth_pb2.CreateUserTokenResponse:
        """A token that lets a front end read `user_id`'s points (TallyClient(user_token=...))."""
        request = auth_pb2.CreateUserTokenRequest(user_id=user_id)
        if ttl is not None:
            request.ttl.FromTimedelta(ttl)
        return self.call(self.auth.CreateUserToken, request, auth_pb2.CreateUserTokenResponse)


def attributes(values: dict[str, str] | None) -> list[common_pb2.Attribute]:
    return [common_pb2.Attribute(key=k, value=v) for k, v in (values or {}).items()]
