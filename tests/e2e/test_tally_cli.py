"""The `tally` command against the real server: help, verbs, errors in words, import, export.

Most verbs run in-process (main(argv) with captured output); the import that is killed
half-way runs as a real process, killed with SIGKILL.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from clients.cli.main import build_parser, main
from clients.tally_client import TallyClient
from server.app import App
from server.domain import validation
from server.store.database import SqlStore

ROOT = Path(__file__).resolve().parents[2]

VERBS = [
    "systems",
    "systems list",
    "systems get",
    "systems create",
    "systems update",
    "triggers",
    "triggers list",
    "triggers create",
    "triggers activate",
    "triggers archive",
    "levels",
    "levels list",
    "levels create",
    "levels delete",
    "levels user",
    "levels summary",
    "boosts",
    "boosts list",
    "boosts create",
    "boosts archive",
    "boosts multiplier",
    "award",
    "deduct",
    "reverse",
    "balance",
    "history",
    "event",
    "token",
    "watch",
    "import",
    "export",
    "explain",
]


def test_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for verb in {v.split()[0] for v in VERBS}:
        assert f"    {verb} " in text, verb
    assert "TALLY_TARGET" in text
    assert "TALLY_API_KEY" in text


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*verb.split(), "--help"])
    assert done.value.code == 0
    assert f"usage: tally {verb}" in capsys.readouterr().out


def test_the_installed_command_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clients.cli", "import", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "nothing twice" in done.stdout
    assert build_parser().prog == "tally"


def tally(server: App, key: str, *argv: str) -> list[str]:
    return ["--target", f"127.0.0.1:{server.port}", "--api-key", key, *argv]


def test_verbs_change_and_show_points(
    server: App, admin_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(tally(server, admin_key, "systems", "create", "xp", "--name", "XP")) == 0
    assert main(tally(server, admin_key, "levels", "create", "xp", "gold", "--points", "40")) == 0
    assert main(tally(server, admin_key, "award", "xp", "alice", "50", "--reason", "hi")) == 0
    assert "level (none) -> gold" in capsys.readouterr().out
    assert main(tally(server, admin_key, "--json", "deduct", "xp", "alice", "20")) == 0
    deducted = json.loads(capsys.readouterr().out)
    assert deducted["balance"]["balance"] == "30"
    assert main(tally(server, admin_key, "--json", "balance", "xp", "alice")) == 0
    balance = json.loads(capsys.readouterr().out)
    assert balance["balance"]["balance"] == "30"
    assert [e["amount"] for e in balance["recent"]] == ["-20", "50"]
    assert main(tally(server, admin_key, "--json", "history", "xp", "alice")) == 0
    history = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["amount"] for e in history] == ["50", "-20"]
    assert main(tally(server, admin_key, "reverse", history[1]["id"], "--user", "bob")) == 1
    assert "NOT_FOUND ENTRY_NOT_FOUND" in capsys.readouterr().err
    assert main(tally(server, admin_key, "reverse", history[1]["id"], "--user", "alice")) == 0
    assert "balance 50" in capsys.readouterr().out


def test_lists_show_every_page(
    server: App, admin_key: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validation, "CONFIGURATION_PAGE_SIZE", 2)  # five items: three pages
    assert main(tally(server, admin_key, "systems", "create", "xp")) == 0
    for points in (40, 10, 30, 50, 20):
        argv = tally(server, admin_key, "levels", "create", "xp", f"l{points}", "--points")
        assert main([*argv, str(points)]) == 0
        argv = tally(server, admin_key, "triggers", "create", "xp", "--type", "event")
        assert main([*argv, "--points", str(points), "--event-type", "e"]) == 0
    capsys.readouterr()
    assert main(tally(server, admin_key, "--json", "levels", "list", "xp")) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [level["key"] for level in listed] == ["l10", "l20", "l30", "l40", "l50"]
    assert main(tally(server, admin_key, "--json", "triggers", "list", "xp")) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [t["points"] for t in listed] == ["40", "10", "30", "50", "20"]  # int64: strings


def test_errors_are_in_words(
    server: App, admin_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(tally(server, admin_key, "systems", "create", "xp"))
    capsys.readouterr()
    assert main(tally(server, admin_key, "deduct", "xp", "bob", "5")) == 1
    assert "NOT_FOUND USER_NOT_FOUND" in capsys.readouterr().err
    main(tally(server, admin_key, "award", "xp", "bob", "5"))
    assert main(tally(server, admin_key, "deduct", "xp", "bob", "8")) == 1
    err = capsys.readouterr().err
    assert "INSUFFICIENT_POINTS" in err
    assert "available: 5" in err
    assert "requested: 8" in err
    assert main(tally(server, admin_key, "award", "xp", " bob", "0")) == 1
    err = capsys.readouterr().err
    assert "field user.id:" in err
    assert "field amount:" in err
    assert "grpc-status-details-bin" not in err


def test_a_refused_connection_says_where(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--target", "127.0.0.1:1", "--timeout", "1", "balance", "xp", "a"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach Tally at 127.0.0.1:1" in err
    assert "TALLY_TARGET" in err


def write_awards(path: Path, rows: list[tuple[str, str]], header: str = "user_id,amount") -> None:
    with path.open("w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(header.split(","))
        writer.writerows(rows)


def test_import_reports_rejected_rows_by_line_and_column(
    server: App, admin_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(tally(server, admin_key, "systems", "create", "xp"))
    capsys.readouterr()
    source = tmp_path / "awards.csv"
    rows = [("alice", "5"), ("bob", "x"), ("", "3"), ("carol", "2000000000"), ("dave", "7")]
    rows += [("a" * 300, "1")]  # the server refuses this one (user id over 255 chars)
    write_awards(source, rows)
    rejects = tmp_path / "rejects.csv"
    argv = tally(server, admin_key, "--json", "import", str(source), "--system", "xp")
    assert main([*argv, "--rejects", str(rejects)]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary, rejected = lines[0], lines[1:]
    assert (summary["imported"], summary["rejected"]) == (2, 4)
    assert [(r["line"], r["column"]) for r in rejected] == [
        (3, "amount"),
        (4, "user_id"),
        (5, "amount"),
        (7, "user_id"),
    ]
    assert len(list(csv.DictReader(rejects.open()))) == 4
    # Run again: the good rows replay, nothing is awarded twice.
    assert main(argv) == 1
    again = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (again["imported"], again["already_imported"]) == (0, 2)


def test_watch_prints_one_json_line_per_entry(
    server: App, admin_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(tally(server, admin_key, "systems", "create", "xp"))
    for user, amount in (("alice", "5"), ("bob", "7")):
        main(tally(server, admin_key, "award", "xp", user, amount))
    capsys.readouterr()
    assert main(tally(server, admin_key, "watch", "--system", "xp", "--no-follow")) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["userId"], e["amount"]) for e in entries] == [("alice", "5"), ("bob", "7")]
    after = entries[0]["sequence"]
    argv = ["watch", "--system", "xp", "--no-follow", "--after-sequence", after]
    assert main(tally(server, admin_key, *argv)) == 0
    assert [json.loads(line)["userId"] for line in capsys.readouterr().out.splitlines()] == ["bob"]


def test_import_into_a_missing_system_fails_once(
    server: App, admin_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "awards.csv"
    write_awards(source, [("alice", "5")])
    assert main(tally(server, admin_key, "import", str(source), "--system", "nope")) == 1
    assert "SYSTEM_NOT_FOUND" in capsys.readouterr().err


def test_import_refuses_an_unknown_column(
    server: App, admin_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "awards.csv"
    write_awards(source, [("alice", "5")], header="user_id,ammount")
    assert main(tally(server, admin_key, "import", str(source), "--system", "xp")) == 2
    assert "missing column(s) amount" in capsys.readouterr().err


def test_opening_balances_skip_boosts_and_zeros(
    server: App, admin_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(tally(server, admin_key, "systems", "create", "xp"))
    main(tally(server, admin_key, "boosts", "create", "xp", "--multiplier", "2"))
    capsys.readouterr()
    source = tmp_path / "balances.csv"
    write_awards(source, [("alice", "120"), ("bob", "0")], header="user_id,balance")
    argv = tally(server, admin_key, "--json", "import", str(source), "--system", "xp")
    assert main([*argv, "--mode", "balances"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["imported"], summary["skipped"]) == (1, 1)
    with TallyClient(f"127.0.0.1:{server.port}", api_key=admin_key) as client:
        got = client.get_balance("xp", "alice")
    assert got.balance.balance == 120
    assert got.recent[0].reason == "opening balance"


def awarded(store: SqlStore) -> tuple[int, int, int]:
    """(entries, distinct users, points) in system `bulk`, read from the store itself."""
    query = text(
        "select count(*), count(distinct user_id), coalesce(sum(amount), 0)"
        " from ledger_entries where system_key = 'bulk'"
    )
    with store.engine.connect() as connection:
        entries, users, points = connection.execute(query).one()
    return int(entries), int(users), int(points)


def test_an_import_killed_half_way_and_run_again_awards_each_row_once(
    server: App, admin_key: str, tmp_path: Path, store: SqlStore
) -> None:
    rows = 10_000
    source = tmp_path / "bulk.csv"
    write_awards(source, [(f"user-{i:05d}", "1") for i in range(rows)])
    target = f"127.0.0.1:{server.port}"
    command = [sys.executable, "-m", "clients.cli", "--target", target, "--json"]
    command += ["import", str(source), "--system", "bulk", "--no-progress"]
    env = {**os.environ, "TALLY_API_KEY": admin_key}
    with TallyClient(target, api_key=admin_key) as client:
        client.create_system("bulk")
        first = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while awarded(store)[0] < rows // 3 and first.poll() is None:
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        at_kill = awarded(store)[0]
        assert at_kill < rows, "the import finished before it could be killed"

        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout.decode().splitlines()[0])
        assert summary["imported"] + summary["already_imported"] == rows
        assert summary["already_imported"] >= at_kill
    # One entry of 1 point for each user: nobody was awarded twice, nobody missed.
    assert awarded(store) == (rows, rows, rows)


def test_the_shared_flags_work_after_the_verb_too(
    server: App, admin_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{server.port}"
    assert main(["systems", "create", "xp", "--target", target, "--api-key", admin_key]) == 0
    assert main(["award", "xp", "alice", "5", "--target", target, "--api-key", admin_key]) == 0
    capsys.readouterr()
    assert (
        main(["balance", "xp", "alice", "--json", "--target", target, "--api-key", admin_key]) == 0
    )
    assert json.loads(capsys.readouterr().out)["balance"]["balance"] == "5"
    # Before the verb and after it: the one after is used.
    argv = ["--target", "127.0.0.1:1", "systems", "list", "--target", target, "--json"]
    assert main([*argv, "--api-key", admin_key]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["key"] == "xp"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("tally ")


def test_a_user_token_reads_its_users_balance(
    server: App, admin_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(tally(server, admin_key, "systems", "create", "xp"))
    main(tally(server, admin_key, "award", "xp", "alice", "7"))
    capsys.readouterr()
    assert main(tally(server, admin_key, "--json", "token", "alice")) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    target = ["--target", f"127.0.0.1:{server.port}"]
    assert main([*target, "--json", "--user-token", token, "balance", "xp", "alice"]) == 0
    assert json.loads(capsys.readouterr().out)["balance"]["balance"] == "7"
    assert main([*target, "--user-token", token, "balance", "xp", "bob"]) == 1
    assert "SCOPE_INSUFFICIENT" in capsys.readouterr().err


def test_without_credentials_the_error_names_the_flags(
    server: App, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TALLY_API_KEY", raising=False)
    monkeypatch.delenv("TALLY_USER_TOKEN", raising=False)
    assert main(["--target", f"127.0.0.1:{server.port}", "systems", "list"]) == 1
    err = capsys.readouterr().err
    assert "API_KEY_MISSING" in err
    assert "--api-key" in err
    assert "TALLY_USER_TOKEN" in err


def test_tables_never_cut_an_id(
    server: App, admin_key: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    main(tally(server, admin_key, "systems", "create", "xp"))
    reason = "a reason long enough to wrap across several lines of an eighty column table"
    main(tally(server, admin_key, "award", "xp", "alice", "5", "--reason", reason))
    capsys.readouterr()
    assert main(tally(server, admin_key, "--json", "history", "xp", "alice")) == 0
    entry_id = json.loads(capsys.readouterr().out)["id"]
    assert main(tally(server, admin_key, "history", "xp", "alice")) == 0
    assert entry_id in capsys.readouterr().out


def test_a_user_listed_twice_in_a_balances_file_is_rejected_not_added_up(
    server: App, admin_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(tally(server, admin_key, "systems", "create", "xp"))
    capsys.readouterr()
    source = tmp_path / "balances.csv"
    write_awards(source, [("u1", "100"), ("u2", "7"), ("u1", "5")], header="user_id,balance")
    argv = tally(server, admin_key, "--json", "import", str(source), "--system", "xp")
    assert main([*argv, "--mode", "balances"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = next(line for line in lines if "imported" in line)
    assert (summary["imported"], summary["rejected"]) == (2, 1)
    with TallyClient(f"127.0.0.1:{server.port}", api_key=admin_key) as client:
        assert client.get_balance("xp", "u1").balance.balance == 100
