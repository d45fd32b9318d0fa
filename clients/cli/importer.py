"""`tally import FILE.csv`: awards or opening balances from a CSV, safe to run again.

Each row's idempotency key is `<prefix>:<line>`, the prefix `import:` plus the first 32
hex digits of the file's SHA-256 (or --key-prefix), so a re-run of the same file, after a
crash or a kill, replays what was imported and imports only the rest: nothing twice.
A row that gives its own `idempotency_key` column keeps it. Rows go in batches of 100
through AwardBatch, several batches in flight; a row the server refuses is reported with
its line and field and never stops the others. Items refused for the per-user write limit
(RATE_LIMITED) or a store hiccup are sent again after the wait the server named.

Columns (header row required; unknown columns are refused, so a typo cannot drop data):
  awards:   user_id, amount, [reason, idempotency_key, display_name, email, metadata (JSON)]
  balances: user_id, balance, [reason, idempotency_key, display_name, email, metadata]
An opening balance is an award of that balance with boosts skipped (a migrated balance is
not multiplied again), reason "opening balance" unless given; a zero balance is skipped.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2

from clients.cli.configure import Verbs
from clients.cli.output import Output
from clients.cli.progress import progress_bar
from clients.tally_client import TallyClient
from tally.v1 import common_pb2, points_pb2

BATCH = 100  # AwardBatch's most items
MAX_AMOUNT = 1_000_000_000
RETRY_ROUNDS = 30
OPTIONAL = ("reason", "idempotency_key", "display_name", "email", "metadata")
AMOUNT_COLUMN = {"awards": "amount", "balances": "balance"}
# The server's field names as the file's column names.
COLUMN_OF_FIELD = {"user.id": "user_id", "user": "user_id", "user.email": "email"}
RETRY_AFTER = re.compile(r"retry after ([0-9.]+)\s*s")
ITEM_PREFIX = re.compile(r"^items\[\d+\]\.")
RETRIED_REASONS = {"RATE_LIMITED", "STORE_UNAVAILABLE"}


def add_parser(verbs: Verbs) -> None:
    parser = verbs.add_parser(
        "import",
        help="awards or opening balances from a CSV (re-run safely: nothing imports twice)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="CSV with a header row")
    parser.add_argument("--system", required=True, help="the points system to import into")
    parser.add_argument("--mode", choices=("awards", "balances"), default="awards")
    parser.add_argument("--reason", help="reason for rows that give none")
    parser.add_argument(
        "--key-prefix",
        help="idempotency key prefix (default import:<file sha256>); pass the one a "
        "previous run printed to re-run an edited file without importing twice",
    )
    parser.add_argument("--skip-boosts", action="store_true", help="awards: boosts not applied")
    parser.add_argument("--concurrency", type=int, default=8, help="batches in flight (default 8)")
    parser.add_argument("--rejects", type=Path, help="write every rejected row to this CSV")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_import)


@dataclass(frozen=True)
class Rejected:
    line: int
    column: str
    reason: str
    message: str


@dataclass
class Counts:
    """What an import did, row by row (counts are thread-safe through `lock`)."""

    rows: int = 0
    imported: int = 0
    replayed: int = 0
    skipped: int = 0
    capped: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Row:
    line: int
    item: points_pb2.AwardBatchItem


def file_prefix(path: Path) -> tuple[str, int]:
    """`import:<sha256[:32]>` of the file's bytes, and its number of data rows."""
    digest = hashlib.sha256()
    with path.open("rb") as raw:
        for chunk in iter(lambda: raw.read(1 << 20), b""):
            digest.update(chunk)
    with path.open(newline="", encoding="utf-8-sig") as text:
        rows = sum(1 for _ in csv.reader(text)) - 1
    return f"import:{digest.hexdigest()[:32]}", max(rows, 0)


