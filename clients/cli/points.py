"""`tally award|deduct|reverse|balance|history|event|token|watch`: points, one verb per RPC."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from clients.cli.configure import Verbs, moment, pairs
from clients.cli.output import Output, enum_name, message_dict
from clients.tally_client import TallyClient
from tally.v1 import common_pb2


def add_parsers(verbs: Verbs) -> None:
    for name, run, what in (
        ("award", award, "give a user points"),
        ("deduct", deduct, "take points from a user (fails when the balance is short)"),
    ):
        parser = verbs.add_parser(name, help=what)
        parser.add_argument("system")
        parser.add_argument("user")
        parser.add_argument("amount", type=int)
        parser.add_argument("--reason", default="")
        parser.add_argument("--metadata", type=json_object, help="a JSON object")
        parser.add_argument(
            "--idempotency-key", help="repeat a write safely (default: a new key per call)"
        )
        parser.add_argument("--dry-run", action="store_true", help="show the result, write nothing")
        if name == "award":
            parser.add_argument("--expire-time", type=moment, help="the credit expires then")
            parser.add_argument("--skip-boosts", action="store_true")
        parser.set_defaults(run=run)

    reverse = verbs.add_parser("reverse", help="undo an award or a deduction by entry id")
    reverse.add_argument("entry_id")
    reverse.add_argument("--reason", default="")
    reverse.add_argument("--idempotency-key")
    reverse.add_argument("--user", default="", help="the entry's user, where to look for it")
    reverse.set_defaults(run=reverse_entry)

    balance = verbs.add_parser("balance", help="a user's balance, level and recent entries")
    balance.add_argument("system")
    balance.add_argument("user")
    balance.add_argument("--recent", type=int, default=10, help="entries to show (0..100)")
    balance.set_defaults(run=show_balance)

    history = verbs.add_parser("history", help="a user's ledger entries, oldest first")
    history.add_argument("system")
    history.add_argument("user")
    history.add_argument("--start", type=moment, help="ISO 8601")
    history.add_argument("--end", type=moment, help="ISO 8601")
    history.set_defaults(run=show_history)

    event = verbs.add_parser("event", help="record what a user did; matching triggers run")
    event.add_argument("user")
    event.add_argument("event_type")
    event.add_argument("--value", type=float, help="default 1")
    event.add_argument("--attribute", action="append", metavar="KEY=VALUE")
    event.add_argument("--idempotency-key")
    event.add_argument("--dry-run", action="store_true")
    event.set_defaults(run=record_event)

    token = verbs.add_parser("token", help="a user token for one user's front end")
    token.add_argument("user")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")
    token.set_defaults(run=user_token)

    watch = verbs.add_parser(
        "watch", help="follow the ledger: one JSON line per entry, resumed across restarts"
    )
    watch.add_argument("--system", default="", help="one system (default all)")
    watch.add_argument("--after-sequence", type=int, default=0, help="resume after this one")
    watch.add_argument("--no-follow", action="store_true", help="stop at the last entry")
    watch.set_defaults(run=watch_ledger)


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


ENTRY_COLUMNS = ("seq", "time", "type", "amount", "balance after", "reason", "id")


def entry_row(e: common_pb2.LedgerEntry) -> list[Any]:
    return [
        e.sequence,
        e.create_time,
        enum_name("ENTRY_TYPE_", common_pb2.EntryType.Name(e.type)),
        f"{e.amount:+d}",
        e.balance_after,
        e.reason,
        e.id,
    ]


def show_write(response: Any, out: Output, dry_run: bool = False) -> int:
    if out.as_json:
        out.json_line(response)
        return 0
    entry, balance = response.entry, response.balance
    said = "would write" if dry_run else ("replayed" if response.replayed else "wrote")
    out.console.print(
        f"{said} {enum_name('ENTRY_TYPE_', common_pb2.EntryType.Name(entry.type))} "
        f"{entry.amount:+d} for {balance.user_id} in {balance.system_key}: balance "
        f"{balance.balance} (entry {entry.id or '-'})"
    )
    if entry.multiplier not in (0, 1):
        out.console.print(f"  {entry.base_amount} x{entry.multiplier:g} by boosts")
    if entry.capped:
        out.console.print("  capped by the system's max_points")
    if response.HasField("level_change"):
        change = response.level_change
        before = change.previous_level.key if change.HasField("previous_level") else "(none)"
        after = change.new_level.key if change.HasField("new_level") else "(none)"
        out.console.print(f"  level {before} -> {after}")
    return 0


def award(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    response = client.award(
        args.system,
        args.user,
        args.amount,
        reason=args.reason,
        metadata=args.metadata,
        idempotency_key=args.idempotency_key,
        expire_time=args.expire_time,
        skip_boosts=args.skip_boosts,
        validate_only=args.dry_run,
    )
    return show_write(response, out, args.dry_run)


def deduct(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    response = client.deduct(
        args.system,
        args.user,
        args.amount,
        reason=args.reason,
        metadata=args.metadata,
        idempotency_key=args.idempotency_key,
        validate_only=args.dry_run,
    )
    return show_write(response, out, args.dry_run)


def reverse_entry(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    response = client.reverse(
        args.entry_id, reason=args.reason, idempotency_key=args.idempotency_key, user_id=args.user
    )
    return show_write(response, out)


def show_balance(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    got = client.get_balance(args.system, args.user, recent_entries=args.recent)
    if out.as_json:
        out.json_line(got)
        return 0
    b = got.balance
    out.fields(
        f"{args.user} in {args.system}",
        [
            ("balance", b.balance),
            ("earned", b.total_earned),
            ("spent", b.total_spent),
            ("expired", b.total_expired),
            ("level", b.level.key if b.HasField("level") else "(none)"),
            ("next level", got.next_level.key if got.HasField("next_level") else ""),
            ("last earned", b.last_earned_time),
        ],
    )
    if got.recent:
        out.table("recent entries", ENTRY_COLUMNS, (entry_row(e) for e in got.recent))
    return 0


def show_history(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    entries = client.history(args.system, args.user, start_time=args.start, end_time=args.end)
    if out.as_json:
        out.messages(entries)
    else:
        out.table(f"{args.user} in {args.system}", ENTRY_COLUMNS, map(entry_row, entries))
    return 0


def record_event(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    got = client.record_event(
        args.user,
        args.event_type,
        value=args.value,
        attributes=pairs(args.attribute, "--attribute"),
        idempotency_key=args.idempotency_key,
        validate_only=args.dry_run,
    )
    if out.as_json:
        out.json_line(got)
        return 0
    rows = [
        [key, f"{r.added:+d}", r.balance.balance, ", ".join(a.trigger.id for a in r.awards)]
        for key, r in sorted(got.results.items())
    ]
    out.table(
        f"event {args.event_type} of {args.user} (total {got.metric_total:g})"
        + (" replayed" if got.replayed else ""),
        ("system", "added", "balance", "triggers"),
        rows,
    )
    return 0


def user_token(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    made = client.create_user_token(args.user, timedelta(seconds=args.ttl))
    if out.as_json:
        out.json_line(made)
    else:
        out.console.print(made.token)
    return 0


def watch_ledger(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    """Always JSON lines (a watch feeds other programs); resumes with --after-sequence."""
    entries = client.watch_ledger(
        args.system,
        after_sequence=args.after_sequence,
        follow=not args.no_follow,
        give_up_after=None,
    )
    for entry in entries:
        sys.stdout.write(json.dumps(message_dict(entry), separators=(",", ":")) + "\n")
        sys.stdout.flush()
    return 0
