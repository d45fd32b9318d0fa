"""How `tally` shows things: readable tables for people, one JSON object a line for scripts.

Messages are the generated stubs' own; JSON is protobuf's JSON mapping (the field names
grpcurl shows), one object per line, so `tally ... --json | jq` works.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from clients.errors import TallyError, Unavailable


class Output:
    """Where results go: stdout as tables (or JSON lines), errors in words on stderr."""

    def __init__(self, as_json: bool, stdout: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stdout = stdout or sys.stdout
        self.console = Console(file=self.stdout, soft_wrap=True, highlight=False)

    def json_line(self, value: Message | dict[str, Any]) -> None:
        document = message_dict(value) if isinstance(value, Message) else value
        self.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
        self.stdout.flush()

    def messages(self, values: Iterable[Message]) -> None:
        for value in values:
            self.json_line(value)

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        table = Table(title=title, title_justify="left", show_edge=False)
        cells = [[cell(value) for value in row] for row in rows]
        for index, column in enumerate(columns):
            # Every word whole (an id is one word, to copy into `tally reverse`): a column
            # is at least as wide as its longest word, whatever the terminal's width; only
            # text with spaces (a reason) wraps, between words.
            widest = max((len(word) for row in cells for word in row[index].split()), default=0)
            table.add_column(column, min_width=widest, overflow="fold")
        for row in cells:
            table.add_row(*row)
        self.console.print(table)

    def fields(self, title: str, pairs: Iterable[tuple[str, Any]]) -> None:
        """One record as `name  value` lines."""
        self.table(title, ("field", "value"), pairs)


def message_dict(value: Message) -> dict[str, Any]:
    return json_format.MessageToDict(value, preserving_proto_field_name=False)


def cell(value: Any) -> str:
    if isinstance(value, timestamp_pb2.Timestamp):
        return when(value)
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return ""
    return str(value)


def when(stamp: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 in UTC to the microsecond, or empty for an unset time."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    moment: datetime = stamp.ToDatetime()
    return moment.isoformat(timespec="microseconds") + "Z"


def enum_name(prefix: str, name: str) -> str:
    """ENTRY_TYPE_AWARD -> award."""
    return name.removeprefix(prefix).lower()


def describe_error(error: TallyError, target: str) -> str:
    """An error in words: code, reason, message, metadata and each bad field; never base64."""
    if isinstance(error, Unavailable) and not error.reason:
        return (
            f"cannot reach Tally at {target}: {error.message or 'connection failed'}\n"
            "  (is the server running? set --target or TALLY_TARGET)"
        )
    if error.reason == "API_KEY_MISSING":
        return (
            f"{error.describe()}\n"
            "  (give an API key with --api-key or TALLY_API_KEY, or a user token with "
            "--user-token or TALLY_USER_TOKEN)"
        )
    return error.describe()
