"""The process and database faults, each as one function from a size to a report.

Every scenario: a new database, `prepare` (schema and an admin key), the server started,
a points system with an ACTIVE event trigger, then the load (8 writers) and a WatchLedger
follower; once a share of the writes is acknowledged the fault is injected and recovered
from (the server or its database back); the writers' retries finish; then the store is
checked against itself, against what the clients were told, against the follower's
stream and by `tally-server verify`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from clients.tally_client import TallyClient
from tally.v1 import points_pb2
from tests.faults import checks
from tests.faults.checks import Check, Figures
from tests.faults.load import EVENT_POINTS, EVENT_TYPE, SYSTEM, Attempt, Follower, Load, Mix
from tests.faults.processes import (
    Server,
    fresh_database,
    prepare,
    private_cluster,
    private_postgres_missing,
)

# What a client may be answered in these scenarios: a write, a refusal (short balance, a
# deduction from a user not yet made), or UNAVAILABLE while the fault lasts.
ANSWERS = {"OK", "FAILED_PRECONDITION", "NOT_FOUND", "UNAVAILABLE"}
FAULT_AT = 0.35  # the fault lands once this share of the expected writes is acknowledged


@dataclass(frozen=True)
class Size:
    """How much load a scenario runs, and for how long at most."""

    calls: int
    time_limit: float  # seconds, for the whole scenario
    faults: int = 1  # injected one after another, spread over the load
    writers: int = 8
    users: int = 12
    down_seconds: float = 2.0  # at least, for a database held down

    def mix(self) -> Mix:
        return Mix(calls=self.calls, writers=self.writers, users=self.users)


SHORT = Size(calls=160, time_limit=120)  # in the normal test command (CI)
FULL = Size(calls=3000, time_limit=900, faults=3, down_seconds=5.0)  # python -m tests.faults


@dataclass
class Report:
    scenario: str
    title: str
    store: str
    calls: int = 0
    figures: Figures | None = None
    checks: list[Check] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and self.figures is not None
            and all(c.passed is not False for c in self.checks)
        )

    def passed(self) -> int:
        return sum(1 for c in self.checks if c.passed)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "store": self.store,
            "ok": self.ok,
            "calls": self.calls,
            "figures": asdict(self.figures) if self.figures else None,
            "checks": checks.as_json(self.checks),
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
            "error": self.error,
        }


@dataclass
class Run:
    """One scenario's moving parts, for its fault to act on."""

    report: Report
    url: str
    server: Server
    load: Load
    follower: Follower
    size: Size
    restart_postgres: Callable[[], None] | None = None
    stop_postgres: Callable[[], None] | None = None
    number: int = 1  # of the fault being injected
    marks: list[float] = field(default_factory=list)  # when each fault struck (monotonic)

    def mark(self) -> float:
        self.marks.append(time.monotonic())
        return self.marks[-1]

    def note(self, **values: Any) -> None:
        """Notes of each fault, listed in order when there are several."""
        for key, value in values.items():
            if self.size.faults == 1:
                self.report.notes[key] = value
            else:
                self.report.notes.setdefault(key, []).append(value)

    def add(self, *found: Check) -> None:
        if self.size.faults > 1:
            found = tuple(
                Check(f"fault {self.number}: {c.name}", c.passed, c.detail) for c in found
            )
        self.report.checks.extend(found)


Fault = Callable[[Run], None]
Postgres = tuple[Callable[[], None], Callable[[], None]]  # how to stop it, and start it


def configure(target: str, api_key: str) -> None:
    """The points system and its ACTIVE event trigger (RecordEvent awards EVENT_POINTS)."""
    with TallyClient(target, api_key=api_key) as client:
        client.create_system(SYSTEM, "fault suite")
        client.create_trigger(
            SYSTEM,
            points_pb2.Trigger(
                type=points_pb2.TRIGGER_TYPE_EVENT,
                event_type=EVENT_TYPE,
                points=EVENT_POINTS,
                status=points_pb2.TRIGGER_STATUS_ACTIVE,
            ),
        )


