"""`tally-server`: serve the API, or migrate the schema.

tally-server serve [--listen HOST:PORT] [--database-url URL]
tally-server migrate [--database-url URL]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from server import app
from server.settings import Settings
from server.store import migrate
from server.store.database import SqlStore

log = logging.getLogger("tally")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-server", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate the schema, then serve until SIGTERM")
    serve.add_argument("--listen", help="HOST:PORT (env TALLY_LISTEN, default 127.0.0.1:50051)")
    _database_flag(serve)
    serve.add_argument("--threads", type=int, help="threads per process (env TALLY_THREADS)")
    serve.add_argument(
        "--workers", type=int, help="server processes sharing the port (env TALLY_WORKERS)"
    )
    serve.add_argument("--grace-seconds", type=float, help="time for calls in flight at shutdown")

    migrate_cmd = commands.add_parser("migrate", help="bring the schema to the newest version")
    _database_flag(migrate_cmd)

    args = parser.parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if k != "command"}
    settings = Settings.load(**flags)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "migrate":
        return run_migrate(settings)
    return run_serve(settings)


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL (env TALLY_DATABASE_URL, default an SQLite file ./tally.db)",
    )


def run_migrate(settings: Settings) -> int:
    store = SqlStore.from_url(settings.database_url)
    try:
        migrate.upgrade(store.engine)
        log.info("schema at revision %s", migrate.current(store.engine))
    finally:
        store.dispose()
    return 0


def run_serve(settings: Settings) -> int:
    """Migrate, then serve: in this process, or in `workers` processes sharing the port."""
    store = SqlStore.from_url(settings.database_url)
    try:
        migrate.upgrade(store.engine)
    finally:
        store.dispose()
    if settings.workers <= 1:
        return serve_here(settings)
    return supervise_workers(settings)


def serve_here(settings: Settings) -> int:
    """One server process: serves until SIGTERM/SIGINT, then finishes calls in flight."""
    stopping = _stop_on_signals()
    store = SqlStore.from_url(settings.database_url, pool_size=settings.pool_size)
    server = app.build(settings, store)
    server.start()
    log.info("serving on %s (port %d, pid %d)", settings.listen, server.port, os.getpid())
    # Wait with a timeout: the kernel may hand SIGTERM to any of gRPC's threads, and the
    # handler runs only when the main thread wakes to check for it.
    while not stopping.wait(0.5):
        pass
    server.stop(settings.grace_seconds)
    store.dispose()
    log.info("stopped (pid %d)", os.getpid())
    return 0


def supervise_workers(settings: Settings) -> int:
    """Start `workers` server processes on one port (SO_REUSEPORT), each with its own
    threads and connection pool, so that both cores serve. Signals are passed on; the
    supervisor exits when every worker has. No gRPC object exists here before the fork."""
    if settings.listen.rsplit(":", 1)[-1] == "0":
        raise SystemExit("--workers needs a fixed port to share; got port 0")
    stopping = _stop_on_signals()
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=serve_here, args=(settings,), name=f"tally-worker-{i}")
        for i in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    log.info("supervising %d workers on %s", len(workers), settings.listen)
    while not stopping.wait(0.5):
        if any(not w.is_alive() for w in workers):
            log.error("a worker exited; stopping the others")
            break
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join()
    return max((w.exitcode or 0) for w in workers)


def _stop_on_signals() -> threading.Event:
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received; finishing calls in flight", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


if __name__ == "__main__":
    sys.exit(main())
