"""WatchLedger followers held open beside a scenario's load (bench/scenarios.py).

`count` idle followers (of a system nobody writes to) take stream threads and poll, as
analytics jobs left running would; one more follows the bench system and measures live
lag: the time from an entry's create_time (set when its call began, before its commit)
to its delivery, an upper bound on commit-to-delivery, counted over the open loop.
grpcio on threads of this process: the idle ones cost nothing here, the measuring one a
decode per entry.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc

from tally.v1 import points_pb2, points_pb2_grpc

IDLE_SYSTEM = "bench_idle"
CHANNELS = 5  # the followers are spread over connections (and so over server processes)


class Followers:
    def __init__(
        self,
        target: str,
        count: int,
        watched: str | None,
        after: int,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """`count` idle followers, and (when `watched` names a system) one measuring;
        every call sends `headers` (the bench's API key)."""
        self.channels = [grpc.insecure_channel(target) for _ in range(CHANNELS)]
        stubs = [points_pb2_grpc.PointsServiceStub(c) for c in self.channels]  # type: ignore[no-untyped-call]
        try:
            stubs[0].CreateSystem(
                points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key=IDLE_SYSTEM)),
                metadata=headers,
            )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        idle = points_pb2.WatchLedgerRequest(system_key=IDLE_SYSTEM, follow=True)
        self.idle = [stubs[i % CHANNELS].WatchLedger(idle, metadata=headers) for i in range(count)]
        self.refused = 0
        self.lags_ms: list[float] = []
        self.live: Any = None
        self.started = time.time()
        self._thread = threading.Thread(target=self._measure, daemon=True)
        if watched is not None:
            live = points_pb2.WatchLedgerRequest(
                system_key=watched, after_sequence=after, follow=True
            )
            self.live = stubs[0].WatchLedger(live, metadata=headers)
            self._thread.start()
        for call in self.idle:
            self._watch_idle(call)

    def restart_lag(self) -> None:
        """Count lag from now on only (the open loop's rate, not the closed loop's)."""
        self.started = time.time()
        self.lags_ms = []

    def _watch_idle(self, call: Any) -> None:
        def run() -> None:
            try:
                for _ in call:
                    pass
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    self.refused += 1

        threading.Thread(target=run, daemon=True).start()

    def _measure(self) -> None:
        try:
            for message in self.live:
                now = time.time()
                for entry in message.entries:
                    created = entry.create_time.seconds + entry.create_time.nanos / 1e9
                    if created >= self.started:
                        self.lags_ms.append((now - created) * 1000)
        except grpc.RpcError:
            pass  # cancelled by close()

    def close(self) -> dict[str, Any]:
        for call in [*self.idle, *([self.live] if self.live is not None else [])]:
            call.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for channel in self.channels:
            channel.close()
        lags = sorted(self.lags_ms)

        def pct(p: float) -> float | None:
            return round(lags[min(len(lags) - 1, int(p * len(lags)))], 1) if lags else None

        return {
            "followers": len(self.idle),
            "followers_refused": self.refused,
            "lag_entries": len(lags),
            "lag_p50_ms": pct(0.50),
            "lag_p99_ms": pct(0.99),
        }
