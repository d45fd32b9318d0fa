"""The protos pass buf, and generated/ is exactly what protos/generate.py makes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "generated"
REGENERATE = "python protos/generate.py"


def _generated_files(root: Path) -> dict[str, bytes]:
    """Map each generated file under ``root/tally`` (relative path) to its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted((root / "tally").rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "protos" / "generate.py"), "--out", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    expected = _generated_files(tmp_path)
    actual = _generated_files(GENERATED)
    assert expected, "protos/generate.py produced no files"
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    stale = sorted(
        name for name in expected.keys() & actual.keys() if expected[name] != actual[name]
    )
    problems = [
        f"{label}: {', '.join(f'generated/{name}' for name in names)}"
        for label, names in (("stale", stale), ("missing", missing), ("extra", extra))
        if names
    ]
    assert not problems, (
        "generated/ does not match protos/ ("
        + "; ".join(problems)
        + f"). Run `{REGENERATE}` from the repository root and commit the result."
    )


@pytest.fixture(scope="module")
def buf() -> str:
    """Path of the buf binary: $TALLY_BUF, then buf on PATH, then node_modules."""
    configured = os.environ.get("TALLY_BUF")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"TALLY_BUF={configured!r} is not a file")
        return configured
    found = shutil.which("buf") or str(REPO / "node_modules" / ".bin" / "buf")
    if Path(found).is_file():
        return found
    message = (
        "buf not found: set TALLY_BUF, put buf on PATH, or install it in "
        "node_modules (npm install @bufbuild/buf)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _run_buf(buf: str, *args: str) -> None:
    result = subprocess.run([buf, *args], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, (
        f"`buf {' '.join(args)}` failed (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    )


def test_buf_lint(buf: str) -> None:
    _run_buf(buf, "lint", "protos")


def test_buf_format(buf: str) -> None:
    _run_buf(buf, "format", "--diff", "--exit-code", "protos")


RELEASED = "protos/released/tally-v1.binpb"


def _breaking(buf: str, protos: Path) -> subprocess.CompletedProcess[str]:
    """`buf breaking` of the protos in `protos` against the released contract."""
    return subprocess.run(
        [buf, "breaking", str(protos), "--against", str(REPO / RELEASED)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


def test_buf_breaking_against_the_released_contract(buf: str) -> None:
    done = _breaking(buf, REPO / "protos")
    assert done.returncode == 0, (
        f"the protos break callers of the released contract ({RELEASED}):\n"
        f"{done.stdout}{done.stderr}"
    )


@pytest.fixture
def protos_without_a_field(tmp_path: Path) -> Path:
    """A copy of protos/ in which AwardRequest has lost its `reason` field."""
    copy = tmp_path / "protos"
    shutil.copytree(REPO / "protos", copy, ignore=shutil.ignore_patterns("released"))
    points = copy / "tally" / "v1" / "points.proto"
    text = points.read_text()
    message = text.index("message AwardRequest {")
    field = text.index("  string reason = 4;\n", message)
    assert field < text.index("\n}\n", message), "AwardRequest has `string reason = 4`"
    points.write_text(text[:field] + text[field:].replace("  string reason = 4;\n", "", 1))
    return copy


def test_buf_breaking_fails_on_a_removed_field(buf: str, protos_without_a_field: Path) -> None:
    done = _breaking(buf, protos_without_a_field)
    assert done.returncode != 0, "buf breaking passed a removed field"
    assert 'with name "reason" on message "AwardRequest" was deleted' in done.stdout, done.stdout
