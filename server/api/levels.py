"""tally.v1.LevelsService: each method converts the request, calls a use case, converts
the result. Errors are mapped by api.errors.ErrorInterceptor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import grpc

from server.api import convert
from server.domain import commands, reports
from server.services.tally import Tally
from server.services.use_cases import levels, watch
from tally.v1 import levels_pb2, levels_pb2_grpc


class LevelsServicer(levels_pb2_grpc.LevelsServiceServicer):
    def __init__(self, tally: Tally, clock: Callable[[], datetime]) -> None:
        self.tally = tally
        self.clock = clock

    def CreateLevel(
        self, request: levels_pb2.CreateLevelRequest, context: grpc.ServicerContext
    ) -> levels_pb2.CreateLevelResponse:
        cmd = commands.CreateLevel(request.system_key, convert.level_in(request.level))
        level = levels.create_level(self.tally, cmd, self.clock())
        return levels_pb2.CreateLevelResponse(level=convert.level_out(level))

    def UpdateLevel(
        self, request: levels_pb2.UpdateLevelRequest, context: grpc.ServicerContext
    ) -> levels_pb2.UpdateLevelResponse:
        cmd = commands.UpdateLevel(
            id=request.level.id,
            system_key=request.level.system_key,
            key=request.level.key,
            fields=convert.mask_fields(request, "level", levels.UPDATABLE_LEVEL_FIELDS),
            level=convert.level_in(request.level),
        )
        level = levels.update_level(self.tally, cmd, self.clock())
        return levels_pb2.UpdateLevelResponse(level=convert.level_out(level))

    def DeleteLevel(
        self, request: levels_pb2.DeleteLevelRequest, context: grpc.ServicerContext
    ) -> levels_pb2.DeleteLevelResponse:
        levels.delete_level(self.tally, request.system_key, request.key)
        return levels_pb2.DeleteLevelResponse()

    def ListLevels(
        self, request: levels_pb2.ListLevelsRequest, context: grpc.ServicerContext
    ) -> levels_pb2.ListLevelsResponse:
        page = levels.list_levels_page(
            self.tally, request.system_key, request.page_size, request.page_token
        )
        return levels_pb2.ListLevelsResponse(
            levels=[convert.level_out(x) for x in page.items],
            next_page_token=page.next_page_token,
        )

    def GetUserLevel(
        self, request: levels_pb2.GetUserLevelRequest, context: grpc.ServicerContext
    ) -> levels_pb2.GetUserLevelResponse:
        standing = levels.get_user_level(
            self.tally, request.system_key, request.user_id, self.clock()
        )
        return levels_pb2.GetUserLevelResponse(
            level=convert.level_out(standing.level),
            next_level=convert.level_out(standing.next_level),
            points=standing.points,
            points_to_next=standing.points_to_next,
            progress=standing.progress,
        )

    def GetLevelSummary(
        self, request: levels_pb2.GetLevelSummaryRequest, context: grpc.ServicerContext
    ) -> levels_pb2.GetLevelSummaryResponse:
        summary = levels.get_level_summary(self.tally, request.system_key)
        return levels_pb2.GetLevelSummaryResponse(
            levels=[
                levels_pb2.LevelUserCount(level=convert.level_out(level), users=users)
                for level, users in summary.levels
            ],
            users_without_level=summary.users_without_level,
        )

    def WatchLevelChanges(
        self, request: levels_pb2.WatchLevelChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[levels_pb2.WatchLevelChangesResponse]:
        cmd = reports.WatchLedger(
            system_key=request.system_key,
            after_sequence=request.after_sequence,
            follow=request.follow,
        )
        for read in watch.watch_level_changes(self.tally, cmd, alive=context.is_active):
            for change in read:
                yield levels_pb2.WatchLevelChangesResponse(
                    level_change=convert.level_change_out(change)
                )
