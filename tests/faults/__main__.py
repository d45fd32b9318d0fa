"""The fault suite's full form: `python -m tests.faults [SCENARIO ...] [--calls N] [--json]`.

Runs each scenario (all by default) with more writes than the short form in the test
command, then prints one table (writes attempted, acknowledged, found in the ledger,
duplicates, lost, invariant checks passed) and each failed check; `--json` prints one JSON
document instead. Exit status 1 when any scenario failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace

from tests.faults.scenarios import FULL, SCENARIOS, Report, execute

COLUMNS = (
    ("scenario", 16),
    ("store", 10),
    ("calls", 6),
    ("attempted", 9),
    ("acked", 6),
    ("refused", 7),
    ("found", 6),
    ("dupes", 5),
    ("lost", 4),
    ("replayed", 8),
    ("in flight", 9),
    ("checks", 7),
    ("result", 6),
)


FIGURES = ("attempted", "acknowledged", "refused", "found", "duplicates", "lost", "replayed")


def row(report: Report) -> list[str]:
    figures = report.figures
    counted = [str(getattr(figures, name)) for name in FIGURES] if figures else ["-"] * 7
    in_flight = report.notes.get("in_flight_at_fault", "-")
    if isinstance(in_flight, list):  # one per fault
        in_flight = ",".join(str(n) for n in in_flight)
    total = sum(1 for c in report.checks if c.passed is not None)
    return [
        report.scenario,
        report.store,
        str(report.calls),
        *counted,
        str(in_flight),
        f"{report.passed()}/{total}",
        "PASS" if report.ok else "FAIL",
    ]


def table(reports: Sequence[Report]) -> str:
    lines = [
        "  ".join(
            name.rjust(width) if i > 1 else name.ljust(width)
            for i, (name, width) in enumerate(COLUMNS)
        )
    ]
    for report in reports:
        cells = row(report)
        lines.append(
            "  ".join(
                cell.rjust(width) if i > 1 else cell.ljust(width)
                for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
            )
        )
    lines.append("")
    for report in reports:
        lines.append(f"{report.scenario}: {report.title} ({report.store}), {report.seconds:.1f} s")
        notes = {k: v for k, v in report.notes.items() if k not in ("in_flight_at_fault",)}
        for key, value in notes.items():
            lines.append(f"  {key.replace('_', ' ')}: {value}")
        for check in report.checks:
            mark = {True: "ok  ", False: "FAIL", None: "skip"}[check.passed]
            detail = f" ({check.detail})" if check.detail and check.passed is not True else ""
            lines.append(f"  {mark} {check.name}{detail}")
        if report.error:
            lines.append(f"  ERROR {report.error}")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--calls", type=int, default=FULL.calls, help=f"calls per scenario (default {FULL.calls})"
    )
    parser.add_argument(
        "--time-limit", type=float, default=FULL.time_limit, help="seconds per scenario"
    )
    parser.add_argument(
        "--faults",
        type=int,
        default=FULL.faults,
        help=f"faults per scenario (default {FULL.faults})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document, for programs")
    args = parser.parse_args(argv)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    size = replace(FULL, calls=args.calls, time_limit=args.time_limit, faults=args.faults)
    reports = []
    for name in args.scenarios or list(SCENARIOS):
        if not args.json:
            print(f"running {name} ({size.calls} calls) ...", file=sys.stderr, flush=True)
        reports.append(execute(name, size))
    if args.json:
        print(
            json.dumps(
                {"ok": all(r.ok for r in reports), "scenarios": [r.as_json() for r in reports]},
                indent=2,
            )
        )
    else:
        print(table(reports))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
