"""The `tally-server` command as operators run it: a real process, a real port, signals.

Each test runs `python -m server` in its own working folder with a clean TALLY_*
environment, and reads the SQLite file afterwards to check what was really written.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server import app
from server.domain import commands
from server.services.operations import api_keys
from server.services.tally import Tally
from server.services.use_cases import systems
from server.store.database import SqlStore
from server.store.models import Base
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc
from tests.e2e.conftest import keyed

GRACE_SECONDS = 10.0
START_DEADLINE = 30.0
KEY = re.compile(r"^tally_[A-Za-z0-9_-]{43}$", re.M)
# Tests that hammer one user measure shutdown, not the per-user write limit.
NO_RATE_LIMIT = {"TALLY_RATE_LIMIT_PER_SECOND": "0"}


def clean_env(**values: str) -> dict[str, str]:
    """This environment without any TALLY_* setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(values)
    return env


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tally(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tables(db: Path) -> set[str]:
    with closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def ledger_totals(db: Path) -> tuple[int, int, int]:
    """(sum of amounts, number of entries, the account's balance) for user `u` in `xp`."""
    with closing(sqlite3.connect(db)) as connection:
        total, count = connection.execute(
            "SELECT coalesce(sum(amount), 0), count(*) FROM ledger_entries"
        ).fetchone()
        row = connection.execute(
            "SELECT balance FROM accounts WHERE user_id = 'u' AND system_key = 'xp'"
        ).fetchone()
    return int(total), int(count), int(row[0]) if row else 0


@dataclass
class Served:
    """A running `tally-server serve` and what it printed."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def first_key(self) -> str:
        """The admin key `serve` printed on its first run."""
        keys = KEY.findall(self.output())
        assert len(keys) == 1, f"expected one first-run key:\n{self.output()}"
        return str(keys[0])


def wait_serving(served: Served) -> None:
    """Poll grpc.health.v1 until the server says SERVING, or fail with its log."""
    deadline = time.monotonic() + START_DEADLINE
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if served.process.poll() is not None:
                pytest.fail(f"server exited with {served.process.returncode}:\n{served.output()}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            except grpc.RpcError:
                time.sleep(0.05)
                continue
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            name = "tally.v1.PointsService"
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=1)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            return
    pytest.fail(f"no SERVING within {START_DEADLINE}s:\n{served.output()}")


@contextmanager
def serving(cwd: Path, env: dict[str, str]) -> Iterator[Served]:
    """`tally-server serve` on a free port; killed at the end if a test left it running."""
    port = free_port()
    log = cwd / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--grace-seconds",
                str(GRACE_SECONDS),
            ],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(process, port, log)
    try:
        wait_serving(served)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def serving_xp(
    cwd: Path, env: dict[str, str]
) -> Iterator[tuple[Served, points_pb2_grpc.PointsServiceStub]]:
    """`serving`, with a stub over a channel to it and the points system "xp" created."""
    with (
        serving(cwd, env) as served,
        grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel,
    ):
        stub = points_pb2_grpc.PointsServiceStub(keyed(channel, served.first_key()))
        system = points_pb2.PointsSystem(key="xp")
        stub.CreateSystem(points_pb2.CreateSystemRequest(system=system), timeout=10)
        yield served, stub


def wait_exit(served: Served) -> float:
    """Waits for the server to exit after a signal just sent, checks that it exited 0, and
    returns how long that took."""
    started = time.monotonic()
    try:
        code = served.process.wait(timeout=GRACE_SECONDS + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running {GRACE_SECONDS + 10}s after SIGTERM")
    assert code == 0, served.output()
    return time.monotonic() - started


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    db = tmp_path / "data" / "tally.db"
    db.parent.mkdir()
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(db))
    done = tally("migrate", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert tables(db) == {*Base.metadata.tables, "alembic_version"}
    with closing(sqlite3.connect(db)) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision in done.stderr  # it says which revision the schema is at
    again = tally("migrate", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert not (tmp_path / "tally.db").exists()  # the URL was used, not the default


def test_migrate_flag_wins_over_the_environment(tmp_path: Path) -> None:
    flag_db, env_db = tmp_path / "flag.db", tmp_path / "env.db"
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(env_db))
    done = tally("migrate", "--database-url", sqlite_url(flag_db), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "ledger_entries" in tables(flag_db)
    assert not env_db.exists()


SYS_TGKILL = {"x86_64": 234, "aarch64": 131}.get(platform.machine())
needs_tgkill = pytest.mark.skipif(
    sys.platform != "linux" or SYS_TGKILL is None, reason="tgkill(2) is Linux-only"
)


def signal_thread(pid: int, tid: int, signum: int) -> None:
    """Deliver a signal to one thread of a process, as the kernel does with a
    process-directed signal when it picks that thread (which one it picks is its choice)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, signum) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def sigterm(served: Served) -> None:
    """SIGTERM to the server's main thread, so that these tests do not depend on which
    thread the kernel picks (test_sigterm_is_honoured_whichever_thread_the_kernel_picks)."""
    if SYS_TGKILL is None or sys.platform != "linux":
        served.process.send_signal(signal.SIGTERM)
    else:
        signal_thread(served.process.pid, served.process.pid, signal.SIGTERM)


