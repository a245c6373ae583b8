"""How commands show things: JSON on stdout for scripts, rich text for people.

Data a script may read (a result, ``--json`` output, a job id) goes to stdout, alone; messages,
progress and tables meant for people go to stderr or stdout as rich text, never mixed with JSON.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape as escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from contact_exports_client import Progress as ProgressInfo


def stdout() -> Console:
    """A console on stdout, made when used: rich fixes a console's width from ``COLUMNS`` when
    it is made, so one made at import would keep the width of whoever imported it first.
    soft_wrap: long lines (URLs, error messages) stay whole, so they can be copied and grepped."""
    return Console(soft_wrap=True, highlight=False)


def stderr() -> Console:
    """As ``stdout``, on stderr: messages meant for people."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def print_json(data: Any, indent: int | None = 2) -> None:
    """Plain JSON: rich would read ``[...]`` in it as markup."""
    sys.stdout.write(json.dumps(data, indent=indent) + "\n")
    sys.stdout.flush()


def error(message: str, hint: str | None = None) -> None:
    err = stderr()
    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"[dim]hint:[/] {escape(hint)}")


def note(message: str) -> None:
    stderr().print(escape(message))


def when(epoch: str | float | None) -> str:
    """Job records keep epoch seconds; people read UTC ISO 8601."""
    if epoch in (None, ""):
        return ""
    try:
        moment = datetime.fromtimestamp(float(epoch or 0), UTC)
    except (TypeError, ValueError):
        return str(epoch)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def age(epoch: str | float | None, now: float | None = None) -> str:
    if epoch in (None, ""):
        return ""
    seconds = max(0, int((now or time.time()) - float(epoch or 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def size(count: int | str | None) -> str:
    value = float(count or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """Rows keyed by their first column (a job id, an account name): it is never wrapped, so
    it can be copied into the next command whatever the terminal's width; the others fold."""
    grid = Table(title=title, title_justify="left")
    for n, column in enumerate(columns):
        grid.add_column(column, no_wrap=n == 0, overflow="fold")
    for row in rows:
        grid.add_row(*(escape(cell) for cell in row))
    return grid


def fields(title: str, data: Mapping[str, Any]) -> Table:
    """A two-column table of a record's fields."""
    grid = Table(title=title, title_justify="left", show_header=False)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in data.items():
        grid.add_row(escape(name), escape(value if isinstance(value, str) else json.dumps(value)))
    return grid


class ExportProgress:
    """A live bar of one export: stage, percent done, bytes stored so far."""

    def __init__(self, progress: Progress, job_id: str) -> None:
        self._progress = progress
        self._bar: TaskID = progress.add_task(job_id, total=100, stage="queued", size="")

    def __call__(self, info: ProgressInfo) -> None:
        done = int(info.get("bytes") or 0)
        self._progress.update(
            self._bar,
            completed=int(info.get("percent_done") or 0),
            stage=str(info.get("stage") or ""),
            size=size(done) if done else "",
        )

    def finish(self, stage: str) -> None:
        self._progress.update(self._bar, stage=stage)


@contextmanager
def export_progress(job_id: str) -> Iterator[ExportProgress]:
    columns = (
        TextColumn("{task.description}"),
        TextColumn("{task.fields[stage]:<12}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[size]:>9}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr(), transient=False) as progress:
        yield ExportProgress(progress, job_id)
