"""Bench data written straight into Tally's tables with set-based SQL.

Why not through the API: 5,000,000 entries through Award would take longer than the
benchmark. Rows follow the schema of server/store/migrations (0001): every entry has a
sequence from `ledger_entry_sequence`, and each account's balance equals the sum of its
entries, so the server sees a ledger it could have written itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

SYSTEM = "bench"
HOT_USER = "hot"
HISTORY_USER = "history"
SPREAD_BALANCE = 1_000_000  # enough that Deduct never runs short
SECOND_SYSTEM = "bench-coins"
EVENT_TYPE = "bench.lesson"  # three ACTIVE EVENT triggers name it, in two systems
LEVELS_SYSTEM = "bench-levels"  # every user has an account at 0; a level every 10 points
LADDER_STEP, LADDER_LEVELS = 10, 1000
BOOSTED_USERS = 10_000  # users "b000000".. in SYSTEM, in the cohort three boosts name
COHORT = ("cohort", "boosted")


def boosted_user_id(index: int) -> str:
    return f"b{index:06d}"


def user_id(index: int) -> str:
    return f"u{index:06d}"


@dataclass(frozen=True)
class Seeded:
    users: int
    history_entries: int
    history_first_sequence: int


def base(conn: psycopg.Connection[tuple[object, ...]], users: int, history: int) -> Seeded:
    """The system, `users` users with one award each, the hot user, and one user with a
    `history`-entry history (ListTransactions deep, StreamHistory)."""
    conn.execute(
        "INSERT INTO points_systems (key, name, description, badge_url, max_points,"
        " level_basis, create_time, update_time)"
        " VALUES (%s, 'Bench', '', '', 0, 'BALANCE', now(), now())",
        (SYSTEM,),
    )
    conn.execute(
        "INSERT INTO users (id, display_name, email, attributes, create_time)"
        " SELECT 'u' || lpad(g::text, 6, '0'), '', '', '{}'::jsonb, now()"
        " FROM generate_series(0, %s - 1) g"
        " UNION ALL SELECT %s, '', '', '{}'::jsonb, now()"
        " UNION ALL SELECT %s, '', '', '{}'::jsonb, now()",
        (users, HOT_USER, HISTORY_USER),
    )
    event_triggers(conn)
    add_entries(conn, "'u' || lpad((g %% {users})::text, 6, '0')", users, 1, SPREAD_BALANCE)
    levels_and_boosts(conn, users)
    add_entries(conn, f"'{HOT_USER}'", 1, 1, SPREAD_BALANCE)
    first = add_entries(conn, f"'{HISTORY_USER}'", 1, history, 1)
    welcomed_everywhere(conn)
    conn.execute("VACUUM ANALYZE")
    return Seeded(users, history, first)


def welcomed_everywhere(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The seeded users as users of long standing are: welcomed in every seeded system
    (model.Welcomed: through the newest system's create_time). Otherwise they keep the
    migration's default, welcomed through the migration's time only, and the first award
    of each would also write its user (the welcome of systems seeded after it), which a
    database that held these users before would never do."""
    conn.execute(
        "UPDATE users SET welcomed = (SELECT '*' || to_char(max(create_time) AT TIME ZONE 'UTC',"
        ' \'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\') FROM points_systems)'
    )


