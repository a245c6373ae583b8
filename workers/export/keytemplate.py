"""Object keys from templates: ``destination.key`` and EXPORT_KEY_TEMPLATE may name the job's
account, id and UTC start, so a data lake's partitions (``contacts/dt={date}/{job_id}.{ext}``)
come out of the export itself.

The key is rendered once, when the job is opened, from the job's start; the record keeps it, so
a redelivery the next day writes the same key (``JobStore.open``). Literal braces are doubled
(``{{`` and ``}}``), as in Python's ``str.format``; nothing else of ``str.format`` is allowed (no
attribute access, no conversions, no format specs), so a template cannot reach into the values.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime

#: What each placeholder stands for, as the docs and the error message list them.
PLACEHOLDERS = {
    "account": "the job's account",
    "job_id": "the job's id",
    "date": "the job's UTC start date, 2026-12-04",
    "yyyy": "its year, 2026",
    "mm": "its month, 12",
    "dd": "its day, 04",
    "hh": "its hour, 09",
    "ext": "the file extension of the format, csv",
}
#: The extension of Constant Contact's CSV, the one format stored today.
CSV_EXTENSION = "csv"


def placeholders(template: str) -> list[str]:
    """The placeholders ``template`` uses; ValueError naming what is not allowed."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:  # a lone "{" or "}"
        raise ValueError(f"{error} (write a literal brace twice: {{{{ or }}}})") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + known + "}" for known in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{name}}}; known: {known}")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion")
        names.append(name)
    return names


def render_key(
    template: str, *, account: str, job_id: str, started: datetime, ext: str = CSV_EXTENSION
) -> str:
    """``template`` with its placeholders filled (``started`` in UTC)."""
    placeholders(template)
    started = started.astimezone(UTC)
    return template.format(
        account=account,
        job_id=job_id,
        date=started.strftime("%Y-%m-%d"),
        yyyy=started.strftime("%Y"),
        mm=started.strftime("%m"),
        dd=started.strftime("%d"),
        hh=started.strftime("%H"),
        ext=ext,
    )