def run(
    scenario: str,
    title: str,
    store: str,
    url: str,
    workdir: Path,
    size: Size,
    fault: Fault,
    *,
    workers: int = 1,
    answers: set[str] = ANSWERS,
    postgres: Postgres | None = None,
) -> Report:
    started = time.monotonic()
    deadline = started + size.time_limit
    report = Report(scenario, title, store)
    api_key = prepare(url)
    server = Server(url, workdir, workers=workers, grace_seconds=10.0)
    load: Load | None = None
    follower: Follower | None = None
    try:
        server.start()
        configure(server.target, api_key)
        load = Load(server.target, api_key, size.mix(), deadline)
        follower = Follower(server.target, api_key)
        follower.start()
        load.start()
        this = Run(report, url, server, load, follower, size)
        if postgres is not None:
            this.stop_postgres, this.restart_postgres = postgres
        for number in range(1, size.faults + 1):
            share = FAULT_AT if size.faults == 1 else number / (size.faults + 1)
            if not load.wait_acked(int(load.planned_writes * share)):
                raise TimeoutError(f"the load did not reach fault {number} in time")
            load.wait_busy()
            this.number = number
            fault(this)
        load.join()
        unresolved = load.unresolved()
        report.calls = load.calls
        # The follower catches up with the last entry, then the server stops cleanly.
        last = max((e.sequence for e in checks.read(url).entries), default=0)
        caught_up = follower.wait_for(last, 30)
        follower.stop()
        if server.running():
            server.terminate()
        ledger = checks.read(url)
        figures, against = checks.against_clients(ledger, load.writes)
        report.figures = figures
        report.checks.extend([*checks.invariants(ledger), *against])
        report.checks.extend(answered(load.recorder.attempts, answers, this.marks))
        report.checks.extend(followed(follower, ledger, caught_up))
        report.checks.append(checks.verify(url))
        report.notes["unresolved"] = len(unresolved)
        report.notes["server starts (s to SERVING)"] = server.start_seconds
        report.notes["answers"] = dict(
            Counter(f"{a.code} {a.reason}".strip() for a in load.recorder.attempts)
        )
        report.notes["watch streams ended"] = dict(
            Counter(f"{e.code} {e.reason}".strip() for e in follower.ends)
        )
    except Exception as error:  # noqa: BLE001 - reported with the server's log
        report.error = f"{type(error).__name__}: {error}"
        report.notes["server log"] = str(server.log)
    finally:
        if follower is not None:
            follower.stop()
        server.stop()
        report.seconds = time.monotonic() - started
    return report


def answered(attempts: list[Attempt], allowed: set[str], marks: list[float]) -> list[Check]:
    """Every attempt was answered with a code the scenario allows (never INTERNAL or
    UNKNOWN, nor CANCELLED, which callers do not retry); an odd one is shown with its
    start and end relative to the fault."""

    def when(a: Attempt) -> str:
        mark = min(marks, key=lambda m: abs(a.start - m)) if marks else a.start
        return f"{a.start - mark:+.3f}..{a.end - mark:+.3f} s from the fault"

    odd = [f"{a.method}: {a.code} {a.reason} {when(a)}" for a in attempts if a.code not in allowed]
    codes = Counter(a.code for a in attempts)
    return [checks.check(f"every answer is one of {sorted(allowed)}", odd, f"{dict(codes)}")]


def followed(follower: Follower, ledger: checks.Ledger, caught_up: bool) -> list[Check]:
    """The WatchLedger follower saw every entry of the system once, in sequence order,
    across the fault, each stream ending with a status it resumes from."""
    stored = [e.sequence for e in ledger.entries if e.system_key == SYSTEM]
    seen = follower.sequences
    gaps = sorted(set(stored) - set(seen))
    repeats = [s for s, n in Counter(seen).items() if n > 1]
    disorder = [f"{a} then {b}" for a, b in pairwise(seen) if b <= a]
    ends = [f"{e.code} {e.reason} after {e.after_sequence}" for e in follower.ends]
    cut = [e for e in ends if not e.startswith("UNAVAILABLE")]
    problems = [f"missing {s}" for s in gaps[:5]] + [f"twice {s}" for s in repeats[:5]]
    problems += disorder[:5]
    if not caught_up:
        problems.append(f"stalled at {follower.last()} of {stored[-1] if stored else 0}")
    return [
        checks.check(
            "WatchLedger resumed after the last sequence: no gap, no duplicate",
            problems,
            f"{len(seen)} entries over {len(follower.ends) + 1} streams",
        ),
        checks.check("each WatchLedger stream ended UNAVAILABLE (resumable)", cut, "; ".join(ends)),
    ]


# -- the faults -----------------------------------------------------------------------


def _at_the_crash(this: Run, label: str) -> None:
    """The store as the killed server left it holds together already."""
    for found in checks.invariants(checks.read(this.url)):
        this.add(Check(f"{label}: {found.name}", found.passed, found.detail))


