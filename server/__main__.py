"""`tally-server`: serve the API, migrate the schema, or manage API keys.

tally-server serve [--listen HOST:PORT] [--database-url URL] [--insecure-no-auth]
                   [--metrics-listen HOST:PORT] [--log-format text|json]
                   [--token-secret-file PATH]
tally-server migrate [--database-url URL]
tally-server keys create --scope admin|write|read --name NAME [--systems KEY,...]
tally-server keys list [--json]
tally-server keys revoke ID
tally-server verify [--database-url URL] [--system KEY] [--json]
tally-server --version

A setting it cannot use exits 2, a database it cannot open or an address it cannot listen
on exits 1, each with one line on standard error that names the cause.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from importlib import metadata
from types import FrameType

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from server import app, logs, metrics, tracing
from server.domain.access import ApiKey, Scope
from server.domain.audit import Difference
from server.domain.errors import SystemNotFound, TransientStoreError, ValidationFailed
from server.services.operations import api_keys, verify
from server.settings import SettingError, Settings, quoted, unknown_variables
from server.startup import StartupError, check_can_listen, database_fault, open_store
from server.store import migrate
from server.store.database import SqlStore
from server.workers import WorkerPool, accept_stop_signals

log = logging.getLogger("tally")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-server", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version", action="version", version=f"tally-server {metadata.version('tally')}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    logs_flag = argparse.ArgumentParser(add_help=False)
    logs_flag.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="log lines on stderr: text, or one JSON object a line (env TALLY_LOG_FORMAT)",
    )

    serve = commands.add_parser(
        "serve", parents=[logs_flag], help="migrate the schema, then serve until SIGTERM"
    )
    serve.add_argument("--listen", help="HOST:PORT (env TALLY_LISTEN, default 127.0.0.1:50051)")
    _database_flag(serve)
    # Numbers are read as text and checked by Settings.load, as the environment's are.
    serve.add_argument("--threads", help="threads per process (env TALLY_THREADS)")
    serve.add_argument(
        "--max-streams-per-key",
        help="server streams one caller may hold open (env TALLY_MAX_STREAMS_PER_KEY)",
    )
    serve.add_argument(
        "--max-open-streams",
        help="health and reflection streams open at once (env TALLY_MAX_OPEN_STREAMS)",
    )
    serve.add_argument("--workers", help="server processes sharing the port (env TALLY_WORKERS)")
    serve.add_argument(
        "--entry-lookup-limit-per-second",
        help="Reverses by entry id alone one API key may make a second, per process, on "
        "Citus (0 = no limit; env TALLY_ENTRY_LOOKUP_LIMIT_PER_SECOND, default 5)",
    )
    serve.add_argument(
        "--entry-lookup-limit-burst",
        help="burst of those (env TALLY_ENTRY_LOOKUP_LIMIT_BURST, default 10)",
    )
    serve.add_argument("--grace-seconds", help="time for calls in flight at shutdown")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=None,
        help="serve without checking API keys (local experiments only)",
    )
    serve.add_argument(
        "--token-secret-file",
        help="file holding the server secret user tokens are signed under, at least 32 "
        "characters (env TALLY_TOKEN_SECRET_FILE, or the secret itself in TALLY_TOKEN_SECRET)",
    )
    serve.add_argument(
        "--metrics-listen",
        help="HOST:PORT to serve Prometheus metrics at /metrics (env TALLY_METRICS_LISTEN)",
    )

    migrate_cmd = commands.add_parser(
        "migrate", parents=[logs_flag], help="bring the schema to the newest version"
    )
    _database_flag(migrate_cmd)

    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="make a key and print it (shown only now)")
    create.add_argument("--scope", required=True, choices=[s.value for s in Scope])
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument(
        "--systems",
        help="KEY,...: only these points systems (left out: every system; an empty name is "
        "refused, a system not made yet is warned about)",
    )
    _database_flag(create)
    listing = key_commands.add_parser("list", help="every key (never the key itself)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    _database_flag(listing)
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("id")
    _database_flag(revoke)

    verify_cmd = commands.add_parser(
        "verify",
        help="recompute every account from its ledger entries; exit 1 on any difference",
    )
    _database_flag(verify_cmd)
    verify_cmd.add_argument("--system", default="", help="KEY: only this points system")
    verify_cmd.add_argument(
        "--json", action="store_true", help="one JSON object: the summary and every difference"
    )

    args = parser.parse_args(argv)
    try:  # flags not given are None, which Settings.load skips
        settings = Settings.load(**{k: getattr(args, k, None) for k in SETTINGS_FLAGS})
    except SettingError as error:
        return fail(str(error), status=2)
    logs.configure(settings.log_level, settings.log_format)
    try:
        if args.command == "migrate":
            return run_migrate(settings)
        if args.command == "keys":
            return run_keys(settings, args)
        if args.command == "verify":
            return run_verify(settings, args.system, as_json=args.json)
        return run_serve(settings)
    except StartupError as error:
        return fail(str(error))
    except DBAPIError as error:  # the database failed after it opened (a migration, a key)
        return fail(database_fault(settings.database_url, error))


def fail(message: str, status: int = 1) -> int:
    """`message`, the cause, as one line on standard error; `status` to exit with."""
    print(f"tally-server: {message}", file=sys.stderr, flush=True)
    return status


# Flags that are settings (the rest belong to `keys`).
SETTINGS_FLAGS = (
    "listen",
    "database_url",
    "threads",
    "max_streams_per_key",
    "max_open_streams",
    "workers",
    "entry_lookup_limit_per_second",
    "entry_lookup_limit_burst",
    "grace_seconds",
    "insecure_no_auth",
    "metrics_listen",
    "log_format",
    "token_secret_file",
)


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL (env TALLY_DATABASE_URL, default an SQLite file ./tally.db)",
    )


def run_migrate(settings: Settings) -> int:
    store = open_store(settings.database_url)
    try:
        migrate.upgrade(store.engine)
        log.info("schema at revision %s", migrate.current(store.engine))
    finally:
        store.dispose()
    return 0


def run_keys(settings: Settings, args: argparse.Namespace) -> int:
    """`keys create|list|revoke`, on a schema brought to the newest version first (bad
    input is refused before the store is opened)."""
    systems = _system_names(getattr(args, "systems", None))
    if systems is None:
        return fail(
            "--systems must name points systems separated by commas, none of them empty "
            f"(leave --systems out for a key of every system), got {quoted(args.systems)}",
            status=2,
        )
    store = open_store(settings.database_url)
    try:
        migrate.ensure_newest(store.engine)
        now = app.utc_now()
        if args.keys_command == "create":
            try:
                created = api_keys.create_key(store, args.name, Scope(args.scope), systems, now)
            except ValidationFailed as error:
                print(f"tally-server: {error.message}", file=sys.stderr)
                return 2
            missing = api_keys.missing_systems(store, created.key.systems)
            if missing:
                named = ", ".join(map(repr, missing))
                print(
                    f"tally-server: warning: no points system {named} exists yet; the key "
                    "is made and may use it once it does"
                    if len(missing) == 1
                    else f"tally-server: warning: no points systems {named} exist yet; the "
                    "key is made and may use them once they do",
                    file=sys.stderr,
                )
            print(f"created key {created.key.id}: {_describe(created.key)}")
            print("the key is shown only now; keep it (callers send it as x-api-key):")
            print(created.text)
            return 0
        if args.keys_command == "list":
            for key in api_keys.list_keys(store):
                print(json.dumps(_key_fields(key)) if args.json else _describe(key, full=True))
            return 0
        if api_keys.revoke_key(store, args.id, now):
            print(
                f"revoked key {args.id}; servers refuse it within {settings.key_cache_seconds:g} s"
            )
            return 0
        print(f"tally-server: no live key {args.id!r}", file=sys.stderr)
        return 1
    finally:
        store.dispose()


def _system_names(given: str | None) -> list[str] | None:
    """The names `--systems` gives ([] when left out: every system); None when one is
    empty, as `--systems ","` or an empty "$VAR," would make it: such a key once meant
    every system, the opposite of what was asked."""
    if given is None:
        return []
    names = [name.strip() for name in given.split(",")]
    return None if "" in names else names


def run_verify(settings: Settings, system_key: str, *, as_json: bool) -> int:
    """`verify`: 0 when every account agrees with its ledger, 1 on any difference, 2 when
    the store could not be checked (one line on stderr saying why). Reads only."""
    try:
        store = _existing_store(settings.database_url)
    except _CannotVerify as error:
        print(f"tally-server verify: {error}", file=sys.stderr)
        return 2
    progress = None if as_json else _print_progress
    try:
        report = verify.verify(store, system_key, progress=progress)
    except SystemNotFound:
        print(f"tally-server verify: no points system {system_key!r}", file=sys.stderr)
        return 2
    except (DBAPIError, TransientStoreError) as error:
        # Not retried: a verification is a read, and running it again is the caller's call.
        print(f"tally-server verify: cannot read the store: {_first_line(error)}", file=sys.stderr)
        return 2
    finally:
        store.dispose()
    if as_json:
        print(json.dumps(_report_fields(report)))
    else:
        for difference in report.differences:
            print(_describe_difference(difference))
        found = len(report.differences)
        outcome = "no differences" if report.ok else f"{found} difference{'s' * (found != 1)}"
        print(f"verified {report.accounts} accounts, {report.entries} entries: {outcome}")
    return 0 if report.ok else 1


class _CannotVerify(Exception):
    """Why a store cannot be verified (said in one line)."""


def _existing_store(url: str) -> SqlStore:
    """The store at `url`, with its schema at the newest version. Never creates one:
    verifying a misspelt SQLite path must not leave an empty database behind."""
    path = make_url(url).database if make_url(url).get_backend_name() == "sqlite" else None
    if path and path != ":memory:" and not os.path.isfile(path):
        raise _CannotVerify(f"no SQLite database at {path}")
    try:
        store = open_store(url)
    except StartupError as error:
        raise _CannotVerify(str(error)) from None
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its banner is no news here
    try:
        revision = migrate.current(store.engine)
    except DBAPIError as error:
        store.dispose()
        raise _CannotVerify(f"cannot connect to the store: {_first_line(error)}") from None
    if revision != migrate.head():
        store.dispose()
        raise _CannotVerify(
            f"the schema is at revision {revision or '(none)'}, not {migrate.head()}: "
            "run `tally-server migrate` first"
        )
    return store


def _first_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _print_progress(accounts: int, entries: int) -> None:
    print(f"verify: {accounts:,} accounts, {entries:,} entries checked so far", file=sys.stderr)


def _report_fields(report: verify.Report) -> dict[str, object]:
    return {
        "ok": report.ok,
        "accounts": report.accounts,
        "entries": report.entries,
        "differences": [
            {
                "system_key": d.system_key,
                "user_id": d.user_id,
                "check": d.check,
                "stored": d.stored,
                "expected": d.expected,
                "entry_id": d.entry_id or None,
                "detail": d.detail,
            }
            for d in report.differences
        ],
    }


def _describe_difference(d: Difference) -> str:
    """One line: whose figure, which check, what is stored and what the ledger says."""
    where = f"{d.system_key}/{d.user_id}" if d.system_key else f"user {d.user_id}"
    about = f" (entry {d.entry_id})" if d.entry_id else ""
    detail = f"; {d.detail}" if d.detail else ""
    stored, expected = ("(none)" if v is None else v for v in (d.stored, d.expected))
    return f"{where}: {d.check}{about}: stored {stored}, expected {expected}{detail}"


def _key_fields(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "scope": key.scope.value,
        "systems": sorted(key.systems),
        "create_time": key.create_time.isoformat(),
        "revoke_time": key.revoke_time.isoformat() if key.revoke_time else None,
    }


def _describe(key: ApiKey, *, full: bool = False) -> str:
    systems = ",".join(sorted(key.systems)) or "all systems"
    text = f"{key.scope.value}, {systems}, {key.name!r}"
    if not full:
        return text
    state = f"revoked {key.revoke_time:%Y-%m-%d %H:%M:%S}" if key.revoke_time else "live"
    return f"{key.id}  {text}, created {key.create_time:%Y-%m-%d %H:%M:%S}, {state}"


def run_serve(settings: Settings) -> int:
    """Migrate, then serve: in this process, or in `workers` processes sharing the port.
    On a store with no API key at all, first make an admin key and print it, once.
    The address and the database are checked before anything is written."""
    check_can_listen(*settings.listen_address)
    for line in unknown_variables(os.environ):
        log.warning("%s", line)
    store = open_store(settings.database_url)
    try:
        migrate.upgrade(store.engine)
        if not settings.insecure_no_auth:
            first = api_keys.create_first_key(store, app.utc_now())
            if first is not None:
                print_first_key(first)
            if not settings.token_secret:
                log.warning(
                    "no TALLY_TOKEN_SECRET: user tokens are signed with secrets kept in the "
                    "store, so whoever reads the store can make them (README, User tokens)"
                )
    finally:
        store.dispose()
    if settings.workers <= 1:
        return serve_here(settings)
    return supervise_workers(settings)


def print_first_key(first: api_keys.CreatedKey) -> None:
    """The first-run admin key, on standard output, alone on its last line."""
    rule = "=" * 72
    print(rule)
    print(f"No API key existed, so an admin key was made (id {first.key.id}).")
    print("It is shown only now. Send it as `x-api-key` metadata; make narrower keys")
    print("with `tally-server keys create`. The key:")
    print(first.text)
    print(rule, flush=True)


def serve_here(settings: Settings, *, worker: bool = False) -> int:
    """One server process: serves until SIGTERM/SIGINT, then finishes calls in flight.
    A `worker` of `--workers N` leaves /metrics to its supervisor, and the news of its
    stop too: the supervisor says once that it stops the pool and once that it stopped,
    with each worker's exit, so a worker's own lines are DEBUG."""
    say = log.debug if worker else log.info
    whose = f" (pid {os.getpid()})" if worker else ""
    stopping = _stop_on_signals(
        lambda name: say("%s received%s; finishing calls in flight", name, whose)
    )
    tracing.setup()
    store = SqlStore.from_url(settings.database_url, pool_size=settings.pool_size)
    try:
        server = app.build(settings, store)
        exposition = None if worker else serve_metrics(settings)
    except OSError as error:  # the address was taken since it was checked
        store.dispose()
        raise StartupError(str(error)) from None
    server.start()
    log.info("serving on %s (port %d, pid %d)", settings.listen, server.port, os.getpid())
    # Wait with a timeout: the kernel may hand SIGTERM to any of gRPC's threads, and the
    # handler runs only when the main thread wakes to check for it.
    while not stopping.wait(0.5):
        pass
    server.stop(settings.grace_seconds)
    store.dispose()
    if exposition is not None:
        exposition.stop()
    tracing.shutdown()
    say("stopped (pid %d)", os.getpid())
    return 0


def serve_metrics(
    settings: Settings, processes: Callable[[], list[tuple[str, int]]] | None = None
) -> metrics.Exposition | None:
    """Serve /metrics at --metrics-listen, when it is set (a supervisor's: with the
    process metrics of what `processes` names)."""
    if not settings.metrics_listen:
        return None
    exposition = metrics.serve(settings.metrics_listen, processes=processes)
    log.info("metrics at http://%s/metrics", settings.metrics_listen)
    return exposition


def serve_worker(settings: Settings) -> None:
    """A `--workers` process: serve_here, its start-up fault logged in one line. It leaves
    /metrics to its supervisor."""
    try:
        serve_here(settings, worker=True)
    except StartupError as error:
        log.error("worker pid %d cannot serve: %s", os.getpid(), error)
        sys.exit(1)


def supervise_workers(settings: Settings) -> int:
    """Start `workers` server processes on one port (SO_REUSEPORT), each with its own
    threads and connection pool, so that both cores serve, and restart any that dies
    (server/workers.py). SIGTERM/SIGINT stop them all, each finishing its calls in flight.

    The port is checked again just before the workers start: it may have been taken while
    the schema migrated, and the workers' own sockets would share it with another pool."""
    check_can_listen(*settings.listen_address)
    stopping = _stop_on_signals(
        lambda name: log.info(
            "%s received; stopping the pool: each worker finishes its calls in flight within %g s",
            name,
            settings.grace_seconds,
        )
    )
    # Metrics: each worker writes its values to files in a folder made here, and this
    # process serves them summed (server/metrics.py), on one port whatever the count.
    shared = (
        tempfile.TemporaryDirectory(prefix="tally-metrics-") if settings.metrics_listen else None
    )
    if shared is not None:
        metrics.share_between_processes(shared.name)
    pool = WorkerPool(
        settings.workers,
        lambda: serve_worker(settings),
        on_exit=metrics.worker_exited if shared is not None else None,
    )
    pool.start()
    failed: str | None = None
    try:
        exposition = serve_metrics(settings, processes=lambda: pool_processes(pool))
    except OSError as error:  # the workers are running: stop them, then say why
        exposition = None
        failed = f"cannot serve metrics at {settings.metrics_listen}: {error}"
    log.info("supervising %d workers on %s", settings.workers, settings.listen)
    while failed is None and not stopping.wait(0.2):
        failed = pool.tend()
    if failed is not None:
        log.error("%s", failed)
    stopped = pool.stop(settings.grace_seconds)
    if exposition is not None:
        exposition.stop()
    if shared is not None:
        shared.cleanup()
    ended = ", ".join(str(worker) for worker in stopped) or "no worker was running"
    log.info("stopped the pool (pid %d): %s", os.getpid(), ended)
    clean = failed is None and all(worker.exitcode == 0 for worker in stopped)
    return 0 if clean else 1


def pool_processes(pool: WorkerPool) -> list[tuple[str, int]]:
    """The supervisor and its live workers, as the `process` label of /metrics names them."""
    workers = [(f"worker-{index}", pid) for index, pid in pool.running()]
    return [("supervisor", os.getpid()), *workers]


def _stop_on_signals(say: Callable[[str], None]) -> threading.Event:
    """An event the first SIGTERM or SIGINT sets, `say`ing so with the signal's name;
    another one says nothing more (Ctrl-C reaches a pool's workers, then its
    supervisor's SIGTERM does)."""
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            say(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    accept_stop_signals()  # a worker is forked with them blocked (server/workers.py)
    return stopping


if __name__ == "__main__":
    sys.exit(main())
