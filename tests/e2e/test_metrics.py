"""Prometheus metrics as an operator scrapes them: HTTP GET /metrics from the server.

In process (both stores): the instruments belong to the process, so each test compares a
scrape before its calls with one after and asserts that the counters moved by exactly
those calls. As a command (`tally-server serve --workers 2`): the supervisor serves the
workers' values summed. `promtool check metrics` lints a scrape where the Debian
`prometheus` package is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server import metrics
from server.domain.errors import StoreUnavailable
from server.services.use_cases import points_changes
from server.store.database import SqlStore
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc
from tests.e2e.test_api import award, create_system
from tests.e2e.test_cli import clean_env, free_port, serving, sqlite_url

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
POINTS = "tally.v1.PointsService"


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Scraper:
    def __init__(self, url: str) -> None:
        self.url = url
        self.text = ""

    def __call__(self) -> Samples:
        self.text = get(self.url)
        return parse(self.text)


@pytest.fixture
def scrape() -> Iterator[Scraper]:
    """GET /metrics of this process's instruments, served on a free port."""
    exposition = metrics.serve("127.0.0.1:0")
    try:
        yield Scraper(f"http://127.0.0.1:{exposition.port}/metrics")
    finally:
        exposition.stop()


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_scrape_shows_exactly_the_calls_made(
    points: points_pb2_grpc.PointsServiceStub, store: SqlStore, scrape: Scraper
) -> None:
    create_system(points)
    before = scrape()
    for user in ("alice", "bob", "alice"):
        award(points, user, 10)
    with pytest.raises(grpc.RpcError) as refused:
        award(points, "alice", 0)  # amount must be 1..1,000,000,000
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = scrape()

    def calls(code: str) -> float:
        return moved(before, after, "tally_calls_total", service=POINTS, method="Award", code=code)

    assert (calls("OK"), calls("INVALID_ARGUMENT"), calls("INTERNAL")) == (3, 1, 0)
    timed = moved(
        before, after, "tally_call_duration_seconds_count", service=POINTS, method="Award"
    )
    assert timed == 4
    entries = {
        kind: moved(before, after, "tally_ledger_entries_total", type=kind)
        for kind in ("AWARD", "DEDUCT", "EXPIRE", "REVERSAL")
    }
    assert entries == {"AWARD": 3, "DEDUCT": 0, "EXPIRE": 0, "REVERSAL": 0}
    # One call at a time: three commits of one change each (the refused award queued none).
    assert moved(before, after, "tally_commit_batch_changes_count") == 3
    assert moved(before, after, "tally_commit_batch_changes_sum") == 3
    assert moved(before, after, "tally_commit_batch_changes_bucket", le="1.0") == 3
    assert moved(before, after, "tally_commit_duration_seconds_count") == 3
    with store.unit_of_work(write=False) as uow:
        assert value(after, "tally_config_version") == uow.systems.version()