def check_header(columns: list[str], mode: str) -> str | None:
    """Why the header cannot be imported, or None."""
    needed = ("user_id", AMOUNT_COLUMN[mode])
    missing = [c for c in needed if c not in columns]
    if missing:
        article = "an" if mode[:1] in "aeiou" else "a"
        has = ", ".join(needed)
        return f"missing column(s) {', '.join(missing)} ({article} {mode} file has {has})"
    unknown = [c for c in columns if c not in (*needed, *OPTIONAL)]
    if unknown:
        return f"unknown column(s) {', '.join(unknown)}; known: {', '.join((*needed, *OPTIONAL))}"
    return None


def read_rows(path: Path, args: argparse.Namespace, prefix: str, counts: Counts) -> Iterator[Row]:
    """The file's rows as AwardBatch items; rows that are wrong here are rejected here."""
    amount_column = AMOUNT_COLUMN[args.mode]
    balances = args.mode == "balances"
    default_reason = (
        args.reason if args.reason is not None else ("opening balance" if balances else "")
    )
    first_line: dict[str, int] = {}  # balances: each user's one line
    with path.open(newline="", encoding="utf-8-sig") as text:
        reader = csv.DictReader(text)
        for values in reader:
            line = reader.line_num
            counts.rows += 1

            def reject(column: str, message: str, line: int = line) -> None:
                counts.rejected.append(Rejected(line, column, "VALIDATION_FAILED", message))

            if None in values:  # more cells than the header has
                reject("", "more cells than the header has columns")
                continue
            user_id = values["user_id"] or ""
            if not user_id:
                reject("user_id", "empty")
                continue
            if balances:  # an opening balance is one figure: a second row is a mistake
                earlier = first_line.setdefault(user_id, line)
                if earlier != line:
                    reject(
                        "user_id",
                        f"listed again: a balances file gives each user one row "
                        f"(first on line {earlier})",
                    )
                    continue
            try:
                amount = int((values[amount_column] or "").strip())
            except ValueError:
                reject(amount_column, f"not a whole number: {values[amount_column]!r:.60}")
                continue
            if balances and amount == 0:
                counts.skipped += 1
                continue
            if not 1 <= amount <= MAX_AMOUNT:
                reject(amount_column, f"must be 1..{MAX_AMOUNT:,} (got {amount})")
                continue
            metadata = None
            if values.get("metadata"):
                try:
                    decoded = json.loads(values["metadata"])
                    if not isinstance(decoded, dict):
                        raise ValueError("not an object")
                except ValueError:
                    reject("metadata", "must be a JSON object")
                    continue
                metadata = struct_pb2.Struct()
                metadata.update(decoded)
            item = points_pb2.AwardBatchItem(
                system_key=args.system,
                user=common_pb2.User(
                    id=user_id,
                    display_name=values.get("display_name") or "",
                    email=values.get("email") or "",
                ),
                amount=amount,
                reason=values.get("reason") or default_reason,
                metadata=metadata,
                idempotency_key=values.get("idempotency_key") or f"{prefix}:{line}",
                skip_boosts=balances or args.skip_boosts,
            )
            yield Row(line, item)


def batches(rows: Iterator[Row]) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def send(client: TallyClient, batch: list[Row], counts: Counts) -> int:
    """One batch, items the server asked to wait for sent again; the rows it settled."""
    pending = batch
    for _ in range(RETRY_ROUNDS):
        response = client.award_batch([row.item for row in pending])
        again: list[Row] = []
        wait_for = 0.0
        with counts.lock:
            for row, result in zip(pending, response.results, strict=True):
                if result.HasField("error"):
                    error = result.error
                    if error.reason in RETRIED_REASONS:
                        again.append(row)
                        found = RETRY_AFTER.search(error.message)
                        wait_for = max(wait_for, float(found.group(1)) if found else 0.2)
                        continue
                    column = ITEM_PREFIX.sub("", error.metadata.get("field", ""))
                    column = COLUMN_OF_FIELD.get(column, column)
                    if column == "amount":
                        column = AMOUNT_COLUMN["balances" if row.item.skip_boosts else "awards"]
                    counts.rejected.append(Rejected(row.line, column, error.reason, error.message))
                elif result.replayed:
                    counts.replayed += 1
                else:
                    counts.imported += 1
                    counts.capped += result.entry.capped
        if not again:
            return len(batch)
        pending = again
        time.sleep(min(wait_for, 5.0))
    with counts.lock:
        for row in pending:
            counts.rejected.append(
                Rejected(row.line, "", "RATE_LIMITED", "still limited after retries; run again")
            )
    return len(batch)


