"""The processes a fault scenario runs and breaks: `tally-server serve` (one process, or a
`--workers` pool), and the databases under it (an SQLite file, a fresh database on the
shared PostgreSQL, or a private PostgreSQL cluster that may be stopped at will).

The shared PostgreSQL on 5432 is never stopped: a scenario that restarts PostgreSQL makes
its own cluster (initdb in a temporary folder, on a free port, its socket in that folder).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from server.app import utc_now
from server.domain.access import Scope
from server.services.operations import api_keys
from server.store import migrate
from server.store.database import SqlStore
from tests.conftest import PG_ADMIN_URL

PG_BIN = Path(os.environ.get("TALLY_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_SECONDS = 60.0


class Unready(RuntimeError):
    """A process that should have come up did not (its log is in the message)."""


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**values: str) -> dict[str, str]:
    """This environment without any TALLY_* setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(values)
    return env


def prepare(url: str) -> str:
    """Migrate the database at `url` and make an admin key for the scenario; the key."""
    store = SqlStore.from_url(url)
    try:
        migrate.upgrade(store.engine)
        return api_keys.create_key(store, "fault suite", Scope.ADMIN, (), utc_now()).text
    finally:
        store.dispose()


class Server:
    """`tally-server serve` on 127.0.0.1:`port` over `database_url`, started and stopped
    again on the same port; every start's output goes to one log."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        workers: int = 1,
        grace_seconds: float = 10.0,
        threads: int = 16,
    ) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.workers = workers
        self.grace_seconds = grace_seconds
        self.threads = threads
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log = workdir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start_seconds: list[float] = []  # how long each start took to serve
        self.log_level = os.environ.get("TALLY_FAULTS_SERVER_LOG_LEVEL", "WARNING")

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--listen",
            self.target,
            "--database-url",
            self.database_url,
            "--grace-seconds",
            str(self.grace_seconds),
            "--threads",
            str(self.threads),
        ]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        # The writers hammer a dozen users: the suite tests faults, not the write limit.
        env = clean_env(TALLY_RATE_LIMIT_PER_SECOND="0", TALLY_LOG_LEVEL=self.log_level)
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts + 1}: {' '.join(command[2:])}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1
        began = time.monotonic()
        self.wait_serving()
        self.start_seconds.append(round(time.monotonic() - began, 2))

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_serving(self, seconds: float = START_SECONDS) -> None:
        """Poll grpc.health.v1 until the server says SERVING (or fail with its log)."""
        deadline = time.monotonic() + seconds
        with grpc.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if not self.running():
                    raise Unready(f"the server exited:\n{self.output()[-4000:]}")
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.RpcError:
                    time.sleep(0.05)
                    continue
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                time.sleep(0.05)
        raise Unready(f"no SERVING within {seconds:g} s:\n{self.output()[-4000:]}")

    def kill(self) -> None:
        """kill -9 of the server process (with --workers: of the supervisor alone)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float | None = None) -> int:
        """SIGTERM, then wait for the exit; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout or self.grace_seconds + 20)

    def workers_now(self) -> list[int]:
        """The pids of the supervisor's children (its `--workers` processes)."""
        return children(self.pid) if self.running() else []

    def busiest_worker(self) -> int:
        """The worker holding the most client connections: killing it hits most writers."""
        pids = self.workers_now()
        if not pids:
            raise Unready(f"no worker processes under {self.pid}:\n{self.output()[-4000:]}")
        established = established_inodes(self.port)
        return max(pids, key=lambda pid: len(socket_inodes(pid) & established))

    def stop(self) -> None:
        """Whatever is left, killed (the end of a scenario, or of a failed one)."""
        if self.process is None:
            return
        for pid in self.workers_now():
            _kill_quietly(pid)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def established_inodes(port: int) -> set[int]:
    """Inodes of ESTABLISHED TCP sockets whose local port is `port` (the server's side)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(int(inode))
    return inodes


def _kill_quietly(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


# -- databases -----------------------------------------------------------------------


@contextmanager
def fresh_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new, empty database on the PostgreSQL of `admin_url`, dropped afterwards."""
    name = f"tally_faults_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def private_postgres_missing() -> str | None:
    """None when a private cluster can be made here; otherwise why not."""
    if not (PG_BIN / "initdb").exists():
        return f"no initdb in {PG_BIN} (set TALLY_FAULTS_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to become the postgres user"
    return None


class PrivateCluster:
    """A PostgreSQL cluster of our own, in a temporary folder, on a free port of
    127.0.0.1, with its socket in that folder: the one a scenario may stop and start."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tally-faults-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.log = self.root / "postgres.log"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.root, user="postgres", group="postgres")

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise Unready(f"{' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}")

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start")

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash (recovery at the next start); `fast` a clean shutdown."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            with suppress(Unready):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
