"""The shapes that travel over the wire (docs/contract.md §1-2), as TypedDicts a type checker reads.

The JSON Schemas in ``schemas/`` are the authority for other languages; these mirror them for
Python callers without importing the project's pydantic models (which would pull in the worker).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

#: What ``export`` holds: the Constant Contact request body, as the API takes it.
ExportBody = dict[str, Any]


class Destination(TypedDict, total=False):
    bucket: str
    #: A template: {account}, {job_id}, {date}, {yyyy}, {mm}, {dd}, {hh}, {ext}.
    key: str
    #: "AES256" or "aws:kms" (with kms_key_id).
    sse: str
    kms_key_id: str
    storage_class: str
    #: At most 10, added to the workers' S3_TAGS.
    tags: dict[str, str]


class ExportKwargs(TypedDict, total=False):
    """The kwargs of ``contact_exports.export``; only ``export`` is needed."""

    export: ExportBody
    account: str
    job_id: str
    #: "csv" (default), "csv.gz", "csv.zst", "jsonl.gz" or "parquet" (docs/contract.md §1).
    format: str
    destination: Destination


Stage = Literal["creating", "polling", "downloading"]


class Progress(TypedDict, total=False):
    """``result.info`` while ``result.state == "PROGRESS"``."""

    job_id: str
    stage: Stage
    percent_done: int
    activity_id: str | None
    bytes: int


class ExportResult(TypedDict):
    """What ``result.get()`` returns; the worker may add keys later (the contract only widens)."""

    job_id: str
    account: str
    activity_id: str
    bucket: str
    key: str
    uri: str
    bytes: int
    rows: int
    columns: list[str]
    sha256: str
    started_at: str
    finished_at: str
    unknown_fields: list[str]
    activities: int
