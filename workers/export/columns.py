"""Constant Contact's CSV headers as field names and types, for every format but ``csv``.

Constant Contact heads its columns with labels (``Email address - other``), not the field names a
request uses (``email_address``). ``HEADERS`` maps each label this service knows to its field and
type; the guide fixes four of them (First name, Last name, Email address - other, Updated At), the
others follow the sandbox's (``sandbox/fields.py``), which follows the guide's style. A label not
in the table (a custom field, or one Constant Contact adds later) becomes its snake_case form
(``Favourite colour`` -> ``favourite_colour``) with text values: a stable rule, so a pipeline's
schema does not change between exports. A name that would repeat gets ``_2``, ``_3``, ...

Types, for ``jsonl.gz`` and ``parquet`` (``csv.gz`` and ``csv.zst`` keep the text):

- ``timestamp``: ``2018-11-29 15:10:15 -0500`` or ``2019-11-25T16:29:13.057 -0500`` (the guide's
  two styles), as ISO 8601 in UTC (``2018-11-29T20:10:15.000Z``); Parquet: ms, UTC.
- ``date``: ``2019-05-17`` as it is; Parquet: date32.
- ``integer``, ``boolean`` (``true``/``false``).
- ``string``: everything else, ``Email lists`` among them: Constant Contact joins the list names
  with ``, ``, and a list's name may itself hold ``, ``, so no split would be safe.

An empty cell is null. A value that does not fit its type fails the export (``ConversionError``)
rather than being stored wrong; the ``csv`` format stores Constant Contact's bytes as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

#: Label -> (field name, type).
HEADERS: dict[str, tuple[str, str]] = {
    "First name": ("first_name", "string"),
    "Last name": ("last_name", "string"),
    "Email address - other": ("email_address", "string"),
    # The names joined with ", ", and a name may hold ", " itself: kept as the text it is.
    "Email lists": ("email_lists", "string"),
    "Phone number - other": ("phone_number", "string"),
    "Company name": ("company_name", "string"),
    "Job title": ("job_title", "string"),
    "Social profiles": ("social_profiles", "string"),
    "Website": ("website", "string"),
    "Notes": ("notes", "string"),
    "Street address - other": ("street", "string"),
    "City - other": ("city", "string"),
    "State/Province - other": ("state", "string"),
    "Zip/Postal code - other": ("zip", "string"),
    "Country - other": ("country", "string"),
    "Anniversary": ("anniversary", "date"),
    "Birthday": ("birthday", "string"),  # month/day, no year: not a date
    "Birthday day": ("birthday_day", "integer"),
    "Birthday month": ("birthday_month", "integer"),
    "Source name": ("source_name", "string"),
    "Created At": ("created_at", "timestamp"),
    "Updated At": ("updated_at", "timestamp"),
    "Email opt-in": ("email_optin", "boolean"),
    "Email permission status": ("email_permission", "string"),
    "Email opt-in source": ("email_optin_source", "string"),
    "Email opt-in date": ("email_optin_date", "timestamp"),
    "Email opt-out date": ("email_optout_date", "timestamp"),
    "Email opt-out source": ("email_optout_source", "string"),
    "Email opt-out reason": ("email_optout_reason", "string"),
    "SMS number": ("sms_number", "string"),
    "SMS consent date": ("sms_consent_date", "timestamp"),
    "SMS status": ("sms_status", "string"),
}
# Plain ASCII digits only (``int`` would also take " 7", "1_000" and other scripts).
INTEGER = re.compile(r"^-?[0-9]{1,18}$")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
#: Either of the guide's styles, in groups that rewrite it as ISO 8601 (``workers.export.typed``
#: uses the same pattern with Arrow's regex engine, RE2, which reads it alike).
TIMESTAMP = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]"
    r"([0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?) ([+-][0-9]{2})([0-9]{2})$"
)


@dataclass(frozen=True)
class Column:
    name: str
    #: Constant Contact's label for it.
    header: str
    type: str

    def value(self, cell: str) -> Any:
        """``cell`` as this column's type; None for an empty cell; ValueError if it does not fit."""
        if cell == "":
            return None
        try:
            return PARSE[self.type](cell)
        except (ValueError, OverflowError):
            raise ValueError(f"column {self.name}: {cell!r} is not a {self.type}") from None

    def arrow_type(self) -> Any:
        import pyarrow as pa

        return {
            "string": pa.string(),
            "timestamp": pa.timestamp("ms", tz="UTC"),
            "date": pa.date32(),
            "integer": pa.int64(),
            "boolean": pa.bool_(),
        }[self.type]


def snake_case(header: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", header.lower()).strip("_") or "column"


def columns_of(header: list[str]) -> list[Column]:
    columns: list[Column] = []
    taken: set[str] = set()
    for label in header:
        name, kind = HEADERS.get(label, (snake_case(label), "string"))
        unique, n = name, 1
        while unique in taken:
            n += 1
            unique = f"{name}_{n}"
        taken.add(unique)
        columns.append(Column(unique, label, kind))
    return columns


def _timestamp(cell: str) -> datetime:
    """``fromisoformat`` once the offset is written ISO's way (``-0500`` -> ``-05:00``)."""
    match = TIMESTAMP.fullmatch(cell)  # not ``match``: ``$`` also matches before a final "\n"
    if match is None:
        raise ValueError(cell)
    day, time, hours, minutes = match.groups()
    return datetime.fromisoformat(f"{day}T{time}{hours}:{minutes}").astimezone(UTC)


def _checked(pattern: re.Pattern[str], cell: str) -> str:
    if not pattern.fullmatch(cell):
        raise ValueError(cell)
    return cell


def _boolean(cell: str) -> bool:
    if cell.lower() in ("true", "false"):
        return cell.lower() == "true"
    raise ValueError(cell)


PARSE: dict[str, Any] = {
    "string": str,
    "timestamp": _timestamp,
    "date": lambda cell: date.fromisoformat(_checked(DATE, cell)),
    "integer": lambda cell: int(_checked(INTEGER, cell)),
    "boolean": _boolean,
}
