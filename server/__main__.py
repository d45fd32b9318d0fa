"""`tally-server`: serve the API, or migrate the schema.

tally-server serve [--listen HOST:PORT] [--database-url URL]
tally-server migrate [--database-url URL]
"""

from __future__ import annotations

import argparse
import logging
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
    serve.add_argument("--threads", type=int, help="worker threads (env TALLY_THREADS)")
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
    store = SqlStore.from_url(settings.database_url, pool_size=settings.threads)
    migrate.upgrade(store.engine)
    server = app.build(settings, store)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received; finishing calls in flight", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    log.info("serving on %s (port %d)", settings.listen, server.port)
    stopping.wait()
    server.stop(settings.grace_seconds)
    store.dispose()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
