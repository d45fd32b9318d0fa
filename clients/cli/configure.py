"""`tally systems|triggers|levels|boosts ...`: configuration, one sub-verb per RPC."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from clients.cli.output import Output, enum_name
from clients.tally_client import TallyClient
from tally.v1 import boosts_pb2, common_pb2, points_pb2

Verbs = Any  # argparse's _SubParsersAction, which is private


def add_parsers(verbs: Verbs) -> None:
    _systems(verbs)
    _triggers(verbs)
    _levels(verbs)
    _boosts(verbs)


def pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """KEY=VALUE flags as a dict."""
    found: dict[str, str] = {}
    for value in values or ():
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{flag} takes KEY=VALUE, not {value!r}")
        found[key] = rest
    return found


def moment(text: str) -> datetime:
    """An ISO 8601 time (a trailing Z is UTC)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


# -- systems -----------------------------------------------------------------------------

LEVEL_BASES = {
    "balance": points_pb2.LEVEL_BASIS_BALANCE,
    "lifetime": points_pb2.LEVEL_BASIS_LIFETIME_EARNED,
}


def _systems(verbs: Verbs) -> None:
    systems = verbs.add_parser("systems", help="list, show, create or update points systems")
    sub = systems.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="every system the key may see")
    listing.set_defaults(run=systems_list)
    get = sub.add_parser("get", help="one system with its triggers")
    get.add_argument("key")
    get.set_defaults(run=systems_get)
    for name, run, what in (
        ("create", systems_create, "make a system"),
        ("update", systems_update, "change the fields given (the key is immutable)"),
    ):
        parser = sub.add_parser(name, help=what)
        parser.add_argument("key", help="1-64 of [a-z0-9_-]")
        parser.add_argument("--name")
        parser.add_argument("--description")
        parser.add_argument("--badge-url")
        parser.add_argument("--max-points", type=int, help="cap on a balance (0 = none)")
        parser.add_argument("--level-basis", choices=sorted(LEVEL_BASES))
        parser.set_defaults(run=run)


def _system_row(s: points_pb2.PointsSystem) -> list[Any]:
    basis = enum_name("LEVEL_BASIS_", points_pb2.LevelBasis.Name(s.level_basis))
    return [s.key, s.name, s.max_points or "", basis, s.create_time]


SYSTEM_COLUMNS = ("key", "name", "max points", "level basis", "created")


