"""Start-up and process faults, as a new user meets them: the real `tally-server` command
in a subprocess. A fault it can name gets one line on standard error, `tally-server:` and
the cause, no traceback, and a non-zero exit (2 for a bad setting, 1 for a database or an
address it cannot use); a `--workers` child that dies is restarted and the pool serves on.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy.engine import make_url

from server.domain import tokens
from tally.v1 import auth_pb2, auth_pb2_grpc, common_pb2, points_pb2, points_pb2_grpc
from tests.conftest import PG_ADMIN_URL
from tests.e2e.conftest import keyed
from tests.e2e.test_api import error_of
from tests.e2e.test_auth import balance_request, bearer
from tests.e2e.test_cli import Served, clean_env, free_port, sqlite_url, tally, wait_serving

POLL_SECONDS = 30.0  # how long a poll waits for what it expects before it fails

# Each subcommand, as a new user would type it; every one reads the same settings.
SUBCOMMANDS = {
    "serve": ["serve"],
    "migrate": ["migrate"],
    "keys create": ["keys", "create", "--scope", "read", "--name", "n"],
    "keys list": ["keys", "list"],
    "keys revoke": ["keys", "revoke", "0123456789ab"],
}

RANGE_INT = "must be a whole number from {} to {}, got {!r}"
RANGE_NUMBER = "must be a number from {} to {}{}, got {!r}"
LISTEN = "must be HOST:PORT with a port from 0 to 65535 (0 = any free port), got {!r}"
# (subcommand, flags, environment, the one line after "tally-server: "), each exit 2.
BAD_SETTINGS = [
    ("serve", ["--listen", "127.0.0.1:99999"], {}, "--listen " + LISTEN.format("127.0.0.1:99999")),
    ("serve", ["--listen", "127.0.0.1:abc"], {}, "--listen " + LISTEN.format("127.0.0.1:abc")),
    ("serve", ["--listen", "127.0.0.1"], {}, "--listen " + LISTEN.format("127.0.0.1")),
    ("migrate", [], {"TALLY_LISTEN": "h:-1"}, "TALLY_LISTEN " + LISTEN.format("h:-1")),
    ("serve", ["--threads", "x"], {}, "--threads " + RANGE_INT.format(1, 1024, "x")),
    (
        "keys list",
        [],
        {"TALLY_THREADS": "2.5"},
        "TALLY_THREADS " + RANGE_INT.format(1, 1024, "2.5"),
    ),
    ("serve", ["--workers", "-2"], {}, "--workers " + RANGE_INT.format(1, 256, "-2")),
    ("migrate", [], {"TALLY_WORKERS": "abc"}, "TALLY_WORKERS " + RANGE_INT.format(1, 256, "abc")),
    (
        "keys create",
        [],
        {"TALLY_LOG_LEVEL": "LOUD"},
        "TALLY_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
    ),
    (
        "serve",
        [],
        {"TALLY_SWEEP_SECONDS": "-1"},
        "TALLY_SWEEP_SECONDS " + RANGE_NUMBER.format(0, 86400, " (0 = off)", "-1"),
    ),
    (
        "keys revoke",
        [],
        {"TALLY_SWEEP_SECONDS": "nan"},
        "TALLY_SWEEP_SECONDS " + RANGE_NUMBER.format(0, 86400, " (0 = off)", "nan"),
    ),
    (
        "serve",
        ["--grace-seconds", "soon"],
        {},
        "--grace-seconds " + RANGE_NUMBER.format(0, 3600, "", "soon"),
    ),
    ("serve", [], {"TALLY_MAX_BATCH": "0"}, "TALLY_MAX_BATCH " + RANGE_INT.format(1, 100000, "0")),
    (
        "serve",
        [],
        {"TALLY_MAX_STREAMS": "1e9"},
        "TALLY_MAX_STREAMS " + RANGE_INT.format(1, 4096, "1e9"),
    ),
    (
        "migrate",
        [],
        {"TALLY_RATE_LIMIT_PER_SECOND": "inf"},
        "TALLY_RATE_LIMIT_PER_SECOND "
        + RANGE_NUMBER.format(0, 1000000000, " (0 = no limit)", "inf"),
    ),
    (
        "serve",
        [],
        {"TALLY_RATE_LIMIT_BURST": "0"},
        "TALLY_RATE_LIMIT_BURST " + RANGE_INT.format(1, 1000000000, "0"),
    ),
    (
        "serve",
        [],
        {"TALLY_ENTRY_LOOKUP_LIMIT_PER_SECOND": "-1"},
        "TALLY_ENTRY_LOOKUP_LIMIT_PER_SECOND "
        + RANGE_NUMBER.format(0, 1000000000, " (0 = no limit)", "-1"),
    ),
    (
        "serve",
        ["--entry-lookup-limit-burst", "0"],
        {},
        "--entry-lookup-limit-burst " + RANGE_INT.format(1, 1000000000, "0"),
    ),
    (
        "keys list",
        [],
        {"TALLY_KEY_CACHE_SECONDS": "-5"},
        "TALLY_KEY_CACHE_SECONDS " + RANGE_NUMBER.format(0, 3600, "", "-5"),
    ),
    (
        "serve",
        ["--workers", "2", "--listen", "127.0.0.1:0"],
        {},
        "2 workers (--workers, TALLY_WORKERS) need a fixed port to share; the listen address "
        "127.0.0.1:0 asks for any free port",
    ),
    (
        "migrate",
        ["--database-url", "notaurl"],
        {},
        "--database-url is not a database URL (expected "
        "postgresql+psycopg://USER@HOST:5432/DATABASE or sqlite:///PATH), got 'notaurl'",
    ),
    (
        "keys list",
        [],
        {"TALLY_DATABASE_URL": "postgresql://tally:hunter2@db:abc/tally"},
        "TALLY_DATABASE_URL is not a database URL (expected "
        "postgresql+psycopg://USER@HOST:5432/DATABASE or sqlite:///PATH), "
        "got 'postgresql://tally:***@db:abc/tally'",
    ),
    (
        "serve",
        ["--database-url", "mysql://tally@db/tally"],
        {},
        "--database-url must be a PostgreSQL or SQLite URL "
        "(postgresql+psycopg://USER@HOST:5432/DATABASE or sqlite:///PATH), "
        "got 'mysql://tally@db/tally'",
    ),
    (
        "serve",
        [],
        {"TALLY_TOKEN_SECRET": "hunter2"},  # never quoted: its length only
        "TALLY_TOKEN_SECRET must be at least 32 characters (e.g. `openssl rand -base64 32`), got 7",
    ),
    (
        "serve",
        ["--token-secret-file", "/no/such/secret"],
        {},
        "--token-secret-file: cannot read '/no/such/secret': No such file or directory",
    ),
    (
        "keys list",
        [],
        {"TALLY_TOKEN_SECRET": "s" * 32, "TALLY_TOKEN_SECRET_FILE": "/etc/hostname"},
        "TALLY_TOKEN_SECRET and TALLY_TOKEN_SECRET_FILE are both set; set one",
    ),
]


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed command printed on stderr, after its `tally-server: `."""
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tally-server: "), done.stderr
    return lines[0].removeprefix("tally-server: ")


