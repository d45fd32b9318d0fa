"""`serve --workers N`: N server processes on one port (SO_REUSEPORT), kept running.

A worker that dies (a crash, the OOM killer, `kill -9`) is started again after a back-off,
and the others serve meanwhile. A worker that keeps dying (RESTART_LIMIT deaths within
RESTART_WINDOW seconds: it cannot start, or falls over at once) is given up, with the pool:
restarting it forever would hide the fault. No gRPC object exists here: the workers are
forked from a process that has none.

A worker is forked with SIGTERM and SIGINT blocked: until it has handlers of its own it
would run the supervisor's, which it inherits. It installs its own, then calls
`accept_stop_signals()`, and one sent meanwhile is handled then.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess

log = logging.getLogger("tally")

# Back-off before a dead worker starts again, by its deaths within RESTART_WINDOW.
RESTART_DELAYS = (0.5, 1.0, 2.0, 4.0)
RESTART_LIMIT = 5
RESTART_WINDOW = 30.0
# After the grace period, how long stopping workers get before SIGKILL.
KILL_AFTER_GRACE = 5.0
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


def accept_stop_signals() -> None:
    """Lets SIGTERM and SIGINT through to this process's handlers (a worker is forked
    with them blocked); one that came while they were blocked is handled now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def describe_exit(exitcode: int | None) -> str:
    """A process's exit as people say it: "exit code 1", "killed by SIGKILL"."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


@dataclass(frozen=True)
class Stopped:
    """How a worker ended when the pool stopped."""

    index: int
    pid: int | None
    exitcode: int | None

    def __str__(self) -> str:
        return f"worker {self.index} (pid {self.pid}) {describe_exit(self.exitcode)}"


@dataclass
class Slot:
    """One of the pool's N places: its current process, and when its recent ones died."""

    index: int
    process: BaseProcess | None = None
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


class WorkerPool:
    """N processes running `target`, each restarted with back-off when it dies."""

    def __init__(
        self,
        count: int,
        target: Callable[[], object],
        clock: Callable[[], float] = time.monotonic,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.target = target
        self.clock = clock
        # Told the pid of every worker that has ended (its metrics files are then merged).
        self.on_exit = on_exit
        self.context = multiprocessing.get_context("fork")
        self.slots = [Slot(index) for index in range(count)]

    def start(self) -> None:
        for slot in self.slots:
            self._start(slot)

    def tend(self) -> str | None:
        """Notes workers that died and starts those whose back-off is over. Returns why
        the pool must stop when one keeps dying, else None."""
        now = self.clock()
        for slot in self.slots:
            process = slot.process
            if process is not None and not process.is_alive():
                process.join()
                self._exited(process)
                slot.process = None
                while slot.deaths and now - slot.deaths[0] > RESTART_WINDOW:
                    slot.deaths.popleft()
                slot.deaths.append(now)
                how = describe_exit(process.exitcode)
                if len(slot.deaths) >= RESTART_LIMIT:
                    return (
                        f"worker {slot.index} died {len(slot.deaths)} times within "
                        f"{RESTART_WINDOW:g} s (last: {how}); stopping the pool"
                    )
                delay = RESTART_DELAYS[min(len(slot.deaths), len(RESTART_DELAYS)) - 1]
                slot.restart_at = now + delay
                log.warning(
                    "worker %d (pid %s) died: %s; restarting it in %g s",
                    slot.index,
                    process.pid,
                    how,
                    delay,
                )
            if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                self._start(slot)
        return None

    def running(self) -> list[tuple[int, int]]:
        """(slot index, pid) of each worker started and not yet seen to end."""
        return [
            (slot.index, process.pid)
            for slot in self.slots
            if (process := slot.process) is not None and process.pid is not None
        ]

    def stop(self, grace_seconds: float) -> list[Stopped]:
        """SIGTERM to every worker, which finishes its calls in flight; SIGKILL to one
        still running well after the grace period. How each running worker ended."""
        running = [(s.index, s.process) for s in self.slots if s.process is not None]
        for _, process in running:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = self.clock() + grace_seconds + KILL_AFTER_GRACE
        for _, process in running:
            process.join(max(0.0, deadline - self.clock()))
            if process.is_alive():
                log.error(
                    "worker pid %s still running after the grace period; killing it", process.pid
                )
                process.kill()
                process.join()
            self._exited(process)
        return [Stopped(index, process.pid, process.exitcode) for index, process in running]

    def _exited(self, process: BaseProcess) -> None:
        if self.on_exit is not None and process.pid is not None:
            self.on_exit(process.pid)

    def _start(self, slot: Slot) -> None:
        again = slot.restart_at is not None
        process = self.context.Process(target=self.target, name=f"tally-worker-{slot.index}")
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        slot.process, slot.restart_at = process, None
        log.info(
            "worker %d %s (pid %s)",
            slot.index,
            "started again" if again else "started",
            process.pid,
        )
