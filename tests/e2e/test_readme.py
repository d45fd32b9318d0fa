"""The README's manual session (`buf curl` through server reflection) works as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.app import App

ROOT = Path(__file__).resolve().parents[2]


def find_buf() -> str | None:
    for candidate in (
        os.environ.get("TALLY_BUF"),
        shutil.which("buf"),
        str(ROOT / "node_modules" / ".bin" / "buf"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def readme_session(heading: str = "## Calling it by hand") -> str:
    """The first shell block under `heading`."""
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "the README shows a buf curl session"
    return match.group(1)


def run_session(heading: str, server: App, admin_key: str) -> tuple[list[Any], str]:
    """Run the README's shell block under `heading` against `server`, with `admin_key` as
    its KEY: the JSON documents it printed, and what followed them."""
    buf = find_buf()
    if buf is None:
        if os.environ.get("CI") == "true":
            pytest.fail("buf not found (npm install --no-save @bufbuild/buf)")
        pytest.skip("buf not found (npm install --no-save @bufbuild/buf)")
    script = readme_session(heading).replace("127.0.0.1:50051", f"127.0.0.1:{server.port}")
    script = script.replace("BUF=node_modules/.bin/buf", f"BUF={buf}")
    script, keys = re.subn(r"^KEY=.*$", f"KEY={admin_key}", script, flags=re.M)
    assert keys == 1, "the session sets KEY once"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    # The outputs are JSON documents one after another (then, maybe, plain text).
    decoder = json.JSONDecoder()
    text, documents = done.stdout.strip(), []
    while text.startswith("{"):
        document, end = decoder.raw_decode(text)
        documents.append(document)
        text = text[end:].strip()
    return documents, text


def test_readme_buf_curl_session(server: App, admin_key: str) -> None:
    (created, awarded, balance), rest = run_session("## Calling it by hand", server, admin_key)
    assert created["system"]["key"] == "xp"
    assert awarded["balance"]["balance"] == "50"
    assert balance["balance"]["balance"] == "50"
    assert "tally.v1.PointsService/Award" in rest.splitlines()


def test_readme_triggers_levels_and_boosts_session(server: App, admin_key: str) -> None:
    documents, _ = run_session("## Triggers, levels and boosts", server, admin_key)
    event, preview = documents[-2], documents[-1]
    result = event["results"]["quest"]
    assert result["added"] == "20"
    (award,) = result["awards"]
    assert (award["entry"]["baseAmount"], award["entry"]["multiplier"]) == ("10", 2)
    assert result["levelChange"]["newLevel"]["key"] == "silver"
    assert (preview["events"], preview["points"]) == ("1", "1")


def readme_python(heading: str = "## From Python") -> str:
    section = (ROOT / "README.md").read_text().split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README shows a Python example"
    return match.group(1)


def test_readme_python_example_runs_on_a_fresh_server(server: App, admin_key: str) -> None:
    script = readme_python().replace("127.0.0.1:50051", f"127.0.0.1:{server.port}")
    script, keys = re.subn(r'api_key="tally_\.\.\."', f'api_key="{admin_key}"', script)
    assert keys == 1, "the example sets the key once"
    outputs = []
    for _ in range(2):  # a fresh server, then again: it makes what it uses, once
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.splitlines())
    for lines in outputs:
        assert lines[:2] == ["only 50 of 80", "silver"]
        assert lines[-1] == "50"
    # The ledger: one entry (its sequence is the store's), the award.
    assert [line.split()[1:] for line in outputs[0][2:-1]] == [["alice", "50"]]
    assert outputs[1] == outputs[0], "the second run's award replayed"