def run(subcommand: str, *flags: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`tally-server SUBCOMMAND FLAGS` in `cwd` with only `env` among TALLY_* settings;
    the database is a file in `cwd` unless `env` or `flags` say otherwise."""
    env.setdefault("TALLY_DATABASE_URL", sqlite_url(cwd / "tally.db"))
    return tally(*SUBCOMMANDS[subcommand], *flags, cwd=cwd, env=clean_env(**env), timeout=30)


@pytest.mark.parametrize(("subcommand", "flags", "env", "line"), BAD_SETTINGS)
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    tmp_path: Path, subcommand: str, flags: list[str], env: dict[str, str], line: str
) -> None:
    done = run(subcommand, *flags, cwd=tmp_path, **env)
    assert (done.returncode, one_line_error(done)) == (2, line)
    assert not (tmp_path / "tally.db").exists()  # nothing was written


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_a_database_that_refuses_connections_exits_1(tmp_path: Path, subcommand: str) -> None:
    url = "postgresql+psycopg://tally:hunter2@127.0.0.1:1/tally"
    done = run(subcommand, cwd=tmp_path, TALLY_DATABASE_URL=url)
    assert (done.returncode, one_line_error(done)) == (
        1,
        "cannot open the database postgresql+psycopg://tally:***@127.0.0.1:1/tally: "
        "Connection refused (is the database server running, and on that host and port?)",
    )


def test_a_missing_postgresql_database_exits_1_naming_it(
    tmp_path: Path, postgresql_url: str
) -> None:
    """`postgresql_url` only makes sure a PostgreSQL answers (the test skips otherwise)."""
    url = make_url(PG_ADMIN_URL).set(database="tally_no_such_database")
    shown = url.render_as_string(hide_password=True)
    done = run("serve", cwd=tmp_path, TALLY_DATABASE_URL=url.render_as_string(False))
    assert (done.returncode, one_line_error(done)) == (
        1,
        f'cannot open the database {shown}: database "tally_no_such_database" does not exist '
        "(create it first, or fix the name in the URL)",
    )


def test_an_sqlite_file_in_a_missing_folder_exits_1(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "no" / "such" / "tally.db")
    done = run("migrate", cwd=tmp_path, TALLY_DATABASE_URL=url)
    assert (done.returncode, one_line_error(done)) == (
        1,
        f"cannot open the database {url}: unable to open database file "
        f"(the folder {tmp_path / 'no' / 'such'} does not exist)",
    )


def test_an_address_not_of_this_machine_exits_1(tmp_path: Path) -> None:
    done = run("serve", "--listen", "192.0.2.1:50051", cwd=tmp_path)  # TEST-NET-1
    assert (done.returncode, one_line_error(done)) == (
        1,
        "cannot listen on 192.0.2.1:50051: Cannot assign requested address "
        "(is 192.0.2.1 an address of this machine?)",
    )
    assert not (tmp_path / "tally.db").exists()  # checked before the schema was made


@contextmanager
def serving_pool(cwd: Path, env: dict[str, str], *flags: str) -> Iterator[Served]:
    """`tally-server serve FLAGS` on a free port, SERVING; killed if a test left it running
    (its process group, so that a pool's workers go too)."""
    port = free_port()
    log = cwd / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--listen", f"127.0.0.1:{port}", *flags],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Served(process, port, log)
    try:
        wait_serving(served)
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def health_check(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="tally.v1.PointsService"), timeout=5
        )
    return int(reply.status)


PORT_IN_USE = (
    "cannot listen on 127.0.0.1:{0}: port {0} is in use (another server, or another "
    "tally-server pool, listens there; stop it or pick another port)"
)


@pytest.mark.parametrize("first", [[], ["--workers", "2"]], ids=["single", "pool"])
def test_a_second_server_on_a_port_in_use_exits_1(tmp_path: Path, first: list[str]) -> None:
    """Two pools once both bound one port (SO_REUSEPORT) and split its calls between two
    databases; now a second server, single or pool, is refused before it writes anything."""
    (tmp_path / "first").mkdir()
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(tmp_path / "first" / "tally.db"))
    with serving_pool(tmp_path / "first", env, *first) as served:
        for second in ([], ["--workers", "2"]):
            done = run("serve", "--listen", f"127.0.0.1:{served.port}", *second, cwd=tmp_path)
            assert (done.returncode, one_line_error(done)) == (1, PORT_IN_USE.format(served.port))
            assert not (tmp_path / "tally.db").exists()
        assert health_check(served.port) == health_pb2.HealthCheckResponse.SERVING


