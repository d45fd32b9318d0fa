"""`tally`: Tally for people. Every verb is a thin use of TallyClient.

tally [--target HOST:PORT] [--api-key KEY | --user-token TOKEN] [--json] VERB ...

Target and credentials come from flags (before or after the verb) or TALLY_TARGET /
TALLY_API_KEY / TALLY_USER_TOKEN. Results are tables, or
one JSON object a line with --json. A failure prints its reason and bad fields in words on
stderr and exits 1 (2 for bad usage); `tally explain` does the same for an error that
buf curl printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

import grpc

from clients.cli import configure, explain, exporter, importer, points
from clients.cli.output import Output, describe_error
from clients.errors import TallyError
from clients.tally_client import TallyClient

DEFAULT_TARGET = "127.0.0.1:50051"


def _add_common(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every verb takes, before or after it: on the verbs' own parsers with no
    defaults, so that one given after the verb is used and one given before is kept."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--target",
        default=default(None),
        help=f"HOST:PORT of the server (env TALLY_TARGET, default {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--api-key", default=default(None), help="API key sent as x-api-key (env TALLY_API_KEY)"
    )
    parser.add_argument(
        "--user-token",
        default=default(None),
        help="a user token (CreateUserToken) sent as a bearer token instead of an API key "
        "(env TALLY_USER_TOKEN): one user's reads",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=default(False),
        help="connect with TLS (the system's root certificates)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=default(10.0),
        help="seconds per call attempt (default 10)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="one JSON object a line instead of tables",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tally",
        description="Tally for people: configure points systems, award and deduct, "
        "import balances, export and watch the ledger.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_common(parser, defaults=True)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    configure.add_parsers(verbs)
    points.add_parsers(verbs)
    importer.add_parser(verbs)
    exporter.add_parser(verbs)
    explain.add_parser(verbs)
    for verb in _verbs(parser):
        _add_common(verb, defaults=False)
    return parser


def _verbs(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every verb's parser under `parser` (`systems`, `systems list`, ...)."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb in dict.fromkeys(action.choices.values()):  # aliases: once each
                found += [verb, *_verbs(verb)]
    return found


def _credentials(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(API key, user token): one of them, a flag before a variable, a key before a token."""
    if args.api_key or args.user_token:
        return (args.api_key, None) if args.api_key else (None, args.user_token)
    key = os.environ.get("TALLY_API_KEY") or None
    return (key, None) if key else (None, os.environ.get("TALLY_USER_TOKEN") or None)


def _version() -> str:
    try:
        return metadata.version("tally")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = args.target or os.environ.get("TALLY_TARGET") or DEFAULT_TARGET
    api_key, user_token = _credentials(args)
    out = Output(as_json=args.json)
    credentials = grpc.ssl_channel_credentials() if args.tls else None
    try:
        with TallyClient(
            target,
            api_key=api_key,
            user_token=user_token,
            timeout=args.timeout,
            credentials=credentials,
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
