"""The system under test: a fresh PostgreSQL database and the real server on a free port.

Why a fresh database per run: earlier runs leave history that changes the numbers, and
the harness must never touch a database someone uses. On a Citus cluster (`--citus`) the
database is made on the coordinator and on every worker, with the extension, and the
coordinator's copy is told its workers: Citus propagates neither `CREATE DATABASE` nor
the node list, which it keeps per database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.measure import parent

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    """Progress for the person waiting: stderr, so stdout stays the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


CLUSTER_UP = "/work/shared/citus/cluster-up.sh"


def citus_workers(host: str, port: int, user: str) -> tuple[tuple[str, int], ...]:
    """The workers of the Citus coordinator at host:port, from its `postgres` database's
    node list; exits with how to start a cluster when there is none there."""
    start = (
        f"start one with `bash {CLUSTER_UP}` (as root: a coordinator on 127.0.0.1:9700, "
        "workers on 9701 and 9702), or run `bash tests/citus/run.sh`, which builds Citus "
        "where it is missing and starts the same cluster"
    )
    try:
        conn = psycopg.connect(
            f"host={host} port={port} user={user} dbname=postgres connect_timeout=3",
            autocommit=True,
        )
    except psycopg.OperationalError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        message = f"--citus: no Citus coordinator at {host}:{port} ({first}); {start}"
        raise SystemExit(message) from None
    with conn:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() is None:
            raise SystemExit(
                f"--citus: the PostgreSQL at {host}:{port} has no citus extension in its "
                f"postgres database, so it is not a Citus coordinator; {start}"
            )
        rows = conn.execute(
            "SELECT nodename, nodeport FROM pg_dist_node"
            " WHERE groupid <> 0 AND noderole = 'primary' AND isactive ORDER BY nodeid"
        ).fetchall()
    if not rows:
        raise SystemExit(f"--citus: the coordinator at {host}:{port} has no workers; {start}")
    return tuple((str(name), int(str(node_port))) for name, node_port in rows)


@dataclass
class Database:
    """A database made for this run and dropped after it: on one PostgreSQL, or with
    `workers` on a Citus cluster whose coordinator is host:port."""

    host: str
    port: int
    user: str
    name: str
    workers: tuple[tuple[str, int], ...] = ()

    @property
    def citus(self) -> bool:
        return bool(self.workers)

    def nodes(self) -> dict[str, tuple[str, int]]:
        """Every node holding the database, by the name the results give it."""
        if not self.citus:
            return {"postgresql": (self.host, self.port)}
        return {
            "coordinator": (self.host, self.port),
            **{f"worker{i}": node for i, node in enumerate(self.workers, 1)},
        }

    def sessions(self) -> dict[str, int]:
        """Sessions opened so far in this database, on each node (pg_stat_database): a
        connection opened per call shows up here (Citus's to its workers)."""
        opened: dict[str, int] = {}
        for name, (host, port) in self.nodes().items():
            with self._on(host, port, self.name) as conn:
                conn.execute("SELECT pg_stat_clear_snapshot()")
                row = conn.execute(
                    "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
                ).fetchone()
            opened[name] = int(str(row[0])) if row else 0
        return opened

    def postmasters(self) -> dict[str, int]:
        """Each node's postmaster pid (the parent of a backend of ours), for the Meter."""
        found: dict[str, int] = {}
        for name, (host, port) in self.nodes().items():
            with psycopg.connect(
                f"host={host} port={port} user={self.user} dbname={self.name}"
            ) as conn:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                assert row is not None
                # while the backend lives: once the connection closes it may be gone
                postmaster = parent(int(str(row[0])))
            if postmaster is None:
                raise RuntimeError(f"no postmaster found for {name} ({host}:{port})")
            found[name] = postmaster
        return found

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={self.name}"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.name}"

    def _on(self, host: str, port: int, dbname: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            f"host={host} port={port} user={self.user} dbname={dbname}", autocommit=True
        )

    def create(self) -> None:
        for host, port in self.nodes().values():
            with self._on(host, port, "postgres") as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{self.name}"')
        if not self.citus:
            return
        for host, port in self.nodes().values():
            with self._on(host, port, self.name) as conn:
                conn.execute("CREATE EXTENSION citus")
        with self.connect() as conn:
            conn.execute("SELECT citus_set_coordinator_host(%s, %s)", (self.host, self.port))
            for host, port in self.workers:
                conn.execute("SELECT citus_add_node(%s, %s)", (host, port))

    def drop(self) -> None:
        for host, port in self.nodes().values():
            with self._on(host, port, "postgres") as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn, autocommit=True)

    def version(self) -> str:
        with self.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# With auth on, the write limit runs on every write (so its cost is measured) but is far
# above any rate the bench reaches (award_hot writes one user as fast as it can).
UNREACHED_RATE_LIMIT = {
    "TALLY_RATE_LIMIT_PER_SECOND": "1000000000",
    "TALLY_RATE_LIMIT_BURST": "1000000000",
}


class Server:
    """`tally-server serve` as a subprocess; started and stopped as a context manager.

    With `auth` (the default) it checks keys as in production: an admin key is made with
    `tally-server keys create` first, and every call of the bench sends it (`headers`).
    Without, it serves with --insecure-no-auth and no write limit."""

    def __init__(
        self,
        database: Database,
        *,
        workers: int,
        threads: int | None,
        env: dict[str, str] | None = None,
        auth: bool = True,
    ) -> None:
        self.database = database
        self.workers = workers
        self.threads = threads
        self.auth = auth
        limits = UNREACHED_RATE_LIMIT if auth else {"TALLY_RATE_LIMIT_PER_SECOND": "0"}
        self.env = {**limits, **(env or {})}
        self.headers: tuple[tuple[str, str], ...] = ()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"tally-bench-{self.port}.log"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _make_key(self) -> str:
        made = subprocess.run(
            [
                str(_server_command()),
                "keys",
                "create",
                "--scope",
                "admin",
                "--name",
                "bench",
                "--database-url",
                self.database.url,
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        return made.stdout.strip().splitlines()[-1]

    def __enter__(self) -> Self:
        if self.auth and not self.headers:
            self.headers = (("x-api-key", self._make_key()),)
        command = [
            str(_server_command()),
            "serve",
            "--workers",
            str(self.workers),
            "--listen",
            self.target,
            "--database-url",
            self.database.url,
        ]
        if self.threads:
            command += ["--threads", str(self.threads)]
        if not self.auth:
            command.append("--insecure-no-auth")
        env = {**os.environ, "TALLY_LOG_LEVEL": "WARNING", **self.env}
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=out, env=env, cwd=ROOT)
        self._wait_serving()
        return self

    def _wait_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited; see {self.log_path}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        # Every worker must be up before load starts: give the rest a moment.
                        time.sleep(1.0)
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"the server did not become healthy; see {self.log_path}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _server_command() -> Path:
    """The venv's tally-server next to the running interpreter."""
    candidate = Path(sys.executable).parent / "tally-server"
    if not candidate.exists():
        raise SystemExit(
            "tally-server is not installed next to this Python; run "
            "`.venv/bin/pip install -e .` and `.venv/bin/python -m bench`"
        )
    return candidate
