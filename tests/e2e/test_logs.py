"""The server's log as a log collector reads it (TALLY_LOG_FORMAT=json: one JSON object a
line, the access log's fields as fields) and as people read it (text, the default);
`tally-server --version`."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import grpc
import pytest

from server import logs
from tally.v1 import points_pb2, points_pb2_grpc
from tests.e2e.conftest import keyed
from tests.e2e.test_cli import Served, clean_env, free_port, sqlite_url, wait_serving


@contextmanager
def serving_apart(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Served, Path]]:
    """`tally-server serve`, its standard output (the first key) and standard error (the
    log) in files of their own; stopped with SIGTERM at the end."""
    port = free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    served = Served(process, port, out)
    try:
        wait_serving(served)
        yield served, err
    finally:
        process.terminate()
        process.wait(timeout=30)


def make_calls(served: Served) -> str:
    """One call that succeeds and one refused; returns the key's id."""
    key = served.first_key()
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        stub = points_pb2_grpc.PointsServiceStub(keyed(channel, key))
        stub.ListSystems(points_pb2.ListSystemsRequest(), timeout=10)
        with pytest.raises(grpc.RpcError):
            stub.GetSystem(points_pb2.GetSystemRequest(key="nope"), timeout=10)
    return key


def test_json_logs_are_one_object_a_line_with_the_access_fields(tmp_path: Path) -> None:
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(tmp_path / "tally.db"), TALLY_LOG_FORMAT="json")
    with serving_apart(tmp_path, env) as (served, stderr):
        key = make_calls(served)
    lines = stderr.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one object
    assert records
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["message"].startswith("serving on 127.0.0.1:") for r in records)
    access = [r for r in records if r["logger"] == "tally.access"]
    methods = [(r["method"].rsplit("/", 1)[-1], r["code"]) for r in access]
    assert ("ListSystems", "OK") in methods
    assert ("GetSystem", "NOT_FOUND") in methods
    listing = next(r for r in access if r["method"].endswith("/ListSystems"))
    assert listing["level"] == "INFO"
    assert isinstance(listing["ms"], float)
    assert listing["key_id"]  # the key's id (never the key)
    assert key not in stderr.read_text()


def test_text_logs_are_for_people(tmp_path: Path) -> None:
    env = clean_env(TALLY_DATABASE_URL=sqlite_url(tmp_path / "tally.db"))
    with serving_apart(tmp_path, env) as (served, stderr):
        make_calls(served)
    text = stderr.read_text()
    assert " INFO tally.access: /tally.v1.PointsService/ListSystems OK " in text
    assert " INFO tally.access: /tally.v1.PointsService/GetSystem NOT_FOUND " in text
    for line in text.splitlines():
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


def test_a_json_record_keeps_its_extra_fields_and_its_traceback() -> None:
    record = logging.LogRecord("tally.x", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
    record.operation = "Award"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(logs.JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "tally.x", "failed x")
    assert line["operation"] == "Award"
    assert "ValueError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "server", "migrate"],
        cwd=tmp_path,
        env=clean_env(TALLY_LOG_FORMAT="xml"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "TALLY_LOG_FORMAT must be one of text, json" in run.stderr
    assert not (tmp_path / "tally.db").exists()


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "server", "--version"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (run.returncode, run.stdout) == (0, f"tally-server {metadata.version('tally')}\n")
