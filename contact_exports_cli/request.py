"""The export task's kwargs, from flags or a JSON file, checked as the worker will check them.

The check is the worker's own (``workers.export.request.parse_job_request``), so a request
refused here would be refused there with the same message, and one accepted here is not refused
for its shape later (only for what needs the worker: an unknown account, no bucket configured).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contact_exports_cli.exceptions import InvalidUsageError
from workers.exceptions import InvalidExportRequest
from workers.export.request import parse_job_request


@dataclass
class Filters:
    """What the body flags say; empty means the flag was not given."""

    list_ids: list[str] = field(default_factory=list)
    contact_ids: list[str] = field(default_factory=list)
    tag_ids: list[str] = field(default_factory=list)
    segment_id: int | None = None
    status: str | None = None
    fields: list[str] = field(default_factory=list)
    all_active: bool = False

    def given(self) -> bool:
        return bool(
            self.list_ids
            or self.contact_ids
            or self.tag_ids
            or self.segment_id is not None
            or self.status
            or self.fields
            or self.all_active
        )

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name in ("list_ids", "contact_ids", "tag_ids"):
            if getattr(self, name):
                body[name] = getattr(self, name)
        if self.segment_id is not None:
            body["segment_id"] = self.segment_id
        if self.status:
            body["status"] = self.status
        if self.fields:
            body["fields"] = self.fields
        if self.all_active:
            body["all_active_contacts"] = True
        return body


@dataclass
class Target:
    """Who runs the export and where it lands; flags win over a file's values."""

    job_id: str | None = None
    account: str | None = None
    bucket: str | None = None
    key: str | None = None
    #: The object's options (docs/configuration.md#object-options).
    sse: str | None = None
    kms_key_id: str | None = None
    storage_class: str | None = None
    tags: tuple[str, ...] = ()
    #: The stored format; unset: the workers' default (csv).
    format: str | None = None

    def destination(self) -> dict[str, Any]:
        """What the flags set of ``destination``; InvalidUsageError for a tag not key=value."""
        given: dict[str, Any] = {
            name: getattr(self, name)
            for name in ("bucket", "key", "sse", "kms_key_id", "storage_class")
            if getattr(self, name) is not None
        }
        if self.tags:
            pairs = [tag.partition("=") for tag in self.tags]
            if any(not sep for _, sep, _ in pairs):
                raise InvalidUsageError("--tag takes key=value")
            given["tags"] = {key: value for key, _, value in pairs}
        return given


def split_commas(values: list[str] | None) -> list[str]:
    """``--field a,b --field c`` is ``[a, b, c]``: shells and scripts write either."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def read_file(path: Path) -> dict[str, Any]:
    """The kwargs held by a JSON file (``-`` is stdin). An object with an ``export`` key is the
    whole kwargs; any other is the export body alone (the body has no such key)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidUsageError(f"cannot read {path}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidUsageError(f"{path} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidUsageError(f"{path} must hold a JSON object: the task kwargs or the body")
    return data if "export" in data else {"export": data}


def build_kwargs(filters: Filters, target: Target, file: Path | None) -> dict[str, Any]:
    if file is not None and filters.given():
        raise InvalidUsageError(
            "give the export body either as flags or with --file, not both",
            hint="--job-id, --account, --bucket and --key may still override the file",
        )
    kwargs: dict[str, Any] = read_file(file) if file is not None else {"export": filters.body()}
    if target.job_id is not None:
        kwargs["job_id"] = target.job_id
    if target.account is not None:
        kwargs["account"] = target.account
    if target.format is not None:
        kwargs["format"] = target.format
    flags = target.destination()
    if flags:
        given = kwargs.get("destination")
        kwargs["destination"] = {**(dict(given) if isinstance(given, dict) else {}), **flags}
    return kwargs


def validate(kwargs: dict[str, Any]) -> None:
    """Refuse locally what the worker would refuse, with its words (exit code 2)."""
    try:
        parse_job_request(kwargs)
    except InvalidExportRequest as error:
        raise InvalidUsageError(str(error)) from None
