"""Errors people can read from the tools the README recommends: `buf curl` (through server
reflection, with `tally explain` for the details it leaves in base64) and `tally`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from clients.cli.explain import decoded, parts
from clients.errors import InsufficientPoints, error_from_connect_json
from server.app import App
from tests.e2e.test_readme import find_buf

ROOT = Path(__file__).resolve().parents[2]


def test_reflection_resolves_the_google_rpc_types(server: App) -> None:
    """A reflection client (grpcurl, Postman, buf curl for responses) can decode the error
    details and BatchItemError.status: their files come from the server itself."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        files = ProtoReflectionDescriptorDatabase(channel)
        for symbol, file in (
            ("google.rpc.ErrorInfo", "google/rpc/error_details.proto"),
            ("google.rpc.BadRequest", "google/rpc/error_details.proto"),
            ("google.rpc.RetryInfo", "google/rpc/error_details.proto"),
            ("google.rpc.Code", "google/rpc/code.proto"),
        ):
            assert files.FindFileContainingSymbol(symbol).name == file, symbol


def test_reflection_resolves_a_methods_symbol(server: App) -> None:
    """grpcurl's `describe tally.v1.PointsService.Deduct` asks for the file containing the
    method: it is its service's; a name that is no method is still NOT_FOUND."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for symbol, file in (
            ("tally.v1.PointsService.Deduct", "tally/v1/points.proto"),
            ("tally.v1.LevelsService.GetUserLevel", "tally/v1/levels.proto"),
            ("grpc.health.v1.Health.Check", "grpc_health/v1/health.proto"),
        ):
            # A new client each time: one that holds a file answers from it.
            files = ProtoReflectionDescriptorDatabase(channel)
            assert files.FindFileContainingSymbol(symbol).name == file, symbol
        for missing in ("tally.v1.PointsService.NoSuchMethod", "tally.v1.Nothing.Deduct"):
            with pytest.raises(KeyError):
                ProtoReflectionDescriptorDatabase(channel).FindFileContainingSymbol(missing)


def buf_curl(server: App, key: str, method: str, body: dict[str, object]) -> str:
    """What `buf curl` prints for one call (responses on stdout, the error on stderr)."""
    buf = find_buf()
    if buf is None:
        pytest.skip("buf not found (npm install --no-save @bufbuild/buf)")
    done = subprocess.run(
        [
            buf,
            "curl",
            "--protocol",
            "grpc",
            "--http2-prior-knowledge",
            "-H",
            f"x-api-key: {key}",
            f"http://127.0.0.1:{server.port}/tally.v1.PointsService/{method}",
            "-d",
            json.dumps(body),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr


def explain(text: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """`tally explain` as a person pipes into it."""
    return subprocess.run(
        [sys.executable, "-m", "clients.cli", *flags, "explain"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def test_buf_curl_errors_read_in_words_through_tally_explain(server: App, admin_key: str) -> None:
    buf_curl(server, admin_key, "CreateSystem", {"system": {"key": "xp", "name": "XP"}})
    buf_curl(server, admin_key, "Award", {"systemKey": "xp", "user": {"id": "al"}, "amount": 50})

    printed = buf_curl(
        server, admin_key, "Deduct", {"systemKey": "xp", "userId": "al", "amount": 80}
    )
    assert '"type": "google.rpc.ErrorInfo"' in printed
    words = explain(printed)
    assert words.returncode == 1  # the call failed
    assert words.stdout.splitlines() == [
        "FAILED_PRECONDITION INSUFFICIENT_POINTS: insufficient points: 50 available, 80 requested",
        "  available: 50",
        "  requested: 80",
    ]

    printed = buf_curl(server, admin_key, "Award", {"systemKey": "xp", "user": {"id": "al"}})
    words = explain(printed)
    assert words.stdout.startswith("INVALID_ARGUMENT VALIDATION_FAILED: ")
    assert "  field amount: must be between 1 and 1,000,000,000, got 0" in words.stdout.splitlines()
    (as_json,) = (json.loads(line) for line in explain(printed, "--json").stdout.splitlines())
    debug = {d["type"]: d["debug"] for d in as_json["details"]}
    assert debug["google.rpc.ErrorInfo"]["reason"] == "VALIDATION_FAILED"
    assert debug["google.rpc.BadRequest"]["fieldViolations"][0]["field"] == "amount"


def test_buf_curl_names_batch_item_codes(server: App, admin_key: str) -> None:
    buf_curl(server, admin_key, "CreateSystem", {"system": {"key": "xp", "name": "XP"}})
    items = [
        {"systemKey": "xp", "user": {"id": "a"}, "amount": 5},
        {"systemKey": "nope", "user": {"id": "b"}, "amount": 5},
    ]
    printed = buf_curl(server, admin_key, "AwardBatch", {"items": items})
    ok, failed = json.loads(printed)["results"]
    assert "error" not in ok
    assert failed["error"]["code"] == 5
    assert failed["error"]["status"] == "NOT_FOUND"
    assert failed["error"]["reason"] == "SYSTEM_NOT_FOUND"


def test_explain_passes_responses_and_other_text_through() -> None:
    text = 'Failure: no such method\n{\n   "balance": {"balance": "5"}\n}\n'
    assert list(parts(text)) == ["Failure: no such method\n", {"balance": {"balance": "5"}}]
    words = explain(text)
    assert words.returncode == 0
    assert words.stdout.startswith("Failure: no such method\n{")


def test_connect_json_errors_become_typed_errors() -> None:
    error = error_from_connect_json(
        {
            "code": "failed_precondition",
            "message": "short",
            "details": [
                {
                    "type": "google.rpc.ErrorInfo",
                    # ErrorInfo(reason=INSUFFICIENT_POINTS, domain=tally, {available: 5})
                    "value": "ChNJTlNVRkZJQ0lFTlRfUE9JTlRTEgV0YWxseRoOCglhdmFpbGFibGUSATU",
                },
                {"type": "example.Unknown", "value": "CgA"},
            ],
        }
    )
    assert isinstance(error, InsufficientPoints)
    assert (error.code, error.reason, error.available) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
        5,
    )
    assert error_from_connect_json({"code": "canceled"}).code == grpc.StatusCode.CANCELLED
    unknown = decoded({"code": "unknown", "details": [{"type": "example.Unknown", "value": "CgA"}]})
    assert unknown["details"] == [{"type": "example.Unknown", "value": "CgA"}]