def test_store_unavailable_is_counted_by_method(
    points: points_pb2_grpc.PointsServiceStub, scrape: Scraper, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_system(points)

    def down(*args: Any) -> Any:
        raise StoreUnavailable()

    monkeypatch.setattr(points_changes, "award", down)
    before = scrape()
    with pytest.raises(grpc.RpcError) as refused:
        award(points, "alice", 1)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    after = scrape()
    assert moved(before, after, "tally_store_unavailable_total", method="Award") == 1
    code = {"service": POINTS, "method": "Award", "code": "UNAVAILABLE"}
    assert moved(before, after, "tally_calls_total", **code) == 1
    assert moved(before, after, "tally_ledger_entries_total", type="AWARD") == 0


def wait_for(scrape: Scraper, done: Callable[[Samples], bool]) -> Samples:
    """Scrape until `done` (a follower's start and end are seen by the server a moment
    after the client's), failing after a generous bound."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        samples = scrape()
        if done(samples):
            return samples
        time.sleep(0.05)
    pytest.fail(f"the scrape never showed what was waited for:\n{scrape.text}")


def test_feed_followers_are_counted_while_they_follow(
    channel: grpc.Channel, scrape: Scraper
) -> None:
    points = points_pb2_grpc.PointsServiceStub(channel)
    create_system(points)
    award(points, "alice", 5)
    base = value(scrape(), "tally_feed_followers", feed="ledger")
    stream = points.WatchLedger(points_pb2.WatchLedgerRequest(follow=True))
    received = threading.Event()
    ended: list[grpc.StatusCode] = []

    def follow() -> None:
        try:
            for _message in stream:
                received.set()
        except grpc.RpcError as error:  # cancelled below
            ended.append(error.code())

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert received.wait(30)
    following = wait_for(
        scrape,
        lambda s: (
            value(s, "tally_feed_followers", feed="ledger") == base + 1
            and value(s, "tally_feed_lag_items", feed="ledger") == 0
        ),
    )
    assert value(following, "tally_feed_followers", feed="ledger") == base + 1
    stream.cancel()
    follower.join(10)
    assert ended == [grpc.StatusCode.CANCELLED]
    wait_for(scrape, lambda s: value(s, "tally_feed_followers", feed="ledger") == base)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_promtool_finds_nothing_wrong_with_a_scrape(
    points: points_pb2_grpc.PointsServiceStub, scrape: Scraper
) -> None:
    create_system(points)
    award(points, "alice", 1)
    with pytest.raises(grpc.RpcError):
        award(points, "alice", 0)
    scrape()
    checked = subprocess.run(
        ["promtool", "check", "metrics"],
        input=scrape.text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint warnings either


def families(text: str) -> dict[str, str]:
    """Each family a scrape declares (its HELP and TYPE lines, samples or not): its type."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def test_workers_are_summed_by_the_supervisor(tmp_path: Path) -> None:
    """`serve --workers 2`: one /metrics for the server, whichever worker served a call
    (each award on a connection of its own, so that both workers take some). Before any
    call it declares every family a single process declares, the per-method
    STORE_UNAVAILABLE counts at 0, and the process metrics of each of its processes."""
    metrics_port = free_port()
    env = clean_env(
        TALLY_DATABASE_URL=sqlite_url(tmp_path / "tally.db"),
        TALLY_WORKERS="2",
        TALLY_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
    )
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with serving(tmp_path, env) as served:
        first = get(url)
        key = served.first_key()
        target = f"127.0.0.1:{served.port}"
        metadata = (("x-api-key", key),)
        with grpc.insecure_channel(target) as channel:
            points_pb2_grpc.PointsServiceStub(channel).CreateSystem(
                points_pb2.CreateSystemRequest(system=points_pb2.PointsSystem(key="xp")),
                metadata=metadata,
                timeout=10,
            )
        for i in range(6):
            options = [("grpc.use_local_subchannel_pool", 1)]  # a new connection each time
            with grpc.insecure_channel(target, options=options) as channel:
                points_pb2_grpc.PointsServiceStub(channel).Award(
                    points_pb2.AwardRequest(
                        system_key="xp", user=common_pb2.User(id=f"u{i}"), amount=2
                    ),
                    metadata=metadata,
                    timeout=10,
                )
        samples = parse(get(url))
        served.process.terminate()
        served.process.wait(timeout=30)
    single = metrics.Instruments().registry  # a single process's, in memory
    assert families(first) == {family.name: family.type for family in single.collect()}
    declared = parse(first)
    assert value(declared, "tally_store_unavailable_total", method="Award") == 0
    assert ("tally_store_unavailable_total", frozenset({("method", "Award")})) in declared
    rss = {
        dict(labels)["process"]
        for name, labels in declared
        if name == "process_resident_memory_bytes"
    }
    assert rss == {"supervisor", "worker-0", "worker-1"}
    cpu = {
        dict(labels)["process"]: seconds
        for (name, labels), seconds in samples.items()
        if name == "process_cpu_seconds_total"
    }
    assert set(cpu) == {"supervisor", "worker-0", "worker-1"}
    assert all(seconds > 0 for seconds in cpu.values())
    award_ok = {"service": POINTS, "method": "Award", "code": "OK"}
    assert value(samples, "tally_calls_total", **award_ok) == 6
    assert value(samples, "tally_ledger_entries_total", type="AWARD") == 6
    assert value(samples, "tally_commit_batch_changes_sum") == 6
    assert value(samples, "tally_config_version") >= 1
