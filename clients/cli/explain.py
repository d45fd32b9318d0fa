"""`tally explain`: an error that another tool printed, in words.

`buf curl` prints a failed call as Connect JSON whose details (ErrorInfo, BadRequest,
RetryInfo) stay base64: it decodes only message types compiled into it, google.rpc's error
details are not among them, and it does not ask server reflection for them. Piped
through `tally explain`, the error reads as `tally` shows its own: code, reason, message,
metadata, each bad field. With --json it is the same JSON with each detail decoded beside
its base64, under "debug" (as Connect writes it when it knows the type). Anything else
(the responses of calls that succeeded, buf's own messages) passes through unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from clients.cli.configure import Verbs
from clients.cli.output import Output
from clients.errors import error_from_connect_json, is_connect_error, packed_details
from clients.tally_client import TallyClient


def add_parser(verbs: Verbs) -> None:
    parser = verbs.add_parser(
        "explain",
        help="an error buf curl printed, in words (e.g. buf curl ... 2>&1 | tally explain)",
    )
    parser.add_argument(
        "file", nargs="?", default="-", help="what buf curl printed (default: standard input)"
    )
    parser.set_defaults(run=explain)


def explain(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    """Exit status 1 when the input held an error, as the call that printed it failed."""
    del client  # reads what another tool printed; calls nothing
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    errors = 0
    for part in parts(text):
        if isinstance(part, str):
            out.stdout.write(part)
        elif is_connect_error(part):
            errors += 1
            if out.as_json:
                out.json_line(decoded(part))
            else:
                out.stdout.write(error_from_connect_json(part).describe() + "\n")
        elif out.as_json:
            out.json_line(part)
        else:
            out.stdout.write(json.dumps(part, indent=3) + "\n")
    out.stdout.flush()
    return 1 if errors else 0


def parts(text: str) -> Iterator[Any]:
    """The JSON documents in `text`, in order, and the lines of other text between them."""
    decoder = json.JSONDecoder()
    at = 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        if text[at] in "{[":
            try:
                document, at = decoder.raw_decode(text, at)
            except json.JSONDecodeError:
                pass
            else:
                yield document
                continue
        end = text.find("\n", at)
        end = len(text) if end < 0 else end + 1
        yield text[at:end]
        at = end


def decoded(error: dict[str, Any]) -> dict[str, Any]:
    """The Connect JSON error with each detail's message beside its base64, as "debug"."""
    details = []
    for detail, packed in zip(error.get("details", []), packed_details(error), strict=True):
        try:
            message = json_format.MessageToDict(packed)
        except TypeError:  # a type this client does not know: left as it came
            details.append(detail)
            continue
        message.pop("@type", None)
        details.append({**detail, "debug": message})
    return {**error, "details": details}
