"""Builds the gRPC server: services, the error interceptor, reflection and health."""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.api.errors import ErrorInterceptor
from server.api.points import PointsServicer
from server.services.ports import Store
from server.settings import Settings
from tally.v1 import (
    boosts_pb2,
    boosts_pb2_grpc,
    levels_pb2,
    levels_pb2_grpc,
    points_pb2,
    points_pb2_grpc,
)

SERVICE_NAMES = (
    points_pb2.DESCRIPTOR.services_by_name["PointsService"].full_name,
    levels_pb2.DESCRIPTOR.services_by_name["LevelsService"].full_name,
    boosts_pb2.DESCRIPTOR.services_by_name["BoostsService"].full_name,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class App:
    """A built server, not yet started, and what it needs to stop gracefully."""

    server: grpc.Server
    port: int
    health: health.HealthServicer

    def start(self) -> None:
        self.server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_seconds: float) -> None:
        """Refuse new calls, let calls in flight finish within the grace period."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_seconds).wait()


def build(settings: Settings, store: Store, clock: Callable[[], datetime] = utc_now) -> App:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="tally"),
        interceptors=[ErrorInterceptor()],
        # Several worker processes may share one port (serve --workers).
        options=[("grpc.so_reuseport", 1 if settings.workers > 1 else 0)],
    )
    points_pb2_grpc.add_PointsServiceServicer_to_server(PointsServicer(store, clock), server)
    # Levels and boosts arrive in their own issues; until then they answer UNIMPLEMENTED.
    levels_pb2_grpc.add_LevelsServiceServicer_to_server(
        levels_pb2_grpc.LevelsServiceServicer(), server
    )
    boosts_pb2_grpc.add_BoostsServiceServicer_to_server(
        boosts_pb2_grpc.BoostsServiceServicer(), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    return App(server, port, health_servicer)