def wait_for_a_group_commit(url: str, seconds: float = 5.0) -> bool:
    """Until a write transaction is open on PostgreSQL (at most `seconds`)."""
    engine = create_engine(url)
    deadline = time.monotonic() + seconds
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
    )
    try:
        with engine.connect() as db:
            while time.monotonic() < deadline:
                if db.execute(query).scalar_one() > 0:
                    return True
                db.rollback()
        return False
    finally:
        engine.dispose()


def kill_server(this: Run) -> None:
    """kill -9 while calls are in flight; on PostgreSQL, while a group commit's
    transaction is open (it has written rows and not committed)."""
    if not this.url.startswith("sqlite"):
        this.note(group_commit_open_at_kill=wait_for_a_group_commit(this.url))
    this.note(in_flight_at_fault=this.load.in_flight(), acked_before_fault=this.load.acked())
    killed = this.mark()
    this.server.kill()
    _at_the_crash(this, "right after kill -9")
    this.server.start()
    this.note(down_seconds=round(time.monotonic() - killed, 2))


def kill_sqlite_server(this: Run) -> None:
    """kill -9, then the file it left opens, passes integrity_check and verifies."""
    this.note(in_flight_at_fault=this.load.in_flight(), acked_before_fault=this.load.acked())
    this.mark()
    this.server.kill()
    path = this.url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as db:
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
    this.add(Check("the killed server's file passes integrity_check", integrity == "ok", integrity))
    _at_the_crash(this, "the killed server's file")
    found = checks.verify(this.url)
    this.add(Check(f"the killed server's file: {found.name}", found.passed, found.detail))
    this.server.start()


def kill_worker(this: Run) -> None:
    """kill -9 of the `--workers` child with the most connections. Today the supervisor
    then stops the pool and exits, and the pool is started again here; a supervisor that
    restarts the child is left to do so. Either way the clients just retry."""
    server = this.server
    victim = server.busiest_worker()
    this.note(
        in_flight_at_fault=this.load.in_flight(),
        acked_before_fault=this.load.acked(),
        workers_before=server.workers_now(),
    )
    killed = this.mark()
    os.kill(victim, signal.SIGKILL)
    deadline = killed + server.grace_seconds + 30
    while time.monotonic() < deadline:
        if not server.running():
            this.note(recovery="the supervisor stopped the pool; the harness started it again")
            server.start()
            break
        now = server.workers_now()
        if victim not in now and len(now) == server.workers:
            this.note(recovery="the supervisor restarted the killed worker")
            server.wait_serving()
            break
        time.sleep(0.05)
    else:
        raise TimeoutError(f"after killing worker {victim}: neither a new worker nor an exit")
    this.note(down_seconds=round(time.monotonic() - killed, 2), workers_after=server.workers_now())


def restart_postgres(this: Run) -> None:
    """PostgreSQL stopped (immediate: a crash) under load, held down until the writers
    have been answered while it was down, then started; the server is left alone."""
    assert this.stop_postgres is not None
    assert this.restart_postgres is not None
    pid = this.server.pid
    this.note(in_flight_at_fault=this.load.in_flight(), acked_before_fault=this.load.acked())
    this.mark()
    this.stop_postgres()
    down = time.monotonic()  # from here on it is down
    recorder = this.load.recorder
    # Held down until the writers have had answers from the server meanwhile (each takes
    # the server's retry budget), a few seconds at least, and at most 20.
    while time.monotonic() - down < 20:
        during = [a for a in recorder.between(down, time.monotonic()) if a.start > down]
        held = time.monotonic() - down
        if held > this.size.down_seconds and len(during) >= 2 * this.size.writers:
            break
        time.sleep(0.05)
    up = time.monotonic()
    this.restart_postgres()
    # An AwardBatch call is OK whatever its items' fates: its items are judged instead.
    during = [
        a
        for a in recorder.between(down, up)
        if a.start > down and a.end < up and (a.method, a.code) != ("AwardBatch", "OK")
    ]
    wrong = [
        f"{a.method}: {a.code} {a.reason}"
        for a in during
        if (a.code, a.reason) != ("UNAVAILABLE", "STORE_UNAVAILABLE")
    ]
    this.add(
        checks.check(
            "while PostgreSQL is down every answer is UNAVAILABLE STORE_UNAVAILABLE",
            wrong if during else ["no answer came while it was down"],
            f"{len(during)} answers in {up - down:.1f} s",
        )
    )
    acked_at_restart = this.load.acked()
    recovered = this.load.wait_acked(acked_at_restart + 1)
    this.add(
        Check(
            "the server recovers by itself (same process) once PostgreSQL is back",
            recovered
            and this.server.running()
            and this.server.pid == pid
            and this.server.starts == 1,
            f"pid {pid}, server starts {this.server.starts}",
        )
    )
    this.note(
        down_seconds=round(up - down, 2),
        answers_while_down=dict(Counter(f"{a.code} {a.reason}" for a in during)),
    )