def event_triggers(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """A second system and three ACTIVE EVENT triggers on EVENT_TYPE (two in SYSTEM, one in
    SECOND_SYSTEM), with the configuration's version raised so the server loads them."""
    conn.execute(
        "INSERT INTO points_systems (key, name, description, badge_url, max_points,"
        " level_basis, create_time, update_time)"
        " VALUES (%s, 'Bench coins', '', '', 0, 'BALANCE', now(), now())",
        (SECOND_SYSTEM,),
    )
    for system, points in ((SYSTEM, 10), (SYSTEM, 1), (SECOND_SYSTEM, 5)):
        conn.execute(
            "INSERT INTO triggers (id, system_key, type, points, status, event_type,"
            " metric_threshold, interval_unit, interval_count, event_attributes,"
            " user_attributes, activate_time, version, create_time, update_time)"
            " VALUES (gen_random_uuid()::text, %s, 'EVENT', %s, 'ACTIVE', %s, '0', NULL, 0,"
            " '[]', '[]', now(), 1, now(), now())",
            (system, points, EVENT_TYPE),
        )
    conn.execute("UPDATE config_version SET version = version + 1")


def levels_and_boosts(conn: psycopg.Connection[tuple[object, ...]], users: int) -> None:
    """Four levels in SYSTEM (the summary's); LEVELS_SYSTEM with a level every
    LADDER_STEP points and an empty account for every user (so each award of 10 there
    crosses a threshold); BOOSTED_USERS users in SYSTEM in the cohort of three boosts."""
    level = (
        "INSERT INTO levels (id, system_key, key, name, description, badge_url, points)"
        " VALUES (gen_random_uuid()::text, %s, %s, %s, '', '', %s)"
    )
    for key, points in (("bronze", 0), ("silver", 1000), ("gold", 100_000), ("top", 5_000_000)):
        conn.execute(level, (SYSTEM, key, key.title(), points))
    conn.execute(
        "INSERT INTO points_systems (key, name, description, badge_url, max_points,"
        " level_basis, create_time, update_time)"
        " VALUES (%s, 'Bench levels', '', '', 0, 'BALANCE', now(), now())",
        (LEVELS_SYSTEM,),
    )
    conn.execute(
        "INSERT INTO levels (id, system_key, key, name, description, badge_url, points)"
        " SELECT gen_random_uuid()::text, %s, 'l' || g, 'Level ' || g, '', '', g * %s"
        " FROM generate_series(1, %s) g",
        (LEVELS_SYSTEM, LADDER_STEP, LADDER_LEVELS),
    )
    conn.execute(
        "INSERT INTO accounts (user_id, system_key, balance, total_earned, total_spent,"
        " total_expired, last_earned_time, next_expire_time, create_time, update_time)"
        " SELECT 'u' || lpad(g::text, 6, '0'), %s, 0, 0, 0, 0, NULL, NULL, now(), now()"
        " FROM generate_series(0, %s - 1) g",
        (LEVELS_SYSTEM, users),
    )
    conn.execute(
        "INSERT INTO users (id, display_name, email, attributes, create_time)"
        " SELECT 'b' || lpad(g::text, 6, '0'), '', '', jsonb_build_object(%s::text, %s::text),"
        " now() FROM generate_series(0, %s - 1) g",
        (*COHORT, BOOSTED_USERS),
    )
    add_entries(conn, "'b' || lpad((g %% {users})::text, 6, '0')", BOOSTED_USERS, 1, SPREAD_BALANCE)
    for multiplier in ("2", "1.5", "1.25"):
        conn.execute(
            "INSERT INTO boosts (id, system_key, user_id, name, multiplier, rounding,"
            " start_time, end_time, user_attributes, archive_time, create_time)"
            " VALUES (gen_random_uuid()::text, %s, '', 'bench', %s, 'DOWN',"
            " now() - interval '1 hour', NULL, jsonb_build_array(jsonb_build_array(%s::text,"
            " %s::text)), NULL, now())",
            (SYSTEM, multiplier, *COHORT),
        )
    conn.execute("UPDATE config_version SET version = version + 1")


def add_entries(
    conn: psycopg.Connection[tuple[object, ...]],
    user_sql: str,
    users: int,
    per_user: int,
    amount: int,
) -> int:
    """`per_user` AWARD entries of `amount` for each of `users` users (`user_sql` names
    the user of row g), oldest first, and the accounts to match. Returns the first
    sequence used; the entries take the next `users * per_user` sequence numbers."""
    total = users * per_user
    row = conn.execute("SELECT nextval('ledger_entry_sequence')").fetchone()
    assert row is not None
    first = int(str(row[0]))
    conn.execute("SELECT setval('ledger_entry_sequence', %s)", (first + total,))
    user_expr = user_sql.format(users=users)
    chunk = 500_000
    for start in range(0, total, chunk):
        stop = min(total, start + chunk)
        conn.execute(
            "INSERT INTO ledger_entries (user_id, id, sequence, system_key, type, amount,"
            " base_amount, multiplier, boost_ids, capped, balance_after, reason, metadata,"
            " idempotency_key, trigger_id, event_type, expire_time, reverses_entry_id,"
            " create_time)"
            f" SELECT {user_expr}, gen_random_uuid()::text, %(first)s + g, %(system)s,"
            " 'AWARD', %(amount)s, %(amount)s, '1', '[]', false,"
            " coalesce(a.balance, 0) + %(amount)s * (g / %(users)s + 1), 'seed', '{}', '',"
            " '', '', NULL, NULL,"
            " now() - make_interval(secs => (%(total)s - g) / 1000.0)"
            " FROM generate_series(%(start)s, %(stop)s - 1) g"
            f" LEFT JOIN accounts a ON a.user_id = {user_expr} AND a.system_key = %(system)s",
            {
                "first": first,
                "system": SYSTEM,
                "amount": amount,
                "users": users,
                "total": total,
                "start": start,
                "stop": stop,
            },
        )
    conn.execute(
        "INSERT INTO accounts (user_id, system_key, balance, total_earned, total_spent,"
        " total_expired, last_earned_time, next_expire_time, create_time, update_time)"
        f" SELECT {user_expr}, %(system)s, %(sum)s, %(sum)s, 0, 0, now(), NULL, now(), now()"
        " FROM generate_series(0, %(users)s - 1) g"
        " ON CONFLICT (user_id, system_key) DO UPDATE SET"
        " balance = accounts.balance + excluded.balance,"
        " total_earned = accounts.total_earned + excluded.total_earned",
        {"system": SYSTEM, "sum": amount * per_user, "users": users},
    )
    return first


def big_ledger(conn: psycopg.Connection[tuple[object, ...]], users: int, entries: int) -> float:
    """Grow the ledger by `entries` entries spread over the users; returns seconds taken."""
    started = time.perf_counter()
    add_entries(conn, "'u' || lpad((g %% {users})::text, 6, '0')", users, entries // users, 1)
    conn.execute("VACUUM ANALYZE ledger_entries")
    conn.execute("VACUUM ANALYZE accounts")
    return time.perf_counter() - started


def ledger_state(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[int, int]:
    """(entries, highest sequence): compared before and after a scenario."""
    row = conn.execute("SELECT count(*), coalesce(max(sequence), 0) FROM ledger_entries").fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


def last_sequence(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute("SELECT coalesce(max(sequence), 0) FROM ledger_entries").fetchone()
    assert row is not None
    return int(str(row[0]))


def entries_after(conn: psycopg.Connection[tuple[object, ...]], sequence: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM ledger_entries WHERE sequence > %s", (sequence,)
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def balances_match_ledger(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """The ledger invariant over the whole database: sum of balances == sum of entries."""
    row = conn.execute(
        "SELECT (SELECT coalesce(sum(balance), 0) FROM accounts)"
        " = (SELECT coalesce(sum(amount), 0) FROM ledger_entries)"
    ).fetchone()
    return bool(row and row[0])