def systems_list(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    found = list(client.list_systems())
    if out.as_json:
        out.messages(found)
    else:
        out.table("systems", SYSTEM_COLUMNS, (_system_row(s) for s in found))
    return 0


def show_system(system: points_pb2.PointsSystem, out: Output) -> None:
    if out.as_json:
        out.json_line(system)
        return
    out.table(f"system {system.key}", SYSTEM_COLUMNS, [_system_row(system)])
    if system.triggers:
        show_triggers(list(system.triggers), out)


def systems_get(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    show_system(client.get_system(args.key), out)
    return 0


def _system_fields(args: argparse.Namespace) -> tuple[points_pb2.PointsSystem, list[str]]:
    system = points_pb2.PointsSystem(key=args.key)
    paths = []
    for flag, path in (
        ("name", "name"),
        ("description", "description"),
        ("badge_url", "badge_url"),
        ("max_points", "max_points"),
    ):
        value = getattr(args, flag)
        if value is not None:
            setattr(system, path, value)
            paths.append(path)
    if args.level_basis is not None:
        system.level_basis = LEVEL_BASES[args.level_basis]
        paths.append("level_basis")
    return system, paths


def systems_create(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    made = client.create_system(
        args.key,
        args.name or "",
        description=args.description or "",
        badge_url=args.badge_url or "",
        max_points=args.max_points or 0,
        level_basis=LEVEL_BASES.get(args.level_basis, points_pb2.LEVEL_BASIS_UNSPECIFIED),
    )
    show_system(made, out)
    return 0


def systems_update(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    system, paths = _system_fields(args)
    if not paths:
        raise SystemExit("tally systems update: give at least one field to change")
    show_system(client.update_system(system, paths), out)
    return 0


# -- triggers ----------------------------------------------------------------------------

TRIGGER_TYPES = {
    "event": points_pb2.TRIGGER_TYPE_EVENT,
    "metric": points_pb2.TRIGGER_TYPE_METRIC,
    "user-identified": points_pb2.TRIGGER_TYPE_USER_IDENTIFIED,
    "time-interval": points_pb2.TRIGGER_TYPE_TIME_INTERVAL,
}
INTERVAL_UNITS = {
    "minutes": points_pb2.INTERVAL_UNIT_MINUTES,
    "hours": points_pb2.INTERVAL_UNIT_HOURS,
    "days": points_pb2.INTERVAL_UNIT_DAYS,
}
TRIGGER_STATUSES = {
    "activate": points_pb2.TRIGGER_STATUS_ACTIVE,
    "deactivate": points_pb2.TRIGGER_STATUS_INACTIVE,
    "archive": points_pb2.TRIGGER_STATUS_ARCHIVED,
}


def _triggers(verbs: Verbs) -> None:
    triggers = verbs.add_parser("triggers", help="list, create, activate or archive triggers")
    sub = triggers.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="a system's triggers")
    listing.add_argument("system")
    listing.set_defaults(run=triggers_list)
    create = sub.add_parser("create", help="add a trigger (inactive unless --active)")
    create.add_argument("system")
    create.add_argument("--type", required=True, choices=list(TRIGGER_TYPES))
    create.add_argument("--points", required=True, type=int, help="negative deducts")
    create.add_argument("--event-type", default="", help="EVENT and METRIC")
    create.add_argument("--threshold", type=float, default=0.0, help="METRIC: units per firing")
    create.add_argument("--every", type=int, default=0, help="TIME_INTERVAL: interval count")
    create.add_argument("--unit", choices=list(INTERVAL_UNITS), help="TIME_INTERVAL unit")
    create.add_argument("--event-attribute", action="append", metavar="KEY=VALUE")
    create.add_argument("--user-attribute", action="append", metavar="KEY=VALUE")
    create.add_argument("--active", action="store_true", help="active at once")
    create.set_defaults(run=triggers_create)
    for action in TRIGGER_STATUSES:
        parser = sub.add_parser(action, help=f"{action} a trigger by id")
        parser.add_argument("id")
        parser.set_defaults(run=triggers_status, status=TRIGGER_STATUSES[action])


def show_triggers(found: list[points_pb2.Trigger], out: Output) -> None:
    if out.as_json:
        out.messages(found)
        return
    rows = []
    for t in found:
        what = t.event_type
        if t.type == points_pb2.TRIGGER_TYPE_METRIC:
            what = f"{t.event_type} every {t.metric_threshold:g}"
        elif t.type == points_pb2.TRIGGER_TYPE_TIME_INTERVAL:
            unit = enum_name("INTERVAL_UNIT_", points_pb2.IntervalUnit.Name(t.interval_unit))
            what = f"every {t.interval_count} {unit}"
        rows.append(
            [
                t.id,
                enum_name("TRIGGER_TYPE_", points_pb2.TriggerType.Name(t.type)),
                what,
                t.points,
                enum_name("TRIGGER_STATUS_", points_pb2.TriggerStatus.Name(t.status)),
            ]
        )
    out.table("triggers", ("id", "type", "on", "points", "status"), rows)


def triggers_list(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    show_triggers(client.list_triggers(args.system), out)
    return 0


def triggers_create(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    trigger = points_pb2.Trigger(
        type=TRIGGER_TYPES[args.type],
        points=args.points,
        event_type=args.event_type,
        metric_threshold=args.threshold,
        interval_count=args.every,
        interval_unit=INTERVAL_UNITS[args.unit]
        if args.unit
        else points_pb2.INTERVAL_UNIT_UNSPECIFIED,
        event_attributes=[
            common_pb2.Attribute(key=k, value=v)
            for k, v in pairs(args.event_attribute, "--event-attribute").items()
        ],
        user_attributes=[
            common_pb2.Attribute(key=k, value=v)
            for k, v in pairs(args.user_attribute, "--user-attribute").items()
        ],
        status=(
            points_pb2.TRIGGER_STATUS_ACTIVE
            if args.active
            else points_pb2.TRIGGER_STATUS_UNSPECIFIED
        ),
    )
    show_triggers([client.create_trigger(args.system, trigger)], out)
    return 0


def triggers_status(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    show_triggers([client.set_trigger_status(args.id, args.status)], out)
    return 0


# -- levels ------------------------------------------------------------------------------


def _levels(verbs: Verbs) -> None:
    levels = verbs.add_parser("levels", help="list, create or delete levels; a user's level")
    sub = levels.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="a system's levels by threshold")
    listing.add_argument("system")
    listing.set_defaults(run=levels_list)
    create = sub.add_parser("create", help="add a level at a threshold")
    create.add_argument("system")
    create.add_argument("key")
    create.add_argument("--points", required=True, type=int, help="threshold (>= 0)")
    create.add_argument("--name", default="")
    create.add_argument("--description", default="")
    create.set_defaults(run=levels_create)
    delete = sub.add_parser("delete", help="remove a level")
    delete.add_argument("system")
    delete.add_argument("key")
    delete.set_defaults(run=levels_delete)
    user = sub.add_parser("user", help="a user's level and progress to the next")
    user.add_argument("system")
    user.add_argument("user")
    user.set_defaults(run=levels_user)
    summary = sub.add_parser("summary", help="how many users hold each level")
    summary.add_argument("system")
    summary.set_defaults(run=levels_summary)


def show_levels(found: list[common_pb2.Level], out: Output) -> None:
    if out.as_json:
        out.messages(found)
    else:
        out.table("levels", ("key", "name", "points"), ([v.key, v.name, v.points] for v in found))


def levels_list(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    show_levels(client.list_levels(args.system), out)
    return 0


def levels_create(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    made = client.create_level(
        args.system, args.key, args.points, name=args.name, description=args.description
    )
    show_levels([made], out)
    return 0


def levels_delete(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    client.delete_level(args.system, args.key)
    if out.as_json:
        out.json_line({"deleted": args.key})
    else:
        out.console.print(f"deleted level {args.key} of {args.system}")
    return 0


def levels_user(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    got = client.get_user_level(args.system, args.user)
    if out.as_json:
        out.json_line(got)
        return 0
    out.fields(
        f"{args.user} in {args.system}",
        [
            ("level", got.level.key if got.HasField("level") else "(none)"),
            ("points", got.points),
            ("next level", got.next_level.key if got.HasField("next_level") else "(top)"),
            ("points to next", got.points_to_next),
            ("progress", f"{got.progress:.0%}"),
        ],
    )
    return 0


def levels_summary(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    got = client.level_summary(args.system)
    if out.as_json:
        out.json_line(got)
        return 0
    rows = [[c.level.key, c.level.points, c.users] for c in got.levels]
    rows.append(["(no level)", "", got.users_without_level])
    out.table(f"levels of {args.system}", ("level", "points", "users"), rows)
    return 0


# -- boosts ------------------------------------------------------------------------------

ROUNDINGS = {
    "down": boosts_pb2.ROUNDING_DOWN,
    "up": boosts_pb2.ROUNDING_UP,
    "nearest": boosts_pb2.ROUNDING_NEAREST,
}


def _boosts(verbs: Verbs) -> None:
    boosts = verbs.add_parser("boosts", help="list, create or archive boosts; a multiplier")
    sub = boosts.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="a system's boosts")
    listing.add_argument("system")
    listing.add_argument("--user", default="", help="only this user's")
    listing.set_defaults(run=boosts_list)
    create = sub.add_parser("create", help="add a boost (global unless --user)")
    create.add_argument("system")
    create.add_argument("--multiplier", required=True, type=float)
    create.add_argument("--user", default="", help="one user (empty = everyone)")
    create.add_argument("--name", default="")
    create.add_argument("--rounding", choices=list(ROUNDINGS), default="down")
    create.add_argument("--start", type=moment, help="ISO 8601 (default now)")
    create.add_argument("--end", type=moment, help="ISO 8601 (default open-ended)")
    create.add_argument("--user-attribute", action="append", metavar="KEY=VALUE")
    create.set_defaults(run=boosts_create)
    archive = sub.add_parser("archive", help="stop a boost at once")
    archive.add_argument("id")
    archive.set_defaults(run=boosts_archive)
    multiplier = sub.add_parser("multiplier", help="what multiplies a user's awards now")
    multiplier.add_argument("system")
    multiplier.add_argument("user")
    multiplier.set_defaults(run=boosts_multiplier)


def show_boosts(found: list[boosts_pb2.Boost], out: Output) -> None:
    if out.as_json:
        out.messages(found)
        return
    rows = [
        [
            b.id,
            b.user_id or "(everyone)",
            b.name,
            b.multiplier,
            enum_name("BOOST_STATUS_", boosts_pb2.BoostStatus.Name(b.status)),
            b.start_time,
            b.end_time,
        ]
        for b in found
    ]
    out.table("boosts", ("id", "user", "name", "x", "status", "start", "end"), rows)


def boosts_list(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    show_boosts(list(client.list_boosts(args.system, user_id=args.user)), out)
    return 0


def boosts_create(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    boost = boosts_pb2.Boost(
        user_id=args.user,
        name=args.name,
        multiplier=args.multiplier,
        rounding=ROUNDINGS[args.rounding],
        user_attributes=[
            common_pb2.Attribute(key=k, value=v)
            for k, v in pairs(args.user_attribute, "--user-attribute").items()
        ],
    )
    if args.start:
        boost.start_time.FromDatetime(args.start)
    if args.end:
        boost.end_time.FromDatetime(args.end)
    made = client.create_boosts(args.system, [boost])
    if out.as_json:
        out.json_line(made)
    else:
        show_boosts(list(made.created), out)
        for issue in made.issues:
            out.console.print(f"rejected: {issue.message}")
    return 1 if made.issues and not made.created else 0


def boosts_archive(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    show_boosts([client.archive_boost(args.id)], out)
    return 0


def boosts_multiplier(client: TallyClient, args: argparse.Namespace, out: Output) -> int:
    got = client.get_multiplier(args.system, args.user)
    if out.as_json:
        out.json_line(got)
        return 0
    out.console.print(f"x{got.multiplier:g} for {args.user} in {args.system}")
    if got.boosts:
        show_boosts(list(got.boosts), out)
    return 0