def run_import(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    path: Path = args.file
    try:
        prefix, total = file_prefix(path)
        with path.open(newline="", encoding="utf-8-sig") as text:
            header = next(csv.reader(text), [])
    except OSError as error:
        print(f"tally import: cannot read {path}: {error.strerror}", file=sys.stderr)
        return 2
    problem = check_header(header, args.mode)
    if problem:
        print(f"tally import: {path}: line 1: {problem}", file=sys.stderr)
        return 2
    prefix = args.key_prefix or prefix
    client.get_system(args.system)  # a missing system fails here, not once per row
    counts = Counts()
    started = time.monotonic()
    bar = progress_bar("rows", enabled=False if args.no_progress else None)
    with bar, ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        task = bar.add_task(f"import {path.name}", total=total)
        in_flight: set[Future[int]] = set()
        for batch in batches(read_rows(path, args, prefix, counts)):
            while len(in_flight) >= 2 * max(1, args.concurrency):
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for finished in done:
                    bar.advance(task, finished.result())
            in_flight.add(pool.submit(send, client, batch, counts))
        for finished in in_flight:
            bar.advance(task, finished.result())
        bar.update(task, completed=total)
    seconds = time.monotonic() - started
    report(out, args, path, prefix, counts, seconds)
    return 1 if counts.rejected else 0


def report(
    out: Output, args: argparse.Namespace, path: Path, prefix: str, counts: Counts, seconds: float
) -> None:
    rejected = sorted(counts.rejected, key=lambda r: r.line)
    if args.rejects:
        with args.rejects.open("w", newline="") as sink:
            writer = csv.writer(sink)
            writer.writerow(("line", "column", "reason", "message"))
            writer.writerows((r.line, r.column, r.reason, r.message) for r in rejected)
    summary: dict[str, Any] = {
        "file": str(path),
        "system": args.system,
        "key_prefix": prefix,
        "rows": counts.rows,
        "imported": counts.imported,
        "already_imported": counts.replayed,
        "skipped": counts.skipped,
        "capped": counts.capped,
        "rejected": len(rejected),
        "seconds": round(seconds, 3),
        "rows_per_second": round(counts.rows / seconds) if seconds > 0 else 0,
    }
    if out.as_json:
        out.json_line(summary)
        for r in rejected:
            out.json_line(
                {"line": r.line, "column": r.column, "reason": r.reason, "message": r.message}
            )
        return
    out.console.print(
        f"{path.name}: {counts.rows:,} rows, {counts.imported:,} imported, "
        f"{counts.replayed:,} already imported, {counts.skipped:,} skipped (zero), "
        f"{len(rejected):,} rejected in {seconds:.1f} s "
        f"({summary['rows_per_second']:,} rows/s)"
    )
    if counts.capped:
        out.console.print(f"  {counts.capped:,} awards were cut by the system's max_points")
    out.console.print(f"  idempotency keys {prefix}:<line> (a re-run imports nothing twice)")
    if rejected:
        shown = rejected[:50]
        out.table(
            "rejected rows"
            + (
                f" (first 50; all in {args.rejects})" if len(rejected) > 50 and args.rejects else ""
            ),
            ("line", "column", "reason", "message"),
            ((r.line, r.column, r.reason, r.message) for r in shown),
        )
