"""What a scenario checks once its writes are answered: the store against itself (the
invariants of a ledger), the store against what the clients were told, and
`tally-server verify`.

Read with plain SQL, after the server has stopped or while it runs: each check names
what it compared and, when it failed, the first few offenders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import create_engine, text

from tests.faults.load import SYSTEM, Write
from tests.faults.processes import clean_env

# Refusals a writer may be given: the rest mean the load itself was wrong.
EXPECTED_REFUSALS = {"INSUFFICIENT_POINTS", "USER_NOT_FOUND"}
SHOWN = 5  # offenders quoted per failed check


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: skipped (detail says why)
    detail: str = ""


def check(name: str, offenders: Sequence[object], what: str = "") -> Check:
    """Passed when there are no offenders; else the count and the first few."""
    if not offenders:
        return Check(name, True, what)
    shown = "; ".join(str(o) for o in offenders[:SHOWN])
    return Check(name, False, f"{len(offenders)}: {shown}")


@dataclass(frozen=True)
class Entry:
    user_id: str
    system_key: str
    id: str
    sequence: int
    type: str
    amount: int
    balance_after: int
    idempotency_key: str


@dataclass(frozen=True)
class Account:
    user_id: str
    system_key: str
    balance: int
    total_earned: int
    total_spent: int
    total_expired: int
    award_entries: int
    deduct_entries: int
    expire_entries: int
    reversal_entries: int


@dataclass(frozen=True)
class Ledger:
    """The rows the checks read."""

    entries: list[Entry]
    accounts: list[Account]
    events: list[tuple[str, str]]  # (user_id, id)
    keys: list[tuple[str, str, str]]  # (user_id, scope, key)


def read(url: str) -> Ledger:
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            entries = [
                Entry(*row)
                for row in db.execute(
                    text(
                        "SELECT user_id, system_key, id, sequence, type, amount, balance_after,"
                        " idempotency_key FROM ledger_entries ORDER BY sequence"
                    )
                )
            ]
            accounts = [
                Account(*row)
                for row in db.execute(
                    text(
                        "SELECT user_id, system_key, balance, total_earned, total_spent,"
                        " total_expired, award_entries, deduct_entries, expire_entries,"
                        " reversal_entries FROM accounts"
                    )
                )
            ]
            events = [(u, i) for u, i in db.execute(text("SELECT user_id, id FROM events"))]
            keys = [
                (u, s, k)
                for u, s, k in db.execute(text("SELECT user_id, scope, key FROM idempotency_keys"))
            ]
    finally:
        engine.dispose()
    return Ledger(entries, accounts, events, keys)


def invariants(ledger: Ledger) -> list[Check]:
    """The store agrees with itself: every account is the sum of its entries."""
    by_account: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for entry in ledger.entries:  # in sequence order
        by_account[(entry.user_id, entry.system_key)].append(entry)
    accounts = {(a.user_id, a.system_key): a for a in ledger.accounts}
    sums, chains, totals, counts = [], [], [], []
    for where, account in sorted(accounts.items()):
        entries = by_account.get(where, [])
        total = sum(e.amount for e in entries)
        if account.balance != total:
            sums.append(f"{where}: balance {account.balance}, entries sum to {total}")
        running = 0
        for entry in entries:
            running += entry.amount
            if entry.balance_after != running:
                chains.append(
                    f"{where} entry {entry.sequence}: after {entry.balance_after} != {running}"
                )
                break
        by_type = Counter[str]()
        amounts = Counter[str]()
        for entry in entries:
            by_type[entry.type] += 1
            amounts[entry.type] += entry.amount
        if by_type["REVERSAL"] == 0 and (
            account.total_earned,
            account.total_spent,
            account.total_expired,
        ) != (amounts["AWARD"], -amounts["DEDUCT"], -amounts["EXPIRE"]):
            totals.append(
                f"{where}: earned/spent/expired {account.total_earned}/{account.total_spent}/"
                f"{account.total_expired}, entries {amounts['AWARD']}/{-amounts['DEDUCT']}/"
                f"{-amounts['EXPIRE']}"
            )
        kept = (
            account.award_entries,
            account.deduct_entries,
            account.expire_entries,
            account.reversal_entries,
        )
        found = (by_type["AWARD"], by_type["DEDUCT"], by_type["EXPIRE"], by_type["REVERSAL"])
        if kept != found:
            counts.append(f"{where}: counts {kept}, entries {found}")
    orphans = sorted(set(by_account) - set(accounts))
    negative = [
        f"{(a.user_id, a.system_key)}: {a.balance}" for a in ledger.accounts if a.balance < 0
    ]
    negative += [
        f"entry {e.sequence}: after {e.balance_after}"
        for e in ledger.entries
        if e.balance_after < 0
    ]
    ids = Counter(e.id for e in ledger.entries)
    sequences = Counter(e.sequence for e in ledger.entries)
    repeated = [f"id {i} x{n}" for i, n in ids.items() if n > 1]
    repeated += [f"sequence {s} x{n}" for s, n in sequences.items() if n > 1]
    return [
        check("balance == sum(ledger) per account", sums),
        check("balance_after runs through each account in sequence order", chains),
        check("totals (earned, spent, expired) agree with the entries", totals),
        check("entry counts agree with the entries", counts),
        check("every entry belongs to an account", orphans),
        check("no negative balance", negative),
        check("entry ids and sequences are unique", repeated),
    ]


@dataclass(frozen=True)
class Figures:
    """A scenario's writes (one idempotency key each), counted."""

    attempted: int
    acknowledged: int
    refused: int
    unresolved: int
    found: int  # acknowledged writes whose entries are all in the ledger, once
    duplicates: int  # entries beyond the one(s) each key was told of
    lost: int  # acknowledged writes with an entry missing
    unexplained: int  # entries of keys no client was told were written
    replayed: int  # acknowledged by a replay: committed before the answer was lost


