"""Progress bars on stderr (rich): count, rate and ETA; silent when stderr is no terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Rows (or entries) per second, from rich's own moving estimate."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else f"- {self.unit}/s")


def progress_bar(unit: str, *, enabled: bool | None = None, total_known: bool = True) -> Progress:
    if enabled is None:
        enabled = sys.stderr.isatty()
    columns: list[ProgressColumn | str] = [TextColumn("{task.description}")]
    if total_known:
        columns += [BarColumn(), MofNCompleteColumn(), RateColumn(unit), TimeRemainingColumn()]
    else:
        columns += [TextColumn("{task.completed:,} " + unit), RateColumn(unit)]
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=Console(stderr=True), disable=not enabled)
