"""CPU and memory of the server and of PostgreSQL, read from /proc (same host, as root).

Why /proc: it needs nothing installed, covers every worker process of the server, and
counts PostgreSQL backends that exit during a run (through the postmaster's cutime).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
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
    parents: dict[int, int] = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None:
            parents[pid] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
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


@dataclass(frozen=True)
class Usage:
    """What the server and the database spent between two snapshots."""

    seconds: float
    server_cpu: float
    db_cpu: float

    @property
    def server_cores(self) -> float:
        return self.server_cpu / self.seconds if self.seconds else 0.0

    @property
    def db_cores(self) -> float:
        return self.db_cpu / self.seconds if self.seconds else 0.0


class Meter:
    """Snapshots of the server's process tree and of PostgreSQL, and a memory sampler."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.tree = process_tree(server_pid)
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> Snapshot:
        return Snapshot(time.perf_counter(), cpu_seconds(self.tree), postgres_cpu())

    @staticmethod
    def usage(start: Snapshot, end: Snapshot) -> Usage:
        return Usage(
            end.at - start.at, end.server_cpu - start.server_cpu, end.db_cpu - start.db_cpu
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
