"""The `--workers` supervisor's restart rule, with real forked processes and a fake clock:
a dead worker starts again after its back-off, one that keeps dying is given up."""

from __future__ import annotations

import os
import signal
import time

import pytest

from server.workers import (
    RESTART_DELAYS,
    RESTART_LIMIT,
    RESTART_WINDOW,
    WorkerPool,
    accept_stop_signals,
    describe_exit,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dies_at_once() -> None:
    os._exit(3)


def wait_dead(pool: WorkerPool) -> None:
    """Until every worker has exited (the clock stands still meanwhile)."""
    deadline = time.monotonic() + 30
    while any(s.process is not None and s.process.is_alive() for s in pool.slots):
        assert time.monotonic() < deadline, "a worker did not exit"
        time.sleep(0.01)


def pids(pool: WorkerPool) -> list[int | None]:
    return [s.process.pid if s.process is not None else None for s in pool.slots]


def test_a_dead_worker_starts_again_after_its_back_off() -> None:
    clock = Clock()
    pool = WorkerPool(1, dies_at_once, clock)
    pool.start()
    first = pids(pool)[0]
    wait_dead(pool)
    assert pool.tend() is None
    assert pids(pool) == [None]  # waiting out the back-off
    clock.now += RESTART_DELAYS[0] - 0.01
    assert pool.tend() is None
    assert pids(pool) == [None]
    clock.now += 0.01
    assert pool.tend() is None
    assert pids(pool)[0] not in (None, first)
    wait_dead(pool)
    assert pool.tend() is None  # its second death: a longer back-off
    clock.now += RESTART_DELAYS[0]
    pool.tend()
    assert pids(pool) == [None]
    clock.now += RESTART_DELAYS[1] - RESTART_DELAYS[0]
    pool.tend()
    assert pids(pool)[0] is not None
    (stopped,) = pool.stop(grace_seconds=1)
    assert (stopped.index, stopped.exitcode) == (0, 3)  # it died with exit code 3
    assert str(stopped) == f"worker 0 (pid {stopped.pid}) exit code 3"


def test_a_worker_that_keeps_dying_stops_the_pool() -> None:
    clock = Clock()
    pool = WorkerPool(1, dies_at_once, clock)
    pool.start()
    for death in range(1, RESTART_LIMIT + 1):
        wait_dead(pool)
        failed = pool.tend()
        if death < RESTART_LIMIT:
            assert failed is None
            clock.now += RESTART_DELAYS[min(death, len(RESTART_DELAYS)) - 1]
            pool.tend()
    assert failed == (
        f"worker 0 died {RESTART_LIMIT} times within {RESTART_WINDOW:g} s (last: exit code 3); "
        "stopping the pool"
    )


def test_deaths_far_apart_are_restarted_every_time() -> None:
    clock = Clock()
    pool = WorkerPool(1, dies_at_once, clock)
    pool.start()
    for _ in range(RESTART_LIMIT * 2):
        wait_dead(pool)
        assert pool.tend() is None
        clock.now += RESTART_WINDOW + 1  # each death alone in its window: the first back-off
        pool.tend()
        assert pids(pool)[0] is not None
    wait_dead(pool)
    pool.tend()


def handles_sigterm_once_ready() -> None:
    time.sleep(0.5)  # starting: a SIGTERM now waits, blocked
    signal.signal(signal.SIGTERM, lambda *_: os._exit(7))
    accept_stop_signals()
    time.sleep(30)
    os._exit(1)


def test_a_sigterm_to_a_starting_worker_waits_for_its_own_handler() -> None:
    """Not the handler it inherits (here the default, which would kill it): the one it
    installs, which the pool's workers do first thing."""
    pool = WorkerPool(1, handles_sigterm_once_ready)
    pool.start()
    (pid,) = pids(pool)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_dead(pool)
    process = pool.slots[0].process
    assert process is not None
    assert process.exitcode == 7


@pytest.mark.parametrize(
    ("exitcode", "said"),
    [(0, "exit code 0"), (1, "exit code 1"), (-9, "killed by SIGKILL"), (-15, "killed by SIGTERM")],
)
def test_exits_are_described_as_people_say_them(exitcode: int, said: str) -> None:
    assert describe_exit(exitcode) == said
