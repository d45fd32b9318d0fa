"""Faults that stop `tally-server` from starting, each found before anything is written
and told in one line: a database that cannot be opened, an address that cannot be
listened on.

`tally-server` prints a StartupError as `tally-server: MESSAGE` and exits 1 (a bad
setting, SettingError, exits 2, as a bad flag does).
"""

from __future__ import annotations

import errno
import re
import socket
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from server.store.database import SqlStore

# What the operator can do about a driver's reason, by a phrase in it.
DATABASE_HINTS = {
    "connection refused": "is the database server running, and on that host and port?",
    "does not exist": "create it first, or fix the name in the URL",
    "unable to open database file": "does the folder exist, and may this user write there?",
    "file is not a database": "the file is not an SQLite database",
}


class StartupError(Exception):
    """Why the process cannot start, in one line that names the cause."""


def open_store(url: str, *, pool_size: int = 10) -> SqlStore:
    """The store at `url`, once one connection shows that it is there; else StartupError."""
    store = SqlStore.from_url(url, pool_size=pool_size)
    try:
        with store.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                # SQLite opens lazily: only a read shows that the file is a database.
                connection.exec_driver_sql("SELECT count(*) FROM sqlite_master")
    except DBAPIError as error:
        store.dispose()
        raise StartupError(database_fault(url, error)) from None
    return store


def database_fault(url: str, error: DBAPIError) -> str:
    """A driver's error as one line: which database, the driver's reason, and a hint."""
    shown = make_url(url).render_as_string(hide_password=True)
    reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else ""
    # psycopg: 'connection failed: connection to server at "h", port 5432 failed: FATAL:  ...'
    reason = re.sub(r"^.*failed:\s*(FATAL:\s*)?", "", reason) or type(error.orig).__name__
    hint = next((h for phrase, h in DATABASE_HINTS.items() if phrase in reason.lower()), "")
    if hint.startswith("does the folder") and (folder := _sqlite_folder(url)) is not None:
        hint = f"the folder {folder} does not exist" if not folder.is_dir() else hint
    return f"cannot open the database {shown}: {reason}" + (f" ({hint})" if hint else "")


def _sqlite_folder(url: str) -> Path | None:
    database = make_url(url).database
    return Path(database).parent if database and database != ":memory:" else None


def check_can_listen(host: str, port: int) -> None:
    """Fails (StartupError) unless this process could listen on host:port now.

    The probe binds without SO_REUSEPORT, so it fails when anything listens there,
    including the workers of another `serve --workers` pool, whose sockets share the port
    only with sockets that ask to. Port 0 (any free port) always passes."""
    if port == 0:
        return
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise StartupError(f"cannot listen on {where}: {host!r} {_resolve_reason(error)}") from None
    bound = 0
    unavailable: OSError | None = None
    for family, kind, protocol, _name, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # As gRPC binds: a port left in TIME_WAIT by the last server is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                bound += 1
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise StartupError(
                        f"cannot listen on {where}: port {port} is in use (another server, or "
                        "another tally-server pool, listens there; stop it or pick another port)"
                    ) from None
                if error.errno == errno.EACCES:
                    raise StartupError(
                        f"cannot listen on {where}: permission denied (ports below 1024 need "
                        "privileges)"
                    ) from None
                unavailable = error
    if not bound:
        reason = unavailable.strerror if unavailable is not None else "no address"
        raise StartupError(
            f"cannot listen on {where}: {reason} (is {host} an address of this machine?)"
        )


def _resolve_reason(error: socket.gaierror) -> str:
    if error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        return "does not resolve to an address"
    return f"cannot be resolved ({error.strerror})"
