"""tally.v1.BoostsService: each method converts the request, calls a use case, converts
the result. Errors are mapped by api.errors.ErrorInterceptor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import grpc

from server.api import convert
from server.domain import commands
from server.domain.errors import ValidationFailed
from server.domain.model import BoostStatus
from server.services.tally import Tally
from server.services.use_cases import boosts
from tally.v1 import boosts_pb2, boosts_pb2_grpc


class BoostsServicer(boosts_pb2_grpc.BoostsServiceServicer):
    def __init__(self, tally: Tally, clock: Callable[[], datetime]) -> None:
        self.tally = tally
        self.clock = clock

    def CreateBoosts(
        self, request: boosts_pb2.CreateBoostsRequest, context: grpc.ServicerContext
    ) -> boosts_pb2.CreateBoostsResponse:
        items: list[commands.BoostFields | ValidationFailed] = []
        for index, item in enumerate(request.boosts):
            try:
                items.append(convert.boost_in(item, f"boosts[{index}]"))
            except ValidationFailed as error:  # one item's bad input never fails the others
                items.append(error)
        now = self.clock()
        created, issues = boosts.create_boosts(self.tally, request.system_key, items, now)
        return boosts_pb2.CreateBoostsResponse(
            created=[convert.boost_out(b, now) for b in created],
            issues=[
                boosts_pb2.BoostIssue(
                    index=issue.index,
                    user_id=issue.user_id,
                    severity=(
                        boosts_pb2.ISSUE_SEVERITY_ERROR
                        if issue.error
                        else boosts_pb2.ISSUE_SEVERITY_WARNING
                    ),
                    message=issue.message,
                )
                for issue in issues
            ],
        )

    def ListBoosts(
        self, request: boosts_pb2.ListBoostsRequest, context: grpc.ServicerContext
    ) -> boosts_pb2.ListBoostsResponse:
        statuses: set[BoostStatus] = set()
        for index, number in enumerate(request.statuses):
            status = convert.BOOST_STATUS.to_domain(number, f"statuses[{index}]")
            if status is not None:
                statuses.add(status)
        now = self.clock()
        page = boosts.list_boosts(
            self.tally,
            request.system_key,
            request.user_id,
            frozenset(statuses),
            request.page_size,
            request.page_token,
            now,
        )
        return boosts_pb2.ListBoostsResponse(
            boosts=[convert.boost_out(b, now) for b in page.items],
            next_page_token=page.next_page_token,
        )

    def ArchiveBoost(
        self, request: boosts_pb2.ArchiveBoostRequest, context: grpc.ServicerContext
    ) -> boosts_pb2.ArchiveBoostResponse:
        now = self.clock()
        boost = boosts.archive_boost(self.tally, request.id, now)
        return boosts_pb2.ArchiveBoostResponse(boost=convert.boost_out(boost, now))

    def GetMultiplier(
        self, request: boosts_pb2.GetMultiplierRequest, context: grpc.ServicerContext
    ) -> boosts_pb2.GetMultiplierResponse:
        now = self.clock()
        when = convert.time_in(request, "time") or now
        factor, applied = boosts.get_multiplier(
            self.tally, request.system_key, request.user_id, when
        )
        return boosts_pb2.GetMultiplierResponse(
            multiplier=convert.decimal_out(factor),
            boosts=[convert.boost_out(b, now) for b in applied],
        )
