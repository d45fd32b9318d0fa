"""CPU and memory of the server and of PostgreSQL, read from /proc (same host, as root).

Why /proc: it needs nothing installed, covers every worker process of the server, and
counts PostgreSQL backends that exit during a run (through the postmaster's cutime).

Database CPU is counted per node: the process tree of each node's postmaster (its
backends and background workers, its reaped children), so that a Citus coordinator and
each worker are told apart, and so that another PostgreSQL on the machine (a Citus
cluster next to the plain PostgreSQL, say) is not counted as the bench's database.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (the server supervisor and its workers)."""
    tree_of = parents()
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, ppid in tree_of.items() if ppid in frontier]
        tree += children
        frontier = children
    return tree


def cpu_seconds(pids: list[int], *, reaped_children: bool = False) -> float:
    """utime + stime of `pids` (and of their reaped children, if asked)."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12])
        if reaped_children:
            total += int(fields[13]) + int(fields[14])
    return total / TICKS


def postgres_pids() -> tuple[int | None, list[int]]:
    """The postmaster and every process named postgres (backends, background workers)."""
    pids = [pid for pid in _pids() if _comm(pid) == "postgres"]
    postmaster = None
    for pid in pids:
        fields = _stat(pid)
        if fields is not None and int(fields[1]) not in pids:
            postmaster = pid
    return postmaster, pids


def postgres_cpu() -> float:
    """CPU of all PostgreSQL processes, including backends that have already exited."""
    postmaster, pids = postgres_pids()
    total = cpu_seconds([p for p in pids if p != postmaster])
    if postmaster is not None:
        total += cpu_seconds([postmaster], reaped_children=True)
    return total


def parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields is not None else None


def parents() -> dict[int, int]:
    """Every process's parent pid, read once."""
    found: dict[int, int] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None:
            found[pid] = int(fields[1])
    return found


def backend_database(pid: int) -> str | None:
    """The database a client backend serves, from its title (`postgres: USER DB HOST(PORT)
    STATE`); None for background processes (checkpointer, Citus's daemons)."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return None
    return title_database(title)


def title_database(title: str) -> str | None:
    """The database named by a backend's process title, or None (see backend_database)."""
    words = title.split()
    if len(words) > 1 and words[1].endswith(":"):  # a cluster name: `postgres: 15/main: ...`
        del words[1]
    if len(words) < 4 or words[0] != "postgres:":
        return None
    return words[2] if "(" in words[3] or words[3] == "[local]" else None


def postmasters_cpu(
    postmasters: dict[str, int], database: str | None = None
) -> tuple[dict[str, float], dict[str, float], dict[str, dict[int, float]]]:
    """CPU of each PostgreSQL node: its postmaster (with the children it reaped: backends
    that exited) and every live child (backends, background workers); of that, the
    reaped children's; and, when `database` is named, each live backend of another
    database with its own CPU (others sharing the node: the caller takes their CPU out)."""
    tree = parents()
    totals: dict[str, float] = {}
    reaped: dict[str, float] = {}
    foreign: dict[str, dict[int, float]] = {}
    for name, postmaster in postmasters.items():
        children = [pid for pid, ppid in tree.items() if ppid == postmaster]
        totals[name] = cpu_seconds([postmaster], reaped_children=True) + cpu_seconds(children)
        reaped[name] = totals[name] - cpu_seconds([postmaster]) - cpu_seconds(children)
        foreign[name] = {}
        if database is None:
            continue
        for pid in children:
            served = backend_database(pid)
            if served is not None and served != database:
                foreign[name][pid] = cpu_seconds([pid])
    return totals, reaped, foreign


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError):
            continue
    return total


@dataclass(frozen=True)
class Snapshot:
    at: float
    server_cpu: float
    db_cpu: float
    nodes: dict[str, float] = field(default_factory=dict)  # CPU of each database node
    # live backends of other databases on each node: pid -> CPU
    foreign: dict[str, dict[int, float]] = field(default_factory=dict)
    reaped: dict[str, float] = field(default_factory=dict)  # exited children, each node


@dataclass(frozen=True)
class Usage:
    """What the server and the database spent between two snapshots (`db_cpu` is the sum
    of `nodes`, when the meter knows its nodes). `foreign` is what backends of other
    databases spent on each node, taken out of `nodes` (as far as they were alive at the
    end: one that exited in between is counted as the bench's). `reaped` is the part of
    `nodes` spent by backends that exited in the window (short-lived connections, ours or
    not)."""

    seconds: float
    server_cpu: float
    db_cpu: float
    nodes: dict[str, float] = field(default_factory=dict)
    foreign: dict[str, float] = field(default_factory=dict)
    reaped: dict[str, float] = field(default_factory=dict)

    @property
    def server_cores(self) -> float:
        return self.server_cpu / self.seconds if self.seconds else 0.0

    @property
    def db_cores(self) -> float:
        return self.db_cpu / self.seconds if self.seconds else 0.0


class Meter:
    """Snapshots of the server's process tree and of PostgreSQL, and a memory sampler.

    `db_nodes` names each database node's postmaster pid (`Database.postmasters()`);
    without it, every process named postgres on the machine counts as the database. With
    `database`, live backends of other databases on those nodes are not counted (a Citus
    cluster shared with other people's tests)."""

    def __init__(
        self,
        server_pid: int,
        db_nodes: dict[str, int] | None = None,
        database: str | None = None,
    ) -> None:
        self.server_pid = server_pid
        self.db_nodes = dict(db_nodes or {})
        self.database = database
        self.tree = process_tree(server_pid)
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> Snapshot:
        at, server = time.perf_counter(), cpu_seconds(self.tree)
        if not self.db_nodes:
            return Snapshot(at, server, postgres_cpu())
        nodes, reaped, foreign = postmasters_cpu(self.db_nodes, self.database)
        return Snapshot(at, server, sum(nodes.values()), nodes, foreign, reaped)

    @staticmethod
    def usage(start: Snapshot, end: Snapshot) -> Usage:
        foreign = {
            name: sum(cpu - start.foreign.get(name, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in end.foreign.items()
        }
        nodes = {
            name: end.nodes[name] - start.nodes.get(name, 0.0) - foreign.get(name, 0.0)
            for name in end.nodes
        }
        return Usage(
            end.at - start.at,
            end.server_cpu - start.server_cpu,
            sum(nodes.values()) if nodes else end.db_cpu - start.db_cpu,
            nodes,
            foreign,
            {name: end.reaped[name] - start.reaped.get(name, 0.0) for name in end.reaped},
        )

    def rss(self) -> int:
        return rss_bytes(self.tree)

    def start_sampling(self, interval: float = 0.05) -> int:
        """Sample the server's resident memory until stop_sampling; returns it now."""
        self._peak = now = self.rss()
        self._stop.clear()

        def sample() -> None:
            while not self._stop.wait(interval):
                self._peak = max(self._peak, self.rss())

        self._thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return now

    def stop_sampling(self) -> int:
        """Stop sampling; returns the peak resident memory seen."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return max(self._peak, self.rss())