def graceful_stop(this: Run) -> None:
    """SIGTERM under load: calls in flight finish, the rest are refused UNAVAILABLE, the
    follower's stream ends UNAVAILABLE; after a restart everything resumes."""
    recorder = this.load.recorder
    this.note(in_flight_at_fault=this.load.in_flight(), acked_before_fault=this.load.acked())
    signalled = this.mark()
    code = this.server.terminate()
    took = time.monotonic() - signalled
    this.add(
        Check(
            "SIGTERM: the server exits 0 within the grace period",
            code == 0 and took <= this.server.grace_seconds + 5,
            f"exit {code} after {took:.1f} s",
        )
    )
    spanning = [a for a in recorder.between(signalled, signalled) if a.start < signalled]
    finished = [a for a in spanning if a.code == "OK"]
    cut = [
        f"{a.method}: {a.code} {a.reason}"
        for a in spanning
        if a.code not in ("OK", "UNAVAILABLE", "FAILED_PRECONDITION", "NOT_FOUND")
    ]
    this.add(
        checks.check(
            "calls in flight at SIGTERM finish (none cut with UNKNOWN or CANCELLED)",
            cut if finished else [*cut, "no call was in flight at SIGTERM"],
            f"{len(finished)} of {len(spanning)} in flight finished OK",
        )
    )
    time.sleep(0.5)
    this.server.start()
    this.note(down_seconds=round(time.monotonic() - signalled, 2))


# -- the catalogue --------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    store: str  # postgresql (a fresh database) | private-postgresql | sqlite
    fault: Fault
    workers: int = 1


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("kill-server", "kill -9 of the server", "postgresql", kill_server),
        Scenario(
            "kill-worker", "kill -9 of one --workers child", "postgresql", kill_worker, workers=2
        ),
        Scenario(
            "restart-postgres", "PostgreSQL restarted", "private-postgresql", restart_postgres
        ),
        Scenario("graceful-stop", "SIGTERM under load", "postgresql", graceful_stop),
        Scenario("kill-sqlite", "kill -9 of the server on SQLite", "sqlite", kill_sqlite_server),
    )
}


@contextmanager
def database(store: str, workdir: Path) -> Iterator[tuple[str, Postgres | None]]:
    """The scenario's database URL, and for a private cluster how to stop and start it.

    PostgreSQL is a private cluster made for the scenario where one can be made (a kill
    leaves connections behind, and the shared cluster's are counted), else a fresh
    database on the shared one; a scenario that restarts PostgreSQL needs its own."""
    if store == "sqlite":
        yield f"sqlite:///{workdir / 'tally.db'}", None
    elif store == "postgresql" and private_postgres_missing() is not None:
        with fresh_database() as url:
            yield url, None
    else:
        with private_cluster() as cluster:
            yield cluster.url, (lambda: cluster.stop("immediate"), cluster.start)


def execute(name: str, size: Size, workdir: Path | None = None) -> Report:
    """Scenario `name` on a database made for it (and removed after). Without `workdir`,
    a temporary folder holds the servers' logs (and an SQLite file): removed when the
    scenario passed, kept and named in the notes when it did not."""
    scenario = SCENARIOS[name]
    folder = workdir or Path(tempfile.mkdtemp(prefix=f"tally-faults-{name}-"))
    with database(scenario.store, folder) as (url, postgres):
        report = execute_on(name, size, folder, url, postgres)
    if workdir is None:
        if report.ok:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            report.notes["kept"] = str(folder)
    return report


def execute_on(
    name: str, size: Size, workdir: Path, url: str, postgres: Postgres | None = None
) -> Report:
    """Scenario `name` on the database at `url` (`postgres`: how to stop and start it)."""
    scenario = SCENARIOS[name]
    return run(
        scenario.name,
        scenario.title,
        "SQLite" if url.startswith("sqlite") else "PostgreSQL",
        url,
        workdir,
        size,
        scenario.fault,
        workers=scenario.workers,
        postgres=postgres,
    )