def poll_log(served: Served, pattern: str) -> re.Match[str]:
    """The first match of `pattern` in the server's log, once it appears."""
    deadline = time.monotonic() + POLL_SECONDS
    while (found := re.search(pattern, served.output(), re.M)) is None:
        if time.monotonic() > deadline or served.process.poll() is not None:
            pytest.fail(f"no line matching {pattern!r}:\n{served.output()}")
        time.sleep(0.05)
    return found


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds a socket listening on `port` (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                return True
    return False


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_killed_worker_is_restarted_and_the_pool_serves_on(tmp_path: Path) -> None:
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(tmp_path / "tally.db"))
    with serving_pool(tmp_path, env, "--workers", "2", "--grace-seconds", "5") as served:
        started = {
            int(i): int(p)
            for i, p in re.findall(r"worker (\d) started \(pid (\d+)\)", served.output())
        }
        assert sorted(started) == [0, 1], served.output()
        os.kill(started[0], signal.SIGKILL)
        poll_log(
            served,
            rf"WARNING tally: worker 0 \(pid {started[0]}\) died: killed by SIGKILL; "
            r"restarting it in 0\.5 s$",
        )
        again = int(poll_log(served, r"worker 0 started again \(pid (\d+)\)")[1])
        poll_log(served, rf"serving on .* \(port {served.port}, pid {again}\)$")
        assert listens_on(again, served.port)
        assert served.process.poll() is None  # the supervisor and the other worker went on

        key = re.findall(r"^tally_\S+$", served.output(), re.M)[0]
        for n in range(4):  # new connections, which the kernel spreads over the workers
            with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
                stub = points_pb2_grpc.PointsServiceStub(keyed(channel, key))
                if n == 0:
                    stub.CreateSystem(
                        points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp")),
                        timeout=10,
                    )
                award = points_pb2.AwardRequest(
                    system_key="xp", user=common_pb2.User(id="u"), amount=1, idempotency_key=f"k{n}"
                )
                assert stub.Award(award, timeout=10).balance.balance == n + 1

        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0, served.output()
    for pid in (again, started[1]):  # every worker stopped, none left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    ended = f"worker 0 (pid {again}) exit code 0, worker 1 (pid {started[1]}) exit code 0"
    assert f"INFO tally: stopped the pool (pid {served.process.pid}): {ended}\n" in served.output()


