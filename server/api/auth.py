"""tally.v1.AuthService: user tokens for front ends. Converts, calls the key ring, converts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import grpc

from server.api import convert
from server.services.held import callers
from server.services.tally import Tally
from tally.v1 import auth_pb2, auth_pb2_grpc


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, tally: Tally, clock: Callable[[], datetime]) -> None:
        self.tally = tally
        self.clock = clock

    def CreateUserToken(
        self, request: auth_pb2.CreateUserTokenRequest, context: grpc.ServicerContext
    ) -> auth_pb2.CreateUserTokenResponse:
        token, expire_time = self.tally.keys.issue_token(
            callers.current(),
            request.user_id,
            convert.duration_in(request, "ttl"),
            self.clock(),
        )
        return auth_pb2.CreateUserTokenResponse(
            token=token, expire_time=convert.time_out(expire_time)
        )
