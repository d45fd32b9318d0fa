"""Builds the gRPC server: services, the error interceptor, reflection and health."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from server.api import call_tracing, reflection
from server.api.access_log import AccessLog
from server.api.auth import AuthServicer
from server.api.boosts import BoostsServicer
from server.api.call_metrics import CallMetrics
from server.api.errors import ErrorInterceptor
from server.api.guard import Guard
from server.api.levels import LevelsServicer
from server.api.points import PointsServicer
from server.api.shutdown import CallExecutor, ShutdownGate
from server.api.streams import StreamBudget
from server.services.held.feed import Feeds
from server.services.held.limits import BY_KEY, RateLimiter
from server.services.ports import Store
from server.services.tally import Tally
from server.services.use_cases import sweeps
from server.settings import Settings
from tally.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    boosts_pb2,
    boosts_pb2_grpc,
    levels_pb2,
    levels_pb2_grpc,
    points_pb2,
    points_pb2_grpc,
)

log = logging.getLogger(__name__)

# After draining, how long the server waits before cutting streams that never end.
FLUSH_SECONDS = 1.0

SERVICE_NAMES = (
    points_pb2.DESCRIPTOR.services_by_name["PointsService"].full_name,
    levels_pb2.DESCRIPTOR.services_by_name["LevelsService"].full_name,
    boosts_pb2.DESCRIPTOR.services_by_name["BoostsService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Sweeper:
    """A background thread that settles accounts nobody touches: lapsed credit written
    off, TIME_INTERVAL firings written.

    Reads and writes settle the accounts they touch; the sweep makes the entries of idle
    accounts appear on time too, for those who stream the ledger.
    """

    def __init__(self, tally: Tally, clock: Callable[[], datetime], every_seconds: float) -> None:
        self.tally = tally
        self.clock = clock
        self.every_seconds = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tally-sweeper", daemon=True)

    def start(self) -> None:
        if self.every_seconds > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def sweep(self) -> int:
        """Settle every account that is due (lapsed credit, TIME_INTERVAL firings);
        returns how many were settled."""
        settled = 0
        while not self._stop.is_set():
            done = sweeps.expire_due(self.tally, self.clock())
            settled += done
            if done < sweeps.SWEEP_BATCH:  # that was the last batch
                break
        if not self._stop.is_set():
            settled += sweeps.accrue_due(self.tally, self.clock())
        return settled

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                settled = self.sweep()
                if settled:
                    log.info("sweep settled %d accounts", settled)
            except Exception:
                log.exception("sweep failed")


@dataclass
class App:
    """A built server, not yet started, and what it needs to stop gracefully."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    sweeper: Sweeper
    gate: ShutdownGate
    feeds: Feeds
    executor: CallExecutor

    def start(self) -> None:
        self.server.start()
        self.sweeper.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_seconds: float) -> None:
        """Refuse new calls (UNAVAILABLE), let calls in flight finish within the grace
        period, then stop."""
        started = time.monotonic()
        self.health.enter_graceful_shutdown()
        self.gate.close()
        # Followers of the live feeds never end by themselves: end them now, UNAVAILABLE,
        # so that they resume elsewhere and the drain need not wait out the grace period.
        self.feeds.close()
        self.sweeper.stop()
        self.gate.drain(timeout=grace_seconds, queued=self.executor.waiting)
        # Drained: every call the gate let in has finished (or the grace period is spent).
        # What is left are health Watch and reflection streams, which never end by
        # themselves: a moment to flush the last responses, then they are cut.
        remaining = max(0.0, grace_seconds - (time.monotonic() - started))
        self.server.stop(min(remaining, FLUSH_SECONDS)).wait()


def build(settings: Settings, store: Store, clock: Callable[[], datetime] = utc_now) -> App:
    """The server: the call's span outermost (when tracing is on), the shutdown gate, then
    the access log and the call metrics (which see each call's final status), the error
    mapping, and the guard, which checks credentials before any servicer runs (unless
    --insecure-no-auth)."""
    gate = ShutdownGate()
    tally = Tally(
        store,
        max_batch=settings.max_batch,
        clock=clock,
        limits=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        entry_lookups=RateLimiter(
            settings.entry_lookup_limit_per_second,
            settings.entry_lookup_limit_burst,
            names=BY_KEY,
        ),
        key_max_age=settings.key_cache_seconds,
        token_secret=settings.token_secret.encode(),
    )
    interceptors: list[grpc.ServerInterceptor] = [
        *call_tracing.interceptors(),  # none unless tracing is on
        gate,
        AccessLog(),
        CallMetrics(),
        ErrorInterceptor(),
    ]
    if settings.insecure_no_auth:
        log.warning(
            "--insecure-no-auth: API keys are NOT checked; anyone who reaches %s may award "
            "points. For local experiments only.",
            settings.listen,
        )
    else:
        interceptors.append(Guard(tally.keys, clock))
    interceptors.append(
        StreamBudget(settings.max_streams, settings.max_streams_per_key, settings.max_open_streams)
    )
    # Streams, Tally's and the keyless ones, have threads of their own.
    threads = settings.threads + settings.max_streams + settings.max_open_streams
    executor = CallExecutor(max_workers=threads, thread_name_prefix="tally")
    server = grpc.server(
        executor,
        interceptors=interceptors,
        # Several worker processes may share one port (serve --workers).
        options=[("grpc.so_reuseport", 1 if settings.workers > 1 else 0)],
    )
    points_pb2_grpc.add_PointsServiceServicer_to_server(PointsServicer(tally, clock), server)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(tally, clock), server)
    levels_pb2_grpc.add_LevelsServiceServicer_to_server(LevelsServicer(tally, clock), server)
    boosts_pb2_grpc.add_BoostsServiceServicer_to_server(BoostsServicer(tally, clock), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(settings.listen)
    except RuntimeError:  # gRPC's "Failed to bind" (older versions return port 0)
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    sweeper = Sweeper(tally, clock, settings.sweep_seconds)
    return App(server, port, health_servicer, sweeper, gate, tally.feeds, executor)
