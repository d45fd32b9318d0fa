"""`tally`: Tally for people. Every verb is a thin use of TallyClient.

tally [--target HOST:PORT] [--api-key KEY] [--json] VERB ...

Target and key come from flags or TALLY_TARGET / TALLY_API_KEY. Results are tables, or
one JSON object a line with --json. A failure prints its reason and bad fields in words on
stderr and exits 1 (2 for bad usage); `tally explain` does the same for an error that
buf curl printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc

from clients.cli import configure, explain, exporter, importer, points
from clients.cli.output import Output, describe_error
from clients.errors import TallyError
from clients.tally_client import TallyClient

DEFAULT_TARGET = "127.0.0.1:50051"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tally",
        description="Tally for people: configure points systems, award and deduct, "
        "import balances, export and watch the ledger.",
    )
    parser.add_argument(
        "--target", help=f"HOST:PORT of the server (env TALLY_TARGET, default {DEFAULT_TARGET})"
    )
    parser.add_argument("--api-key", help="API key sent as x-api-key (env TALLY_API_KEY)")
    parser.add_argument(
        "--tls", action="store_true", help="connect with TLS (the system's root certificates)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per call attempt (default 10)"
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object a line instead of tables"
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    configure.add_parsers(verbs)
    points.add_parsers(verbs)
    importer.add_parser(verbs)
    exporter.add_parser(verbs)
    explain.add_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = args.target or os.environ.get("TALLY_TARGET") or DEFAULT_TARGET
    api_key = args.api_key or os.environ.get("TALLY_API_KEY") or None
    out = Output(as_json=args.json)
    credentials = grpc.ssl_channel_credentials() if args.tls else None
    try:
        with TallyClient(
            target, api_key=api_key, timeout=args.timeout, credentials=credentials
        ) as client:
            code: int = args.run(client, args, out)
            return code
    except TallyError as error:
        print(f"tally: {describe_error(error, target)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tally: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tally ... | head`
        return 0