def other_thread(pid: int) -> int:
    """A thread of `pid` other than its main one that would take SIGTERM, or the main
    thread when every other one blocks SIGTERM (then the kernel always picks main)."""
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        tid = int(task.name)
        if tid == pid:
            continue
        status = (task / "status").read_text()
        blocked = int(
            next(x for x in status.splitlines() if x.startswith("SigBlk:")).split()[1], 16
        )
        if not blocked & (1 << (signal.SIGTERM - 1)):
            return tid
    return pid


@dataclass
class Call:
    key: str
    start: float
    end: float
    code: grpc.StatusCode


@dataclass
class Hammer:
    """Threads awarding 1 point each, back to back, until told to stop."""

    stub: points_pb2_grpc.PointsServiceStub
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[Call] = field(default_factory=list)

    def run(self, worker: int) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            key = f"w{worker}-{n}"
            request = points_pb2.AwardRequest(
                system_key="xp", user=common_pb2.User(id="u"), amount=1, idempotency_key=key
            )
            start = time.monotonic()
            try:
                self.stub.Award(request, timeout=GRACE_SECONDS + 5)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            with self.lock:
                self.calls.append(Call(key, start, time.monotonic(), code))
            if code is not grpc.StatusCode.OK:
                time.sleep(0.01)

    def answered(self, code: grpc.StatusCode) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.code is code]


def ledger_keys(db: Path) -> set[str]:
    with closing(sqlite3.connect(db)) as connection:
        return {k for (k,) in connection.execute("SELECT idempotency_key FROM ledger_entries")}


