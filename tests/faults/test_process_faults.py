"""The fault suite's short form, in the normal test command: each scenario with a few
hundred writes (tests/faults/README.md; the full form is `python -m tests.faults`)."""

from __future__ import annotations

from pathlib import Path

from tests.faults.__main__ import table
from tests.faults.processes import PrivateCluster
from tests.faults.scenarios import SHORT, Report, execute_on


def assert_clean(report: Report) -> None:
    """Every check passed, and the figures say the fault met a load in progress."""
    shown = table([report])
    assert report.ok, shown
    figures = report.figures
    assert figures is not None, shown
    assert (figures.duplicates, figures.lost, figures.unexplained) == (0, 0, 0), shown
    assert figures.acknowledged > 0, shown
    assert figures.found == figures.acknowledged, shown
    assert figures.acknowledged + figures.refused == figures.attempted, shown
    assert report.notes["in_flight_at_fault"] > 0, shown


def test_kill_9_of_the_server_loses_and_doubles_nothing(
    own_postgres_url: str, tmp_path: Path
) -> None:
    """Killed while a group commit's transaction is open (rows written, not committed)."""
    report = execute_on("kill-server", SHORT, tmp_path, own_postgres_url)
    assert_clean(report)
    assert report.notes["group_commit_open_at_kill"] is True, table([report])


def test_kill_9_of_one_worker_loses_and_doubles_nothing(
    own_postgres_url: str, tmp_path: Path
) -> None:
    report = execute_on("kill-worker", SHORT, tmp_path, own_postgres_url)
    assert_clean(report)
    assert report.notes["recovery"], table([report])


def test_postgresql_restarted_under_load(private_postgres: PrivateCluster, tmp_path: Path) -> None:
    def stop() -> None:
        private_postgres.stop("immediate")

    report = execute_on(
        "restart-postgres", SHORT, tmp_path, private_postgres.url, (stop, private_postgres.start)
    )
    assert_clean(report)
    assert report.notes["answers_while_down"], table([report])


def test_sigterm_under_load_finishes_calls_and_the_watch_resumes(
    own_postgres_url: str, tmp_path: Path
) -> None:
    report = execute_on("graceful-stop", SHORT, tmp_path, own_postgres_url)
    assert_clean(report)
    assert report.notes["watch streams ended"], table([report])


def test_kill_9_on_sqlite_leaves_a_file_that_opens_and_verifies(
    sqlite_file_url: str, tmp_path: Path
) -> None:
    report = execute_on("kill-sqlite", SHORT, tmp_path, sqlite_file_url)
    assert_clean(report)
    names = [c.name for c in report.checks]
    assert "the killed server's file passes integrity_check" in names, table([report])
