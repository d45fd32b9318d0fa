"""`tally import` of N rows (default 100,000) against the local server, with CPU per side.

    .venv/bin/python -m bench.import_rate [--rows 100000] [--workers 2] [--concurrency 4]

Makes a fresh PostgreSQL database, an admin key and `tally-server serve --workers N` with
the production write limits (50/s, burst 100 per user and system), writes a CSV of awards
spread over distinct users (the limit is per user: one user's rows would be held to
50/s), runs `tally import` as a real process twice (the first run imports every row, the
second replays every key and imports nothing) and prints rows/s, the cores the server,
PostgreSQL and the importer spent, and the ledger check: entries == rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import Meter
from bench.stack import ROOT, Database, Server, log

PRODUCTION_LIMITS = {"TALLY_RATE_LIMIT_PER_SECOND": "50", "TALLY_RATE_LIMIT_BURST": "100"}


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(("user_id", "amount", "reason"))
        for i in range(rows):
            writer.writerow((f"user-{i:07d}", 1 + i % 50, "migrated from the old system"))


def run_import(server: Server, source: Path, concurrency: int) -> dict[str, object]:
    tally = Path(sys.executable).parent / "tally"
    command = [str(tally), "--target", server.target, "--json", "import", str(source)]
    command += ["--system", "coins", "--no-progress", "--concurrency", str(concurrency)]
    env = {**os.environ, "TALLY_API_KEY": server.headers[0][1]}
    meter = Meter(server.pid)
    before, children = meter.snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    after, children_after = meter.snapshot(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"tally import failed: {done.stderr or done.stdout}")
    summary: dict[str, object] = json.loads(done.stdout.splitlines()[0])
    usage = Meter.usage(before, after)
    client_cpu = (children_after.ru_utime + children_after.ru_stime) - (
        children.ru_utime + children.ru_stime
    )
    summary["server_cores"] = round(usage.server_cores, 2)
    summary["db_cores"] = round(usage.db_cores, 2)
    summary["importer_cores"] = round(client_cpu / usage.seconds, 2) if usage.seconds else 0
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_rate", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--concurrency", type=int, default=8, help="tally import --concurrency")
    parser.add_argument("--db-host", default="127.0.0.1")
    parser.add_argument("--db-port", type=int, default=5432)
    parser.add_argument("--db-user", default="postgres")
    args = parser.parse_args()

    database = Database(
        args.db_host, args.db_port, args.db_user, f"tally_import_{time.strftime('%Y%m%d%H%M%S')}"
    )
    database.create()
    try:
        server = Server(database, workers=args.workers, threads=args.threads, env=PRODUCTION_LIMITS)
        with server, tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / "awards.csv"
            write_csv(source, args.rows)
            subprocess.run(
                [
                    str(Path(sys.executable).parent / "tally"),
                    "--target",
                    server.target,
                    "--api-key",
                    server.headers[0][1],
                    "systems",
                    "create",
                    "coins",
                ],
                check=True,
                capture_output=True,
                cwd=ROOT,
            )
            log(f"importing {args.rows:,} rows (workers {args.workers})")
            first = run_import(server, source, args.concurrency)
            log("importing the same file again (every row replays)")
            again = run_import(server, source, args.concurrency)
            with database.connect() as connection:
                entries = connection.execute(
                    "select count(*) from ledger_entries where system_key = 'coins'"
                ).fetchone()
        assert entries is not None
        print(
            "| run | rows | imported | already imported | rows/s | server cores "
            "| db cores | importer cores |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, s in (("first", first), ("re-run", again)):
            print(
                f"| {name} | {s['rows']:,} | {s['imported']:,} | {s['already_imported']:,} "
                f"| {s['rows_per_second']:,} | {s['server_cores']} | {s['db_cores']} "
                f"| {s['importer_cores']} |"
            )
        print(f"\nledger entries in coins: {entries[0]:,} (rows: {args.rows:,})")
        ok = entries[0] == args.rows and first["imported"] == args.rows
        return 0 if ok and again["imported"] == 0 else 1
    finally:
        database.drop()


if __name__ == "__main__":
    sys.exit(main())
