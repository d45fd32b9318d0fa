"""tally.v1.PointsService: each method converts the request, calls a use case, converts
the result. Errors are mapped by api.errors.ErrorInterceptor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict

import grpc

from server.api import convert
from server.api.errors import status_code, with_operation
from server.domain import commands, reports
from server.domain.errors import FieldViolation, TallyError, ValidationFailed
from server.domain.model import EntryType
from server.domain.results import WriteResult
from server.domain.validation import MAX_KEY_CHARS, resolve_idempotency_key
from server.services.tally import Tally
from server.services.use_cases import (
    analytics,
    events,
    points_changes,
    reads,
    systems,
    triggers,
    watch,
)
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc

IDEMPOTENCY_HEADER = "idempotency-key"


def idempotency_header(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == IDEMPOTENCY_HEADER:
            return str(value)
    return None


class PointsServicer(points_pb2_grpc.PointsServiceServicer):
    def __init__(self, tally: Tally, clock: Callable[[], datetime]) -> None:
        self.tally = tally
        self.clock = clock

    # -- systems -------------------------------------------------------------------------

    def CreateSystem(
        self, request: points_pb2.CreateSystemRequest, context: grpc.ServicerContext
    ) -> points_pb2.CreateSystemResponse:
        cmd = commands.CreateSystem(**_system_fields(request.system))
        system = systems.create_system(self.tally, cmd, self.clock())
        return points_pb2.CreateSystemResponse(system=convert.system_out(system))

    def GetSystem(
        self, request: points_pb2.GetSystemRequest, context: grpc.ServicerContext
    ) -> points_pb2.GetSystemResponse:
        system = systems.get_system(self.tally, request.key)
        found = triggers.list_triggers(self.tally, system.key)
        return points_pb2.GetSystemResponse(system=convert.system_out(system, found))

    def ListSystems(
        self, request: points_pb2.ListSystemsRequest, context: grpc.ServicerContext
    ) -> points_pb2.ListSystemsResponse:
        page = systems.list_systems(self.tally, request.page_size, request.page_token)
        return points_pb2.ListSystemsResponse(
            systems=[convert.system_out(s) for s in page.items],
            next_page_token=page.next_page_token,
        )

    def UpdateSystem(
        self, request: points_pb2.UpdateSystemRequest, context: grpc.ServicerContext
    ) -> points_pb2.UpdateSystemResponse:
        cmd = commands.UpdateSystem(
            fields=convert.mask_fields(request, "system", systems.UPDATABLE_SYSTEM_FIELDS),
            **_system_fields(request.system),
        )
        system = systems.update_system(self.tally, cmd, self.clock())
        return points_pb2.UpdateSystemResponse(system=convert.system_out(system))

    # -- triggers ------------------------------------------------------------------------

    def CreateTrigger(
        self, request: points_pb2.CreateTriggerRequest, context: grpc.ServicerContext
    ) -> points_pb2.CreateTriggerResponse:
        cmd = commands.CreateTrigger(
            request.system_key, convert.trigger_in(request.trigger, "trigger")
        )
        trigger = triggers.create_trigger(self.tally, cmd, self.clock())
        return points_pb2.CreateTriggerResponse(trigger=convert.trigger_out(trigger))

    def UpdateTrigger(
        self, request: points_pb2.UpdateTriggerRequest, context: grpc.ServicerContext
    ) -> points_pb2.UpdateTriggerResponse:
        cmd = commands.UpdateTrigger(
            id=request.trigger.id,
            fields=convert.mask_fields(request, "trigger", triggers.UPDATABLE_TRIGGER_FIELDS),
            trigger=convert.trigger_in(request.trigger, "trigger"),
        )
        trigger = triggers.update_trigger(self.tally, cmd, self.clock())
        return points_pb2.UpdateTriggerResponse(trigger=convert.trigger_out(trigger))

    def ListTriggers(
        self, request: points_pb2.ListTriggersRequest, context: grpc.ServicerContext
    ) -> points_pb2.ListTriggersResponse:
        page = triggers.list_triggers_page(
            self.tally, request.system_key, request.page_size, request.page_token
        )
        return points_pb2.ListTriggersResponse(
            triggers=[convert.trigger_out(t) for t in page.items],
            next_page_token=page.next_page_token,
        )

    def PreviewTriggers(
        self, request: points_pb2.PreviewTriggersRequest, context: grpc.ServicerContext
    ) -> points_pb2.PreviewTriggersResponse:
        cmd = commands.PreviewTriggers(
            system_key=request.system_key,
            drafts=tuple(
                convert.trigger_in(t, f"triggers[{i}]") for i, t in enumerate(request.triggers)
            ),
            trigger_ids=tuple(request.trigger_ids),
            start_time=convert.time_in(request, "start_time"),
            end_time=convert.time_in(request, "end_time"),
        )
        preview, distribution = events.preview_triggers(
            self.tally, cmd, self.clock(), bucket_count=request.bucket_count
        )
        return points_pb2.PreviewTriggersResponse(
            users=preview.users,
            awards=preview.awards,
            points=preview.points,
            per_trigger=[
                points_pb2.TriggerPreview(index_or_id=t.label, awards=t.awards, points=t.points)
                for t in preview.per_trigger
            ],
            distribution=[
                points_pb2.PointsBucket(users=b.users, **{"from": b.low, "to": b.high})
                for b in distribution
            ],
            events=preview.events,
        )

    # -- points changes ------------------------------------------------------------------

    def RecordEvent(
        self, request: points_pb2.RecordEventRequest, context: grpc.ServicerContext
    ) -> points_pb2.RecordEventResponse:
        cmd = commands.RecordEvent(
            user=convert.user_in(request.user),
            event_type=request.event_type,
            value=convert.decimal_in(request.value) if request.HasField("value") else Decimal(1),
            attributes=dict(request.attributes),
            metadata=convert.struct_in(request, "metadata"),
            idempotency_key=resolve_idempotency_key(
                request.idempotency_key, idempotency_header(context)
            ),
            validate_only=request.validate_only,
        )
        return convert.event_result_out(events.record_event(self.tally, cmd, self.clock()))

    def Award(
        self, request: points_pb2.AwardRequest, context: grpc.ServicerContext
    ) -> points_pb2.AwardResponse:
        cmd = commands.Award(
            system_key=request.system_key,
            user=convert.user_in(request.user),
            amount=request.amount,
            reason=request.reason,
            metadata=convert.struct_in(request, "metadata"),
            idempotency_key=resolve_idempotency_key(
                request.idempotency_key, idempotency_header(context)
            ),
            expire_time=convert.time_in(request, "expire_time"),
            skip_boosts=request.skip_boosts,
            validate_only=request.validate_only,
        )
        result = points_changes.award(self.tally, cmd, self.clock())
        return points_pb2.AwardResponse(**_write_fields(result))

    def Deduct(
        self, request: points_pb2.DeductRequest, context: grpc.ServicerContext
    ) -> points_pb2.DeductResponse:
        cmd = commands.Deduct(
            system_key=request.system_key,
            user_id=request.user_id,
            amount=request.amount,
            reason=request.reason,
            metadata=convert.struct_in(request, "metadata"),
            idempotency_key=resolve_idempotency_key(
                request.idempotency_key, idempotency_header(context)
            ),
            validate_only=request.validate_only,
        )
        result = points_changes.deduct(self.tally, cmd, self.clock())
        return points_pb2.DeductResponse(**_write_fields(result))

    def AwardBatch(
        self, request: points_pb2.AwardBatchRequest, context: grpc.ServicerContext
    ) -> points_pb2.AwardBatchResponse:
        header = idempotency_header(context)
        if header is not None and len(f"{header}.{len(request.items)}") > MAX_KEY_CHARS:
            raise ValidationFailed(
                [
                    FieldViolation(
                        IDEMPOTENCY_HEADER,
                        f"must leave room for the item suffix '.<index>' (at most "
                        f"{MAX_KEY_CHARS - 1 - len(str(len(request.items)))} characters here)",
                    )
                ]
            )
        items = [_batch_item(index, item, header) for index, item in enumerate(request.items)]
        outcomes = points_changes.award_batch(self.tally, items, self.clock())
        results = []
        for item, outcome in zip(request.items, outcomes, strict=True):
            if isinstance(outcome, TallyError):
                metadata = with_operation(outcome, "AwardBatch").metadata
                code = status_code(outcome).value[0]
                error = points_pb2.BatchItemError(
                    code=code,
                    status=code,  # the same code, by name in JSON
                    reason=outcome.reason,
                    message=outcome.message,
                    metadata=metadata,
                )
                results.append(points_pb2.AwardBatchResult(user_id=item.user.id, error=error))
            else:
                results.append(
                    points_pb2.AwardBatchResult(
                        user_id=item.user.id,
                        entry=convert.entry_out(outcome.entry),
                        balance=convert.balance_out(outcome.balance),
                        replayed=outcome.replayed,
                    )
                )
        failed = sum(1 for o in outcomes if isinstance(o, TallyError))
        return points_pb2.AwardBatchResponse(
            processed=len(outcomes) - failed, failed=failed, results=results
        )

    def Reverse(
        self, request: points_pb2.ReverseRequest, context: grpc.ServicerContext
    ) -> points_pb2.ReverseResponse:
        cmd = commands.Reverse(
            entry_id=request.entry_id,
            reason=request.reason,
            idempotency_key=resolve_idempotency_key(
                request.idempotency_key, idempotency_header(context)
            ),
            user_id=request.user_id,
        )
        result = points_changes.reverse(self.tally, cmd, self.clock())
        return points_pb2.ReverseResponse(**_write_fields(result))

    # -- reads ---------------------------------------------------------------------------

    def GetBalance(
        self, request: points_pb2.GetBalanceRequest, context: grpc.ServicerContext
    ) -> points_pb2.GetBalanceResponse:
        cmd = commands.GetBalance(
            system_key=request.system_key,
            user_id=request.user_id,
            recent_entries=(request.recent_entries if request.HasField("recent_entries") else 10),
        )
        view = reads.get_balance(self.tally, cmd, self.clock())
        return points_pb2.GetBalanceResponse(
            balance=convert.balance_out(view.balance),
            recent=[convert.entry_out(e) for e in view.recent],
            triggers=[convert.trigger_out(t) for t in view.triggers],
            next_level=convert.level_out(view.next_level),
        )

    def ListTransactions(
        self, request: points_pb2.ListTransactionsRequest, context: grpc.ServicerContext
    ) -> points_pb2.ListTransactionsResponse:
        types: set[EntryType] = set()
        for index, number in enumerate(request.types):
            entry_type = convert.ENTRY_TYPE.to_domain(number, f"types[{index}]")
            if entry_type is not None:
                types.add(entry_type)
        cmd = commands.ListTransactions(
            system_key=request.system_key,
            user_id=request.user_id,
            page_size=request.page_size,
            page_token=request.page_token,
            types=frozenset(types),
        )
        page = reads.list_transactions(self.tally, cmd, self.clock())
        return points_pb2.ListTransactionsResponse(
            entries=[convert.entry_out(e) for e in page.entries],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    def StreamHistory(
        self, request: points_pb2.StreamHistoryRequest, context: grpc.ServicerContext
    ) -> Iterator[points_pb2.StreamHistoryResponse]:
        cmd = commands.StreamHistory(
            system_key=request.system_key,
            user_id=request.user_id,
            start_time=convert.time_in(request, "start_time"),
            end_time=convert.time_in(request, "end_time"),
        )
        entries = (
            convert.entry_out(e) for e in reads.stream_history(self.tally, cmd, self.clock())
        )
        for chunk in convert.chunks(entries):
            yield points_pb2.StreamHistoryResponse(entries=chunk)

    # -- analytics -----------------------------------------------------------------------

    def WatchLedger(
        self, request: points_pb2.WatchLedgerRequest, context: grpc.ServicerContext
    ) -> Iterator[points_pb2.WatchLedgerResponse]:
        cmd = reports.WatchLedger(
            system_key=request.system_key,
            after_sequence=request.after_sequence,
            follow=request.follow,
        )
        for read in watch.watch_ledger(self.tally, cmd, alive=context.is_active):
            # each read goes out at once (a follower's lag), in messages of bounded size
            for chunk in convert.chunks(convert.entry_out(e) for e in read):
                yield points_pb2.WatchLedgerResponse(entries=chunk)

    def GetPointsSummary(
        self, request: points_pb2.GetPointsSummaryRequest, context: grpc.ServicerContext
    ) -> points_pb2.GetPointsSummaryResponse:
        cmd = reports.GetPointsSummary(
            system_key=request.system_key,
            bucket_count=request.bucket_count,
            user_attributes=tuple((a.key, a.value) for a in request.user_attributes),
        )
        summary = analytics.points_summary(self.tally, cmd)
        return points_pb2.GetPointsSummaryResponse(
            buckets=[
                # `from` is a Python keyword: the field is set through a mapping
                points_pb2.PointsBucket(**{"from": b.low, "to": b.high, "users": b.users})
                for b in summary.buckets
            ],
            total_users=summary.total_users,
        )

    def GetUserPointsSummary(
        self, request: points_pb2.GetUserPointsSummaryRequest, context: grpc.ServicerContext
    ) -> points_pb2.GetUserPointsSummaryResponse:
        cmd = reports.GetUserPointsSummary(
            system_key=request.system_key, user_id=request.user_id, window=_window(request)
        )
        periods = analytics.user_points_summary(self.tally, cmd)
        return points_pb2.GetUserPointsSummaryResponse(
            points=[
                points_pb2.PointsPeriod(date=p.day.isoformat(), total=p.total, change=p.change)
                for p in periods
            ]
        )

    def GetPointsAnalytics(
        self, request: points_pb2.GetPointsAnalyticsRequest, context: grpc.ServicerContext
    ) -> points_pb2.GetPointsAnalyticsResponse:
        cmd = reports.GetPointsAnalytics(
            system_key=request.system_key, window=_window(request), top=request.top
        )
        result = analytics.points_analytics(self.tally, cmd)
        return points_pb2.GetPointsAnalyticsResponse(
            earned=[
                points_pb2.EarnedPeriod(date=p.day.isoformat(), points=p.points, users=p.users)
                for p in result.earned
            ],
            top_earners=[
                points_pb2.TopEarner(user_id=user_id, points=points)
                for user_id, points in result.top_earners
            ],
            new_users=result.new_users,
            average_first_14_days=result.average_first_14_days,
            triggers=[
                points_pb2.TriggerEarnings(
                    trigger=convert.trigger_out(row.trigger) if row.trigger else None,
                    awards=row.awards,
                    points=row.points,
                    trigger_id=row.trigger_id,
                )
                for row in result.triggers
            ],
        )


AGGREGATION: convert.EnumMap[points_pb2.Aggregation, reports.Aggregation] = convert.EnumMap(
    {
        points_pb2.AGGREGATION_DAILY: reports.Aggregation.DAILY,
        points_pb2.AGGREGATION_WEEKLY: reports.Aggregation.WEEKLY,
        points_pb2.AGGREGATION_MONTHLY: reports.Aggregation.MONTHLY,
    }
)


def _window(
    request: points_pb2.GetUserPointsSummaryRequest | points_pb2.GetPointsAnalyticsRequest,
) -> reports.Window:
    return reports.Window(
        start_date=request.start_date,
        end_date=request.end_date,
        aggregation=AGGREGATION.to_domain(request.aggregation, "aggregation"),
        time_zone=request.time_zone,
    )


def _batch_item(
    index: int, item: points_pb2.AwardBatchItem, header: str | None
) -> commands.Award | ValidationFailed:
    """One AwardBatch item as a command, or, when it cannot even be converted, the error
    that becomes its result (one item's bad input never fails the others)."""
    try:
        metadata = convert.struct_in(item, "metadata", f"items[{index}].metadata")
    except ValidationFailed as error:
        return error
    return commands.Award(
        system_key=item.system_key,
        user=convert.user_in(item.user),
        amount=item.amount,
        reason=item.reason,
        metadata=metadata,
        # One `idempotency-key` header covers the batch: item i gets "<key>.<i>".
        idempotency_key=item.idempotency_key or (f"{header}.{index}" if header else ""),
        skip_boosts=item.skip_boosts,
    )


def _system_fields(s: points_pb2.PointsSystem) -> dict[str, Any]:
    """The writable fields of a PointsSystem message, as command arguments."""
    return {
        "key": s.key,
        "name": s.name,
        "description": s.description,
        "badge_url": s.badge_url,
        "max_points": s.max_points,
        "level_basis": convert.LEVEL_BASIS.to_domain(s.level_basis, "system.level_basis"),
    }


class WriteFields(TypedDict):
    entry: common_pb2.LedgerEntry
    balance: common_pb2.Balance
    level_change: common_pb2.LevelChange | None
    replayed: bool


def _write_fields(result: WriteResult) -> WriteFields:
    return {
        "entry": convert.entry_out(result.entry),
        "balance": convert.balance_out(result.balance),
        "level_change": convert.level_change_out(result.level_change),
        "replayed": result.replayed,
    }
