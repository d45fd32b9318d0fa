"""Ceilings measured in the same run, so that every figure can be a ratio.

- transport: Health/Check of the same server under the same load shape (what gRPC and
  Python cost with no work behind the call), with bench/h2gen.py and, as a cross-check,
  with h2load.
- database: pgbench running transactions shaped like Tally's, with as many connections
  as the scenarios have calls in flight, against copies of Tally's tables
  (`CREATE TABLE ... (LIKE ... INCLUDING ALL)`: same columns and indexes) in the bench
  database, so the ceilings never change the data the scenarios see. On Citus the copies
  are distributed by `user_id`, colocated with `users`, as Tally's own tables are: the
  ceiling is then what the cluster does with the same transaction routed to one shard.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import seed
from bench.load import run_child

# One award as Tally writes it: idempotency row, account upsert returning the balance,
# ledger insert. `:n` picks the user.
AWARD_SCRIPT = """\
{choose_user}
BEGIN;
INSERT INTO bench_idempotency (user_id, scope, key, request_hash, response, create_time)
  VALUES ('u' || lpad(:n::text, 6, '0'), 'bench', gen_random_uuid()::text,
          md5(random()::text) || md5(random()::text), repeat('x', 600), now());
INSERT INTO bench_accounts (user_id, system_key, balance, total_earned, total_spent,
  total_expired, create_time, update_time)
  VALUES ('u' || lpad(:n::text, 6, '0'), 'bench', 10, 10, 0, 0, now(), now())
  ON CONFLICT (user_id, system_key) DO UPDATE SET balance = bench_accounts.balance + 10,
    total_earned = bench_accounts.total_earned + 10, update_time = excluded.update_time
  RETURNING balance;
INSERT INTO bench_ledger (user_id, id, sequence, system_key, type, amount, base_amount,
  multiplier, boost_ids, capped, balance_after, reason, metadata, idempotency_key,
  trigger_id, event_type, create_time)
  VALUES ('u' || lpad(:n::text, 6, '0'), gen_random_uuid()::text,
          nextval('bench_ledger_sequence'), 'bench', 'AWARD', 10, 10, '1', '[]', false, 0,
          'bench', '{{}}', 'k', '', '', now());
END;
"""

# One StreamHistory chunk as the server reads it: 1000 entries by keyset on sequence.
HISTORY_SCRIPT = """\
\\set after random({first}, {last})
SELECT * FROM ledger_entries WHERE user_id = '{user}' AND system_key = 'bench'
  AND sequence > :after ORDER BY sequence LIMIT {chunk};
"""
HISTORY_CHUNK = 1000


def prepare_tables(conn: psycopg.Connection[tuple[object, ...]], *, citus: bool = False) -> None:
    """Copies of Tally's write tables for pgbench, holding the spread users' accounts."""
    for name, like in (
        ("bench_idempotency", "idempotency_keys"),
        ("bench_accounts", "accounts"),
        ("bench_ledger", "ledger_entries"),
    ):
        conn.execute(f"CREATE TABLE {name} (LIKE {like} INCLUDING ALL)")
        if citus:
            conn.execute(
                "SELECT create_distributed_table(%s, 'user_id', colocate_with => 'users')",
                (name,),
            )
    conn.execute("CREATE SEQUENCE bench_ledger_sequence")
    conn.execute("INSERT INTO bench_accounts SELECT * FROM accounts WHERE user_id LIKE 'u%'")
    conn.execute("INSERT INTO bench_ledger SELECT * FROM ledger_entries")
    conn.execute("VACUUM ANALYZE bench_accounts")
    conn.execute("VACUUM ANALYZE bench_ledger")


@dataclass(frozen=True)
class PgbenchResult:
    tps: float
    transactions: int
    failed: int
    latency_ms: float
    pgbench_cpu_s: float


def pgbench(dsn_parts: dict[str, str], script: str, clients: int, duration: float) -> PgbenchResult:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script_file:
        script_file.write(script)
    command = [
        "pgbench",
        "-n",  # no vacuum of pgbench's own tables: there are none
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        "1",
        "-T",
        str(max(1, round(duration))),
        "-f",
        script_file.name,
        "-h",
        dsn_parts["host"],
        "-p",
        dsn_parts["port"],
        "-U",
        dsn_parts["user"],
        dsn_parts["dbname"],
    ]
    output, cpu = run_child(command)
    Path(script_file.name).unlink()

    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        return float(match.group(1)) if match else 0.0

    return PgbenchResult(
        tps=number(r"tps = ([\d.]+) \(without initial connection time\)"),
        transactions=int(number(r"number of transactions actually processed: (\d+)")),
        failed=int(number(r"number of failed transactions: (\d+)")),
        latency_ms=number(r"latency average = ([\d.]+) ms"),
        pgbench_cpu_s=cpu,
    )


def award_script(*, users: int | None) -> str:
    """Spread over `users` users, or all on user u000000 (the hot ceiling) when None."""
    choose = f"\\set n random(0, {users - 1})" if users else "\\set n 0"
    return AWARD_SCRIPT.format(choose_user=choose)


def history_script(seeded: seed.Seeded) -> str:
    first = seeded.history_first_sequence - 1
    last = max(first, first + seeded.history_entries - HISTORY_CHUNK)
    return HISTORY_SCRIPT.format(
        first=first, last=last, user=seed.HISTORY_USER, chunk=HISTORY_CHUNK
    )
