"""The client across a real server restart: a retried write applies once, a watch resumes
with no gap and no repeat, and `tally export` writes exactly what ListTransactions shows."""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.cli.exporter import row
from clients.cli.main import main
from clients.tally_client import TallyClient
from server import app
from server.settings import Settings
from server.store.database import SqlStore


class Restartable:
    """The real server, which a test can stop and start again on the same port."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.server = app.build(Settings(listen="127.0.0.1:0", threads=8), store)
        self.server.start()
        self.port = self.server.port
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(grace_seconds=1)

    def start(self) -> None:
        self.server = app.build(Settings(listen=self.target, threads=8), self.store)
        self.server.start()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def restartable(store: SqlStore) -> Iterator[Restartable]:
    made = Restartable(store)
    yield made
    made.stop()


class LoseFirstResponse(grpc.UnaryUnaryClientInterceptor):
    """Lets the first call of `method` reach the server, then restarts the server and
    reports UNAVAILABLE, as when a server goes down after committing but before answering."""

    def __init__(self, method: str, restart: Callable[[], None]) -> None:
        self.method, self.restart, self.fired = method, restart, False

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        outcome = continuation(details, request)
        if details.method.endswith(self.method) and not self.fired:
            self.fired = True
            outcome.result()  # applied by the server
            self.restart()
            raise Lost()
        return outcome


class Lost(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection lost before the response"

    def trailing_metadata(self) -> Any:
        return ()


def test_a_write_retried_across_a_restart_applies_once(
    restartable: Restartable, admin_key: str
) -> None:
    lose = LoseFirstResponse("/Award", restartable.restart)
    with grpc.insecure_channel(restartable.target) as bare:
        channel = grpc.intercept_channel(bare, lose)
        with TallyClient(api_key=admin_key, channel=channel, attempts=6) as client:
            client.create_system("xp")
            awarded = client.award("xp", "alice", 7, reason="order 1")
            assert lose.fired
            assert awarded.replayed, "the retry reached the restarted server with the same key"
            entries = list(client.transactions("xp", "alice"))
    assert [(e.amount, e.id) for e in entries] == [(7, awarded.entry.id)]
    assert awarded.balance.balance == 7


def test_a_write_waits_for_a_server_coming_back(restartable: Restartable, admin_key: str) -> None:
    with TallyClient(restartable.target, api_key=admin_key, attempts=12) as client:
        client.create_system("xp")
        restartable.stop()
        coming_back = threading.Timer(0.5, restartable.start)
        coming_back.start()
        awarded = client.award("xp", "alice", 3)
        coming_back.join()
        assert not awarded.replayed
        assert [e.amount for e in client.transactions("xp", "alice")] == [3]


def test_a_watch_resumes_across_a_restart_without_gap_or_repeat(
    restartable: Restartable, admin_key: str
) -> None:
    with TallyClient(restartable.target, api_key=admin_key, attempts=12) as client:
        client.create_system("xp")
        before = [client.award("xp", f"u{i % 3}", i + 1).entry.sequence for i in range(5)]
        seen: list[int] = []
        got_five, got_all = threading.Event(), threading.Event()

        def follow() -> None:
            for entry in client.watch_ledger("xp", give_up_after=60):
                seen.append(entry.sequence)
                if len(seen) == 5:
                    got_five.set()
                if len(seen) == 10:
                    got_all.set()
                    return

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        assert got_five.wait(30)
        restartable.restart()  # the follower's stream ends with UNAVAILABLE here
        after = [client.award("xp", f"u{i % 3}", 1).entry.sequence for i in range(5)]
        assert got_all.wait(30)
        follower.join(10)
    assert seen == before + after
    assert len(set(seen)) == 10


def test_export_round_trips(
    restartable: Restartable,
    admin_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with TallyClient(restartable.target, api_key=admin_key) as client:
        client.create_system("xp")
        client.create_system("other")
        for i in range(30):
            client.award("xp", f"u{i % 4}", i + 1, reason=f"r{i}", metadata={"n": i})
        client.deduct("xp", "u1", 5, reason="shop")
        client.reverse(client.award("xp", "u2", 9).entry.id)
        client.award("other", "u1", 100)
        listed = sorted(
            (e for user in ("u0", "u1", "u2", "u3") for e in client.transactions("xp", user)),
            key=lambda e: e.sequence,
        )
    expected = [stringify(row(e)) for e in listed]
    base = ["--target", restartable.target, "--api-key", admin_key, "export", "xp"]
    out = tmp_path / "ledger.csv"
    assert main([*base, "-o", str(out), "--no-progress"]) == 0
    assert list(csv.DictReader(out.open(newline=""))) == expected

    # Resumable: a file cut short is completed from its last sequence, nothing twice.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:11]))
    assert main([*base, "-o", str(out), "--resume", "--no-progress"]) == 0
    assert list(csv.DictReader(out.open(newline=""))) == expected

    pq = pytest.importorskip("pyarrow.parquet")
    parquet = tmp_path / "ledger.parquet"
    assert main([*base, "-o", str(parquet), "--no-progress"]) == 0
    assert pq.read_table(parquet).to_pylist() == [row(e) for e in listed]
    capsys.readouterr()


def stringify(values: dict[str, Any]) -> dict[str, str]:
    """A row as csv.DictReader gives it back."""
    return {k: str(v) for k, v in values.items()}


def test_watch_level_changes_follows_levels(restartable: Restartable, admin_key: str) -> None:
    with TallyClient(restartable.target, api_key=admin_key) as client:
        client.create_system("xp")
        client.create_level("xp", "silver", 10)
        client.award("xp", "alice", 15)
        client.award("xp", "bob", 3)
        client.award("xp", "bob", 30)
        changes = list(client.watch_level_changes("xp", follow=False))
    assert [(c.user_id, c.new_level.key) for c in changes] == [
        ("alice", "silver"),
        ("bob", "silver"),
    ]
    assert [c.sequence for c in changes] == sorted({c.sequence for c in changes})
