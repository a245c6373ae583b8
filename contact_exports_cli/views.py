"""What people see of jobs, dead letters and doctor checks (scripts get JSON instead)."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from contact_exports_cli import render
from contact_exports_cli.doctor import Check, Outcome
from contact_exports_cli.jobs import JobView, progress_of

#: The record's fields in the order people look for them; others follow, sorted.
STATUS_ORDER = (
    "account",
    "bucket",
    "key",
    "created_at",
    "updated_at",
    "deadline",
    "finished_at",
    "last_step",
    "failed_step",
    "error_type",
    "error_message",
    "reruns",
    "activity_id",
)
#: How each doctor outcome is shown, padded to one width so the check names line up.
MARKS = {
    Outcome.OK: ("ok", "green"),
    Outcome.WARNING: ("warning", "yellow"),
    Outcome.PROBLEM: ("PROBLEM", "red"),
    Outcome.UNREACHABLE: ("UNREACHABLE", "red"),
}
MARK_WIDTH = max(len(label) for label, _ in MARKS.values()) + 1


def job(view: JobView) -> RenderableType:
    record = view.record
    shown = {"state": record.get("state", "(no record)"), "celery": view.celery.state}
    progress = progress_of(view.celery)
    if progress:
        done = f", {render.size(progress['bytes'])}" if progress.get("bytes") else ""
        shown["progress"] = f"{progress.get('stage')} {progress.get('percent_done', 0)}%{done}"
    rest = sorted(set(record) - set(STATUS_ORDER) - {"state", "kwargs", "result", "seal"})
    for name in (*STATUS_ORDER, *rest):
        if name in record:
            timed = name.endswith("_at") or name == "deadline"
            shown[name] = render.when(record[name]) if timed else record[name]
    if "result" in record:
        result = json.loads(record["result"])
        shown["result"] = f"{result['uri']} ({render.size(result['bytes'])}, {result['rows']} rows)"
    if "seal" in record:
        shown["seal"] = "owed: the object's sha256 metadata is still to be added"
    if "kwargs" in record:
        shown["request"] = record["kwargs"]
    return render.fields(f"job {view.job_id}", shown)


def in_flight(rows: list[dict[str, Any]]) -> RenderableType:
    now = time.time()
    return render.table(
        f"jobs in flight: {len(rows)}",
        ["job", "account", "stage", "done", "bytes", "attempts", "age", "last change"],
        [
            [
                row["job_id"],
                row["account"],
                row["stage"],
                f"{row['percent_done']}%",
                render.size(row["bytes"]) if row["bytes"] else "",
                str(row["attempts"]),
                render.age(row["created_at"], now),
                render.age(row["updated_at"], now) + " ago",
            ]
            for row in rows
        ],
    )


def jobs(rows: list[dict[str, Any]]) -> RenderableType:
    now = time.time()
    return render.table(
        f"jobs: {len(rows)}",
        ["job", "state", "account", "format", "key", "rows", "age"],
        [
            [
                row["job_id"],
                row["state"],
                row["account"],
                row["format"],
                row["key"],
                "" if row["rows"] is None else str(row["rows"]),
                render.age(row["created_at"], now),
            ]
            for row in rows
        ],
    )


def dead_letters(letters: list[dict[str, str]]) -> RenderableType:
    return render.table(
        f"failed jobs: {len(letters)}",
        ["job", "failed at", "step", "error", "message", "reruns"],
        [
            [
                letter["job_id"],
                render.when(letter.get("finished_at")),
                letter.get("failed_step", "").removeprefix("contact_exports."),
                letter.get("error_type", ""),
                letter.get("error_message", "")[:200],
                letter.get("reruns", "0"),
            ]
            for letter in letters
        ],
    )


def check(result: Check) -> RenderableType:
    label, style = MARKS[result.outcome]
    line = Text(label.ljust(MARK_WIDTH), style=style)
    line.append(f"{result.name}: {result.detail}")
    if result.fix and result.outcome is not Outcome.OK:
        line.append("\n" + " " * MARK_WIDTH)
        line.append("fix: ", style="dim")
        line.append(result.fix)
    return line