def hammer_through_sigterm(tmp_path: Path, threads: int) -> tuple[Hammer, float, float, Path]:
    """Award from `threads` threads, SIGTERM the server's main thread mid-way, and return
    the calls, when the signal went, how long the server took to exit, and the database."""
    db = tmp_path / "tally.db"
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(db), **NO_RATE_LIMIT)
    with serving_xp(tmp_path, env) as (served, stub):
        hammer = Hammer(stub)
        workers = [threading.Thread(target=hammer.run, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        try:
            deadline = time.monotonic() + 20
            while len(hammer.answered(grpc.StatusCode.OK)) < 50:
                assert time.monotonic() < deadline, served.output()
                time.sleep(0.01)
            signalled = time.monotonic()
            sigterm(served)
            took = wait_exit(served)
            time.sleep(0.2)  # let the callers see the closed port
        finally:
            hammer.stopping.set()
            for worker in workers:
                worker.join(timeout=30)
    return hammer, signalled, took, db


def test_sigterm_finishes_calls_in_flight_and_exits_0(tmp_path: Path) -> None:
    """Calls in flight at SIGTERM are answered; the ledger holds exactly the awards callers
    were told succeeded, and nothing a caller saw fail."""
    hammer, signalled, took, db = hammer_through_sigterm(tmp_path, threads=8)
    assert took < GRACE_SECONDS, f"took {took:.1f}s to stop"
    ok = hammer.answered(grpc.StatusCode.OK)
    assert any(c.start < signalled < c.end for c in ok), "no call in flight finished"
    failed = [c for c in hammer.calls if c.code is not grpc.StatusCode.OK]
    assert failed, "calls made after the server stopped must fail"
    # A caller still calling once the drain's backlog window closed may see CANCELLED; a
    # burst at SIGTERM must not (test_calls_refused_at_shutdown_are_unavailable).
    assert {c.code for c in failed} <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert ledger_keys(db) == {c.key for c in ok}
    assert ledger_totals(db) == (len(ok), len(ok), len(ok))


def test_calls_refused_at_shutdown_are_unavailable(tmp_path: Path) -> None:
    """UNAVAILABLE is the code callers (and gRPC retry policies) retry; CANCELLED says the
    caller gave up, so a call the server never ran must not end CANCELLED."""
    db = tmp_path / "tally.db"
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(db), **NO_RATE_LIMIT)
    with serving_xp(tmp_path, env) as (served, stub):
        requests = [
            points_pb2.AwardRequest(
                system_key="xp", user=common_pb2.User(id="u"), amount=1, idempotency_key=f"k{i}"
            )
            for i in range(300)
        ]
        calls = [stub.Award.future(r, timeout=10) for r in requests[:150]]
        sigterm(served)
        calls += [stub.Award.future(r, timeout=10) for r in requests[150:]]
        codes = [call.code() for call in calls]
        wait_exit(served)
    ok = {
        r.idempotency_key
        for r, code in zip(requests, codes, strict=True)
        if code is grpc.StatusCode.OK
    }
    assert ledger_keys(db) == ok
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, Counter(codes)


@needs_tgkill
def test_sigterm_is_honoured_whichever_thread_the_kernel_picks(tmp_path: Path) -> None:
    """The kernel gives a process-directed SIGTERM to any thread that does not block it,
    and gRPC runs many; under load the server then ignored SIGTERM until SIGKILL."""
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(tmp_path / "tally.db"))
    with serving(tmp_path, env) as served:
        pid = served.process.pid
        signal_thread(pid, other_thread(pid), signal.SIGTERM)
        try:
            code = served.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM was ignored")
        assert code == 0


def test_serve_defaults_to_tally_db_in_the_working_folder(tmp_path: Path) -> None:
    env = clean_env()
    with serving_xp(tmp_path, env) as (served, stub):
        award = points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id="u"), amount=7)
        stub.Award(award, timeout=10)
        sigterm(served)
        wait_exit(served)
    db = tmp_path / "tally.db"
    assert db.is_file()
    assert tables(db) >= set(Base.metadata.tables)
    assert ledger_totals(db) == (7, 1, 7)


