"""`tally export SYSTEM`: a system's ledger, in sequence order, to CSV or Parquet.

Entries come from WatchLedger (no follow), so the file ends at the last entry committed
when the export reached it, and a dropped connection resumes where it was. --after-sequence
starts after a given entry; --resume continues a CSV file from its last row. Parquet
needs pyarrow (`pip install -e '.[parquet]' in Tally's checkout`); CSV needs nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import json_format

from clients.cli.configure import Verbs
from clients.cli.output import Output, enum_name, when
from clients.cli.progress import progress_bar
from clients.tally_client import TallyClient
from tally.v1 import common_pb2

COLUMNS = (
    "sequence",
    "id",
    "system_key",
    "user_id",
    "type",
    "amount",
    "base_amount",
    "multiplier",
    "boost_ids",
    "capped",
    "balance_after",
    "reason",
    "metadata",
    "idempotency_key",
    "trigger_id",
    "event_type",
    "expire_time",
    "reverses_entry_id",
    "create_time",
)
PARQUET_BATCH = 10_000


def add_parser(verbs: Verbs) -> None:
    parser = verbs.add_parser(
        "export",
        help="a system's ledger to CSV or Parquet, resumable from a sequence",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("system", help="the points system")
    parser.add_argument(
        "-o", "--output", default="-", help="file to write (default standard output)"
    )
    parser.add_argument("--format", choices=("csv", "parquet"), help="default: from the suffix")
    parser.add_argument("--after-sequence", type=int, default=0, help="start after this entry")
    parser.add_argument(
        "--resume", action="store_true", help="append to a CSV after its last sequence"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run_export)


def row(entry: common_pb2.LedgerEntry) -> dict[str, Any]:
    """One entry as flat columns: enums as words, times RFC 3339 UTC, metadata as JSON."""
    return {
        "sequence": entry.sequence,
        "id": entry.id,
        "system_key": entry.system_key,
        "user_id": entry.user_id,
        "type": enum_name("ENTRY_TYPE_", common_pb2.EntryType.Name(entry.type)),
        "amount": entry.amount,
        "base_amount": entry.base_amount,
        "multiplier": entry.multiplier,
        "boost_ids": ";".join(entry.boost_ids),
        "capped": entry.capped,
        "balance_after": entry.balance_after,
        "reason": entry.reason,
        "metadata": (
            json.dumps(json_format.MessageToDict(entry.metadata), sort_keys=True)
            if entry.HasField("metadata")
            else ""
        ),
        "idempotency_key": entry.idempotency_key,
        "trigger_id": entry.trigger_id,
        "event_type": entry.event_type,
        "expire_time": when(entry.expire_time),
        "reverses_entry_id": entry.reverses_entry_id,
        "create_time": when(entry.create_time),
    }


def last_sequence(path: Path) -> int:
    """The sequence of a CSV export's last row (0 when it has none)."""
    last = 0
    with path.open(newline="") as text:
        for values in csv.DictReader(text):
            last = int(values["sequence"])
    return last


def write_csv(rows: Iterable[dict[str, Any]], sink: TextIO, header: bool) -> None:
    writer = csv.DictWriter(sink, fieldnames=COLUMNS)
    if header:
        writer.writeheader()
    for values in rows:
        writer.writerow(values)


def write_parquet(rows: Iterable[dict[str, Any]], path: str) -> None:
    try:
        import pyarrow as pa  # optional: only Parquet needs it
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit(
            "tally export: Parquet needs pyarrow: pip install -e '.[parquet]' in Tally's "
            "checkout (CSV needs nothing)"
        ) from None
    schema = pa.schema(
        [
            (name, pa.int64())
            if name in ("sequence", "amount", "base_amount", "balance_after")
            else (name, pa.float64())
            if name == "multiplier"
            else (name, pa.bool_())
            if name == "capped"
            else (name, pa.string())
            for name in COLUMNS
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for values in rows:
            chunk.append(values)
            if len(chunk) == PARQUET_BATCH:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        writer.write_table(pa.Table.from_pylist(chunk, schema=schema))


def run_export(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    fmt = args.format or ("parquet" if str(args.output).endswith(".parquet") else "csv")
    after = args.after_sequence
    append = False
    if args.resume:
        if fmt != "csv" or args.output == "-":
            print("tally export: --resume continues a CSV file (-o FILE.csv)", file=sys.stderr)
            return 2
        target = Path(args.output)
        if target.exists() and target.stat().st_size:
            after, append = max(after, last_sequence(target)), True
    bar = progress_bar(
        "entries",
        enabled=False if args.no_progress else None,
        total_known=False,
    )
    count = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        task = bar.add_task(f"export {args.system}", total=None)
        for entry in client.watch_ledger(args.system, after_sequence=after, follow=False):
            count += 1
            bar.advance(task)
            yield row(entry)

    with bar:
        if fmt == "parquet":
            if args.output == "-":
                print("tally export: Parquet needs -o FILE.parquet", file=sys.stderr)
                return 2
            write_parquet(rows(), args.output)
        elif args.output == "-":
            write_csv(rows(), sys.stdout, header=True)
        else:
            with open(args.output, "a" if append else "w", newline="") as sink:
                write_csv(rows(), sink, header=not append)
    if args.output != "-":
        noun = "entry" if count == 1 else "entries"
        print(
            f"exported {count:,} {noun} of {args.system} after sequence {after} to {args.output}",
            file=sys.stderr,
        )
    return 0
