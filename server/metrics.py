"""Prometheus metrics: the instruments, defined once, and their HTTP exposition.

Every instrument lives here; the code that records is told nothing but the instrument
(the calls interceptor in api/call_metrics.py, the writer, the feeds, the unit of work,
the error mapping and the configuration). Recording is always on and costs a few
microseconds a call (bench/metrics_cost.py); `TALLY_METRICS_LISTEN` only decides whether
anything serves them.

One process (`serve`): the instruments hold their values in memory and the process
serves /metrics itself. Several (`serve --workers N`): the supervisor makes a temporary
folder before it forks, each worker writes its values to files there (prometheus_client's
multiprocess mode), and the supervisor alone serves /metrics, summing the workers' files,
so that Prometheus scrapes one target per server whatever its worker count. Gauges are
summed over live workers, or for the configuration version the highest any live worker
holds. The scrape declares the families a single process declares, from the start:
those no worker has written yet (calls, before the first) come from an in-memory copy of
the instruments, and the process metrics (`process_*`, which prometheus_client's
multiprocess mode cannot gather from files) are read by the supervisor from /proc for
itself and each live worker, one series each, labelled `process` ("supervisor",
"worker-0", ...): a counter restarts with its worker, which Prometheus reads as a reset.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.registry import Collector

# Seconds: from well under a millisecond (a cached read) to a slow commit or long stream.
SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Changes in one group commit: 1 (no concurrency) up to Settings.max_batch and beyond.
CHANGES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# The live feeds (services/use_cases/watch.py), shown at 0 before anyone follows.
FEEDS = ("ledger", "level_changes")

# No `_created` series beside every counter and histogram: they double what is scraped
# and Prometheus does not need them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Instruments:
    """The process's instruments, on a registry of their own."""

    def __init__(self, *, process_metrics: bool = True) -> None:
        self.registry = registry = CollectorRegistry()
        if process_metrics and not shared_between_processes():
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        self.calls = Counter(
            "tally_calls",
            "Calls finished, by gRPC service, method and status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.call_seconds = Histogram(
            "tally_call_duration_seconds",
            "Time from a call's start to its status (a stream's: to its end), by method.",
            ["service", "method"],
            buckets=SECONDS,
            registry=registry,
        )
        self.entries = Counter(
            "tally_ledger_entries",
            "Ledger entries committed, by type (AWARD, DEDUCT, EXPIRE, REVERSAL).",
            ["type"],
            registry=registry,
        )
        self.batch_changes = Histogram(
            "tally_commit_batch_changes",
            "Points changes carried by one group commit.",
            buckets=CHANGES,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "tally_commit_duration_seconds",
            "Time a group commit's unit of work takes, retries and COMMIT included.",
            buckets=SECONDS,
            registry=registry,
        )
        self.followers = Gauge(
            "tally_feed_followers",
            "Calls following a live feed (WatchLedger, WatchLevelChanges with follow).",
            ["feed"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.feed_lag = Gauge(
            "tally_feed_lag_items",
            "Sum over the feed's followers of the numbers handed out (sequence) beyond what "
            "each has been sent: divide by tally_feed_followers for the mean lag.",
            ["feed"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.store_retries = Counter(
            "tally_store_retries",
            "Units of work run again after a transient store failure, by kind (read, write).",
            ["kind"],
            registry=registry,
        )
        self.store_unavailable = Counter(
            "tally_store_unavailable",
            "Calls answered UNAVAILABLE STORE_UNAVAILABLE, by method.",
            ["method"],
            registry=registry,
        )
        for kind in ("read", "write"):
            self.store_retries.labels(kind)
        for feed in FEEDS:
            self.followers.labels(feed)
            self.feed_lag.labels(feed)
        self.config_version = Gauge(
            "tally_config_version",
            "Version of the configuration (systems, triggers, levels, boosts) last loaded.",
            multiprocess_mode="livemax",
            registry=registry,
        )


_instruments: Instruments | None = None
_made = threading.Lock()
# Multiprocess mode: the instruments as a process that recorded nothing holds them, in
# memory, for the families no worker has written yet (share_between_processes).
_declared: CollectorRegistry | None = None


def instruments() -> Instruments:
    """The process's instruments, made on first use (in a worker: after the fork)."""
    global _instruments
    if _instruments is None:
        with _made:
            if _instruments is None:
                _instruments = Instruments()
    return _instruments


def shared_between_processes() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR))


def share_between_processes(directory: str) -> None:
    """Multiprocess mode, writing values to files in `directory`: for the supervisor of
    `serve --workers N`, before it forks and before any instrument exists.

    prometheus_client chooses how values are held when it is imported, from the
    environment; the server has imported it long before it reads its flags, so the
    choice is made again here, the same way. Instruments this process made before
    (a store retry while it migrated) are dropped: each worker makes its own."""
    global _instruments, _declared
    _declared = Instruments(process_metrics=False).registry  # made before the switch
    os.environ[MULTIPROCESS_DIR] = directory
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    _instruments = None


def worker_exited(pid: int) -> None:
    """Multiprocess mode: drop a finished worker's live gauges."""
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


@dataclass
class Exposition:
    """The HTTP server of /metrics, running on a thread of its own."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class WorkersCollector(Collector):
    """Multiprocess mode: every worker's values summed from the shared folder, then each
    family the instruments declare that no worker has written yet, as a process that
    recorded nothing shows it (declared, with its unlabelled series at 0)."""

    def __init__(self, declared: CollectorRegistry | None) -> None:
        self.declared = declared

    def collect(self) -> Iterable[Metric]:
        files = multiprocess.MultiProcessCollector(None)  # type: ignore[no-untyped-call]
        written = list(files.collect())  # type: ignore[no-untyped-call]
        names = {family.name for family in written}
        unwritten = self.declared.collect() if self.declared is not None else ()
        return [*written, *(family for family in unwritten if family.name not in names)]


class PoolProcessCollector(Collector):
    """The `process_*` metrics of each process `processes()` names (a label, a pid), as
    prometheus_client's ProcessCollector reads them from /proc, labelled `process`."""

    def __init__(self, processes: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self.processes = processes

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for label, pid in self.processes():
            # A worker that ended since it was named reads as nothing (or part): skipped.
            for family in _process_metrics(pid):
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(
                        sample.name, {**sample.labels, "process": label}, sample.value
                    )
        return list(families.values())


def _process_metrics(pid: int) -> Iterable[Metric]:
    return ProcessCollector(pid=lambda: pid, registry=None).collect()


def serve(
    listen: str,
    registry: CollectorRegistry | None = None,
    processes: Callable[[], Iterable[tuple[str, int]]] | None = None,
) -> Exposition:
    """Serve the metrics over HTTP at `listen` (HOST:PORT): this process's instruments,
    or in multiprocess mode every worker's values from the shared folder, with the
    process metrics of what `processes()` names (the supervisor and its live workers)."""
    host, _, port = listen.rpartition(":")
    if registry is None:
        if shared_between_processes():
            registry = CollectorRegistry()
            registry.register(WorkersCollector(_declared))
            if processes is not None:
                registry.register(PoolProcessCollector(processes))
            PlatformCollector(registry=registry)
        else:
            registry = instruments().registry
    server, thread = start_http_server(
        int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry
    )
    return Exposition(server, thread)
