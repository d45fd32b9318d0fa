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


@dataclass(frozen=True)
class NodeSample:
    """One PostgreSQL node at one moment: the CPU of its postmaster tree (`total`, reaped
    children included), of the children it has reaped (`reaped`), of each live child
    (`children`), and which live children are backends of another database (`foreign`)."""

    total: float
    reaped: float
    children: dict[int, float]
    foreign: frozenset[int] = frozenset()


@dataclass(frozen=True)
class NodeUsage:
    """One node between two samples: `cpu` the bench's (the tree less other databases'
    live backends), `foreign` what those spent, `exited` the part of `cpu` spent in the
    window by children that ended in it."""

    cpu: float
    foreign: float
    exited: float


def node_usage(start: NodeSample, end: NodeSample) -> NodeUsage:
    """A child reaped in the window brings its whole life's CPU into `reaped`; what it
    had spent by the first sample is taken out again, so `exited` is the window's."""
    foreign = sum(end.children[pid] - start.children.get(pid, 0.0) for pid in end.foreign)
    gone_before = sum(cpu for pid, cpu in start.children.items() if pid not in end.children)
    exited = max(0.0, end.reaped - start.reaped - gone_before)
    return NodeUsage(end.total - start.total - foreign, foreign, exited)


def sample_nodes(postmasters: dict[str, int], database: str | None = None) -> dict[str, NodeSample]:
    """Each PostgreSQL node's sample; with `database`, live backends of other databases
    are marked foreign (others sharing the node: their CPU is taken out)."""
    tree = parents()
    samples: dict[str, NodeSample] = {}
    for name, postmaster in postmasters.items():
        children = {pid: cpu_seconds([pid]) for pid, ppid in tree.items() if ppid == postmaster}
        own = cpu_seconds([postmaster])
        total = cpu_seconds([postmaster], reaped_children=True) + sum(children.values())
        foreign = frozenset(
            pid
            for pid in children
            if database is not None and backend_database(pid) not in (None, database)
        )
        samples[name] = NodeSample(total, total - own - sum(children.values()), children, foreign)
    return samples


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
    nodes: dict[str, NodeSample] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """What the server and the database spent between two snapshots (`db_cpu` is the sum
    of `nodes`, when the meter knows its nodes). `foreign` is what backends of other
    databases spent on each node, taken out of `nodes` (as far as they were alive at the
    end: one that exited in between is counted as the bench's). `reaped` is the part of
    `nodes` spent in the window by backends that exited in it (short-lived connections,
    ours or not; see node_usage)."""

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
        nodes = sample_nodes(self.db_nodes, self.database)
        return Snapshot(at, server, sum(n.total for n in nodes.values()), nodes)

    @staticmethod
    def usage(start: Snapshot, end: Snapshot) -> Usage:
        nodes = {
            name: node_usage(start.nodes[name], sample)
            for name, sample in end.nodes.items()
            if name in start.nodes
        }
        return Usage(
            end.at - start.at,
            end.server_cpu - start.server_cpu,
            sum(n.cpu for n in nodes.values()) if nodes else end.db_cpu - start.db_cpu,
            {name: n.cpu for name, n in nodes.items()},
            {name: n.foreign for name, n in nodes.items()},
            {name: n.exited for name, n in nodes.items()},
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