def test_first_run_prints_one_admin_key_once(tmp_path: Path) -> None:
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(tmp_path / "tally.db"))
    with serving_xp(tmp_path, env) as (served, stub):  # the stub calls with that key
        assert "admin key" in served.output()
        stub.Award(points_pb2.AwardRequest(system_key="xp", user=common_pb2.User(id="u"), amount=1))
        sigterm(served)
        wait_exit(served)
    with serving(tmp_path, env) as again:
        assert not KEY.search(again.output()), "a key is shown only when it is made"
        sigterm(again)
        wait_exit(again)
    listed = tally("keys", "list", "--json", cwd=tmp_path, env=env)
    (key,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (key["scope"], key["name"], key["revoke_time"]) == ("admin", "first-run admin", None)


def test_keys_create_list_and_revoke(tmp_path: Path) -> None:
    env = clean_env(
        TALLY_DATABASE_URL=sqlite_url(tmp_path / "tally.db"), TALLY_KEY_CACHE_SECONDS="0"
    )
    made = tally(
        "keys",
        "create",
        "--scope",
        "read",
        "--name",
        "dashboards",
        "--systems",
        "xp,coins",
        cwd=tmp_path,
        env=env,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert KEY.fullmatch(key), made.stdout
    for flags in ((), ("--json",)):
        listed = tally("keys", "list", *flags, cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        assert "alembic" not in listed.stderr  # the schema is new already: nothing to say
        assert "dashboards" in listed.stdout
        assert key not in listed.stdout
        assert key.removeprefix("tally_")[:12] not in listed.stdout
    (row,) = [
        json.loads(line)
        for line in tally("keys", "list", "--json", cwd=tmp_path, env=env).stdout.splitlines()
    ]
    assert (row["scope"], row["systems"]) == ("read", ["coins", "xp"])
    bad = tally(
        "keys",
        "create",
        "--scope",
        "read",
        "--name",
        "x",
        "--systems",
        "Not A Key",
        cwd=tmp_path,
        env=env,
    )
    assert bad.returncode == 2
    assert "systems" in bad.stderr

    with (
        serving(tmp_path, env) as served,
        grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel,
    ):
        stub = points_pb2_grpc.PointsServiceStub(keyed(channel, key))
        stub.ListSystems(points_pb2.ListSystemsRequest(), timeout=10)
        revoked = tally("keys", "revoke", row["id"], cwd=tmp_path, env=env)
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListSystems(points_pb2.ListSystemsRequest(), timeout=10)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        sigterm(served)
        wait_exit(served)
    again = tally("keys", "revoke", row["id"], cwd=tmp_path, env=env)
    assert again.returncode == 1
    assert "no live key" in again.stderr


@pytest.mark.parametrize("given", [",", " ", "", "xp,", ",xp", "xp,,coins", "xp, "])
def test_keys_create_refuses_an_empty_system_name(
    tmp_path: Path, store: SqlStore, given: str
) -> None:
    """`--systems ","` (an empty "$VAR," in a script) once made a key of every system."""
    env = clean_env(TALLY_DATABASE_URL=store.engine.url.render_as_string(hide_password=False))
    made = tally(
        "keys", "create", "--scope", "write", "--name", "n", "--systems", given,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert made.returncode == 2, made.stdout
    assert made.stderr.splitlines() == [
        "tally-server: --systems must name points systems separated by commas, none of them "
        "empty (leave --systems out for a key of every system), got " + repr(given)
    ]
    assert not KEY.search(made.stdout)
    assert api_keys.list_keys(store) == []


def test_keys_create_warns_of_systems_not_made_yet(tmp_path: Path, store: SqlStore) -> None:
    systems.create_system(Tally(store), commands.CreateSystem(key="xp"), app.utc_now())
    env = clean_env(TALLY_DATABASE_URL=store.engine.url.render_as_string(hide_password=False))

    def create(*flags: str) -> list[str]:
        """The key's creation, checked; what it said on stderr (not the migration's log)."""
        made = tally(
            "keys", "create", "--scope", "read", "--name", "n", *flags, cwd=tmp_path, env=env
        )
        assert made.returncode == 0, made.stderr
        assert KEY.fullmatch(made.stdout.splitlines()[-1]), made.stdout
        return [line for line in made.stderr.splitlines() if line.startswith("tally-server")]

    assert create("--systems", "xp") == []
    assert create() == []  # every system
    assert create("--systems", "xp,cions") == [
        "tally-server: warning: no points system 'cions' exists yet; the key is made and may "
        "use it once it does"
    ]
    assert create("--systems", " b , xp,a") == [
        "tally-server: warning: no points systems 'a', 'b' exist yet; the key is made and may "
        "use them once they do"
    ]
    assert [sorted(k.systems) for k in api_keys.list_keys(store)] == [
        ["xp"],
        [],
        ["cions", "xp"],
        ["a", "b", "xp"],
    ]


def test_insecure_no_auth_serves_without_keys_and_says_so(tmp_path: Path) -> None:
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(tmp_path / "tally.db"))
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--insecure-no-auth",
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served = Served(process, port, log)
    try:
        wait_serving(served)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = points_pb2_grpc.PointsServiceStub(channel)
            stub.CreateSystem(
                points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp")), timeout=10
            )
        assert "WARNING" in served.output()
        assert "--insecure-no-auth" in served.output()
        assert not KEY.search(served.output())
        sigterm(served)
        wait_exit(served)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