def against_clients(ledger: Ledger, writes: Sequence[Write]) -> tuple[Figures, list[Check]]:
    """The store against what the clients were told, key by key."""
    by_key: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    by_id: dict[str, list[Entry]] = defaultdict(list)
    for entry in ledger.entries:
        by_key[(entry.user_id, entry.idempotency_key)].append(entry)
        by_id[entry.id].append(entry)
    acked = [w for w in writes if w.status == "acked"]
    refused = [w for w in writes if w.status == "refused"]
    unresolved = [w for w in writes if w.status not in ("acked", "refused")]
    told = {(w.user_id, w.key): w for w in acked}
    lost, wrong = [], []
    lost_writes: set[str] = set()
    for write in acked:
        for entry_id, amount in write.entries:
            found = by_id.get(entry_id, [])
            if len(found) != 1:
                lost.append(f"{write.kind} {write.key}: entry {entry_id} x{len(found)}")
                lost_writes.add(write.key)
            elif (found[0].user_id, found[0].idempotency_key, found[0].amount) != (
                write.user_id,
                write.key,
                amount,
            ):
                wrong.append(f"{write.key}: told {amount}, ledger {found[0]}")
    surplus = {
        key: len(entries) - len(told[key].entries)
        for key, entries in by_key.items()
        if key in told and len(entries) > len(told[key].entries)
    }
    duplicates = [f"{key}: {n} more than told" for key, n in surplus.items()]
    refused_keys = {(w.user_id, w.key) for w in refused}
    refused_written = [f"{w.key} ({w.reason})" for w in refused if (w.user_id, w.key) in by_key]
    unexplained = [
        f"{key}: {len(entries)}"
        for key, entries in by_key.items()
        if key not in told and key not in refused_keys
    ]
    odd_refusals = [
        f"{w.kind} {w.key}: {w.reason}" for w in refused if w.reason not in EXPECTED_REFUSALS
    ]
    told_balance: Counter[str] = Counter()
    for write in acked:
        told_balance[write.user_id] += sum(amount for _, amount in write.entries)
    stored = {a.user_id: a.balance for a in ledger.accounts if a.system_key == SYSTEM}
    balances = [
        f"{user}: told {told_balance[user]}, stored {stored.get(user, 0)}"
        for user in sorted(set(told_balance) | set(stored))
        if told_balance[user] != stored.get(user, 0)
    ]
    events = Counter(ledger.events)
    told_events = [(w.user_id, w.event_id) for w in acked if w.kind == "event"]
    event_problems = [f"event {e} x{events[e]}" for e in told_events if events[e] != 1]
    event_problems += [f"event {e} never acknowledged" for e in set(events) - set(told_events)]
    keys = Counter((u, k) for u, _, k in ledger.keys)
    key_problems = [
        f"{w.key} x{keys[(w.user_id, w.key)]}" for w in acked if keys[(w.user_id, w.key)] != 1
    ]
    key_problems += [f"{k} kept, never acknowledged" for k in set(keys) - set(told)]
    figures = Figures(
        attempted=len(writes),
        acknowledged=len(acked),
        refused=len(refused),
        unresolved=len(unresolved),
        found=len(acked) - len(lost_writes),
        duplicates=sum(surplus.values()),
        lost=len(lost_writes),
        unexplained=sum(len(by_key[k]) for k in by_key if k not in told),
        replayed=sum(1 for w in acked if w.replayed),
    )
    checks = [
        check("every write got a definite answer", [f"{w.kind} {w.key}" for w in unresolved]),
        check("every acknowledged entry is in the ledger exactly once", lost),
        check("acknowledged entries are as told (user, key, amount)", wrong),
        check("no key has more entries than its caller was told of", duplicates),
        check("nothing refused is in the ledger", refused_written),
        check("no entry that no caller was told of", unexplained),
        check("refusals are only INSUFFICIENT_POINTS / USER_NOT_FOUND", odd_refusals),
        check("each balance == what its callers were told", balances),
        check("each acknowledged event is recorded once, and no other", event_problems),
        check("each acknowledged key is kept once, and no other", key_problems),
    ]
    return figures, checks


VERIFY_KEYS = {"accounts", "entries", "differences", "ok"}


def verify(url: str) -> Check:
    """`tally-server verify --database-url URL --json`: exit 0 and `ok`, no differences.
    Skipped (with a message) where the subcommand does not exist yet."""
    name = "tally-server verify --json"
    done = subprocess.run(
        [sys.executable, "-m", "server", "verify", "--database-url", url, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=clean_env(),
    )
    if done.returncode == 2 and "invalid choice" in done.stderr:
        return Check(name, None, "skipped: this tally-server has no `verify` subcommand yet")
    try:
        report: Any = json.loads(done.stdout)
    except ValueError:
        return Check(
            name,
            False,
            f"exit {done.returncode}, not JSON: {done.stdout[:300]!r} {done.stderr[-300:]!r}",
        )
    if not isinstance(report, dict) or not set(report) >= VERIFY_KEYS:
        return Check(name, False, f"JSON without {sorted(VERIFY_KEYS)}: {done.stdout[:300]}")
    differences = report["differences"]
    passed = done.returncode == 0 and report["ok"] is True and not differences
    detail = f"exit {done.returncode}, {report['accounts']} accounts, {report['entries']} entries"
    if not passed:
        detail += f", differences: {json.dumps(differences)[:500]}"
    return Check(name, passed, detail)


def as_json(checks: Iterable[Check]) -> list[dict[str, Any]]:
    return [asdict(c) for c in checks]