def wait_workers_serving(served: Served, count: int) -> list[int]:
    """The pids of the pool's workers, once each has said it serves."""
    deadline = time.monotonic() + POLL_SECONDS
    pattern = rf"serving on .* \(port {served.port}, pid (\d+)\)$"
    while len(serving := re.findall(pattern, served.output(), re.M)) < count:
        if time.monotonic() > deadline or served.process.poll() is not None:
            pytest.fail(f"not {count} workers serving:\n{served.output()}")
        time.sleep(0.05)
    return [int(pid) for pid in serving]


@pytest.mark.parametrize(
    "how", ["SIGTERM to the supervisor", "SIGINT to the process group (Ctrl-C)"]
)
def test_a_stopped_pool_says_so_once_and_names_its_workers_exits(tmp_path: Path, how: str) -> None:
    """Two lines from the supervisor, none from the workers: that it stops the pool, and
    that it stopped, with each worker's exit. Ctrl-C reaches the workers too, then the
    supervisor's SIGTERM: neither makes a worker speak."""
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(tmp_path / "tally.db"))
    with serving_pool(tmp_path, env, "--workers", "2", "--grace-seconds", "5") as served:
        wait_workers_serving(served, 2)
        pids = {
            int(i): int(p)
            for i, p in re.findall(r"worker (\d) started \(pid (\d+)\)", served.output())
        }
        before = len(served.output())
        if how.startswith("SIGTERM"):
            served.process.send_signal(signal.SIGTERM)
            name = "SIGTERM"
        else:
            os.killpg(served.process.pid, signal.SIGINT)
            name = "SIGINT"
        assert served.process.wait(timeout=30) == 0, served.output()
    said = [line.split(" ", 2)[2] for line in served.output()[before:].splitlines()]
    assert said == [
        f"INFO tally: {name} received; stopping the pool: each worker finishes its calls in "
        "flight within 5 s",
        f"INFO tally: stopped the pool (pid {served.process.pid}): worker 0 (pid {pids[0]}) "
        f"exit code 0, worker 1 (pid {pids[1]}) exit code 0",
    ]


def test_workers_share_the_token_secret_and_the_store_alone_signs_no_token(
    tmp_path: Path,
) -> None:
    """`--workers 2` with TALLY_TOKEN_SECRET_FILE: tokens made through new connections (the
    kernel spreads them over both workers) are accepted through others, so every worker
    signs under the same secret; a token signed with the secret a copy of the store holds
    is TOKEN_INVALID. Without the setting, `serve` says once that the store signs tokens."""
    db = tmp_path / "tally.db"
    secret = tmp_path / "token.secret"
    secret.write_text("x" * 43 + "=\n")
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(db), TALLY_TOKEN_SECRET_FILE=str(secret))
    with serving_pool(tmp_path, env, "--workers", "2", "--grace-seconds", "5") as served:
        assert "TALLY_TOKEN_SECRET" not in served.output()
        key = re.findall(r"^tally_\S+$", served.output(), re.M)[0]
        made = []
        for n in range(8):  # new connections: all on one worker 1 time in 128
            with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
                auth = auth_pb2_grpc.AuthServiceStub(keyed(channel, key))
                request = auth_pb2.CreateUserTokenRequest(user_id=f"u{n}")
                made.append(auth.CreateUserToken(request, timeout=10).token)
        for n, token in enumerate(made):
            for _ in range(2):
                with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
                    stub = points_pb2_grpc.PointsServiceStub(bearer(channel, token))
                    with pytest.raises(grpc.RpcError) as past_the_guard:
                        stub.GetBalance(balance_request(f"u{n}"), timeout=10)
                    assert error_of(past_the_guard.value)[1] == "SYSTEM_NOT_FOUND"
        with closing(sqlite3.connect(db)) as connection:
            key_id, stored = connection.execute("SELECT id, token_secret FROM api_keys").fetchone()
        expiry = datetime.now(UTC) + timedelta(hours=1)
        forged = tokens.sign(tokens.TokenClaims(key_id, "u0", expiry), bytes.fromhex(stored))
        with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
            stub = points_pb2_grpc.PointsServiceStub(bearer(channel, forged))
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetBalance(balance_request("u0"), timeout=10)
            assert error_of(refused.value)[1] == "TOKEN_INVALID"
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0, served.output()
    del env["TALLY_TOKEN_SECRET_FILE"]
    with serving_pool(tmp_path, env) as served:
        warned = poll_log(served, r"^.*WARNING tally: no TALLY_TOKEN_SECRET.*$")
        assert "whoever reads the store can make them" in warned[0]
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0, served.output()
    assert served.output().count("no TALLY_TOKEN_SECRET") == 1
