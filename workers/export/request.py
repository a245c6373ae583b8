"""The export request: every rule Constant Contact applies, checked before any API call.

Rules come from the official spec (ContactsExport) and the export guide; where the two differ,
the stricter reading of the spec wins and the README's rule table says so. Violations become one
InvalidExportRequest that names each field and rule, so a caller can fix all of them at once.

Beyond the API, a request may name up to :data:`MAX_SHARDED_CONTACT_IDS` contact ids: Constant
Contact takes 500 per activity, so :meth:`ExportRequest.shards` cuts such a request into API
bodies of at most 500 ids each, whose CSVs the tasks merge.

The JSON Schemas in ``schemas/`` are generated from the models here
(``python -m workers.export.request --write-schema``) and a test keeps them current.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import sys
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict

from workers.exceptions import InvalidExportRequest
from workers.export.keytemplate import placeholders
from workers.s3.objectoptions import ObjectOptions

log = logging.getLogger(__name__)

#: Contact ids Constant Contact takes in one export request (spec ``ContactsExport.maxItems``).
MAX_CONTACT_IDS = 500
#: Contact ids one job may name: more than MAX_CONTACT_IDS are split into several activities.
#: The cap bounds a job to 100 activities, a tenth of the API's 1,000 queued per account.
MAX_SHARDED_CONTACT_IDS = 50_000
MAX_LIST_IDS = 50
MAX_TAG_IDS = 50
MAX_EXCLUDED_CONTACT_IDS = 50
#: Longest column name passed on; the documented ones are under 25 characters.
MAX_FIELD_NAME_LENGTH = 100

#: The spec's ``format: uuid`` as Constant Contact writes ids: hyphenated, no braces or prefix.
#: (Python's ``UUID()`` would also take ``{...}``, ``urn:uuid:...`` and unhyphenated forms.)
UUID_REGEX = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

#: Column names the guide and spec document, plus the SMS fields the API also exports.
KNOWN_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "email_address",
        "email_lists",
        "phone_number",
        "company_name",
        "job_title",
        "social_profiles",
        "website",
        "notes",
        "street",
        "city",
        "state",
        "zip",
        "country",
        "anniversary",
        "birthday",
        "birthday_day",
        "birthday_month",
        "source_name",
        "created_at",
        "updated_at",
        "email_optin",
        "email_permission",
        "email_optin_source",
        "email_optin_date",
        "email_optout_date",
        "email_optout_source",
        "email_optout_reason",
        "sms_number",
        "sms_consent_date",
        "sms_status",
    }
)
#: Fields Constant Contact exports only next to email_address.
NEEDS_EMAIL_ADDRESS = frozenset(
    {
        "email_optin_source",
        "email_optin_date",
        "email_optout_source",
        "email_optout_date",
        "email_optout_reason",
    }
)

#: Which filters may appear together: a pair is allowed when the spec's description of either
#: one names the other as an exception to "mutually exclusive with all other filtering criteria".
ALLOWED_PARTNERS: dict[str, frozenset[str]] = {
    "contact_ids": frozenset({"status"}),
    "list_ids": frozenset({"status", "exclude"}),
    "new_subscriber": frozenset({"list_ids", "exclude"}),
    "status": frozenset({"contact_ids", "list_ids"}),
    "exclude": frozenset({"list_ids", "new_subscriber"}),
    "tag_ids": frozenset(),
    "segment_id": frozenset(),
    "all_active_contacts": frozenset(),
}
ID_SOURCES = ("contact_ids", "list_ids", "tag_ids", "segment_id")
_ID_CAPS = {
    "contact_ids": MAX_SHARDED_CONTACT_IDS,
    "list_ids": MAX_LIST_IDS,
    "tag_ids": MAX_TAG_IDS,
}
_CAP_REASONS = {
    "contact_ids": f"this service's cap; the API takes {MAX_CONTACT_IDS} per request",
}
#: Filters that are flags: ``false`` is the default and filters nothing.
FLAG_FILTERS = frozenset({"new_subscriber", "all_active_contacts"})
#: The guide's older spelling of ``segment_id``.
OLD_SEGMENT_KEY = "segment_ids"

_ACCOUNT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_JOB_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_BUCKET_REGEX = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
_KEY_REGEX = r"^[^/\x00][^\x00]*$"


def _whole(regex: str) -> re.Pattern[str]:
    """Compile a ``^...$`` pattern for Python, where ``$`` would also take a final newline.

    The ``$`` spelling stays in the pydantic constraints and JSON Schemas, whose regex dialects
    (Rust, ECMA-262) match it at the very end only.
    """
    return re.compile(regex.removesuffix("$") + r"\Z")


_UUID = _whole(UUID_REGEX)
_BUCKET = _whole(_BUCKET_REGEX)

FieldName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FIELD_NAME_LENGTH)]
UuidString = Annotated[str, StringConstraints(pattern=UUID_REGEX)]
_UNIQUE: JsonDict = {"uniqueItems": True}


def _uuid_list(value: Any, field: str, cap: int, why: str) -> Any:
    """Check the cap, then the ids one by one, so the message names the rule or the id.

    The cap comes first so an oversized list is refused without looking at its items.
    """
    if not isinstance(value, list):
        return value
    if len(value) > cap:
        raise ValueError(f"{field} holds {len(value)} ids, more than {cap} ({why})")
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{field} must hold strings, got {type(item).__name__}")
        if not _UUID.match(item):
            raise ValueError(f"{field} holds {item!r}, which is not a UUID")
        if item.lower() in seen:
            raise ValueError(f"{field} holds {item!r} twice")
        seen.add(item.lower())
    return value


def _export_json_schema(schema: dict[str, Any]) -> None:
    """Add what pydantic cannot derive: the old spelling and the cross-field rules.

    Each refused pair of filters becomes ``not: {both present}``; a flag counts as present only
    when ``true`` and any other filter when not ``null``, as in :meth:`ExportRequest.filters`.
    """
    properties = schema["properties"]
    properties[OLD_SEGMENT_KEY] = {
        **properties["segment_id"],
        "deprecated": True,
        "description": "The export guide's older spelling of segment_id; give one, not both.",
    }
    spellings = {name: [name] for name in ALLOWED_PARTNERS}
    spellings["segment_id"].append(OLD_SEGMENT_KEY)
    present: dict[str, Any] = {name: {"not": {"type": "null"}} for name in properties}
    present.update({name: {"const": True} for name in FLAG_FILTERS})
    rules: list[dict[str, Any]] = [{"not": {"required": ["segment_id", OLD_SEGMENT_KEY]}}]
    for a, b in combinations(ALLOWED_PARTNERS, 2):
        if b in ALLOWED_PARTNERS[a] or a in ALLOWED_PARTNERS[b]:
            continue
        for x in spellings[a]:
            for y in spellings[b]:
                both = {"required": [x, y], "properties": {x: present[x], y: present[y]}}
                rules.append({"not": both})
    rules.append(
        {
            "if": {
                "required": ["fields"],
                "properties": {
                    "fields": {"type": "array", "contains": {"enum": sorted(NEEDS_EMAIL_ADDRESS)}}
                },
            },
            "then": {"properties": {"fields": {"contains": {"const": "email_address"}}}},
        }
    )
    schema["allOf"] = rules


class Exclude(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    contact_ids: list[UuidString] = Field(
        min_length=1, max_length=MAX_EXCLUDED_CONTACT_IDS, json_schema_extra=_UNIQUE
    )

    @field_validator("contact_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return _uuid_list(value, "exclude.contact_ids", MAX_EXCLUDED_CONTACT_IDS, "the API's cap")


class ExportRequest(BaseModel):
    """The body of POST /activities/contact_exports, as Constant Contact takes it.

    The one widening: up to :data:`MAX_SHARDED_CONTACT_IDS` contact ids, sent as
    :meth:`shards` of at most :data:`MAX_CONTACT_IDS`.
    """

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_export_json_schema)

    contact_ids: list[UuidString] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SHARDED_CONTACT_IDS,
        json_schema_extra=_UNIQUE,
        description=(
            f"Contacts to export, in this order. Constant Contact takes {MAX_CONTACT_IDS} per "
            "request; more are exported by several activities whose CSVs are merged."
        ),
    )
    list_ids: list[UuidString] | None = Field(
        default=None, min_length=1, max_length=MAX_LIST_IDS, json_schema_extra=_UNIQUE
    )
    tag_ids: list[UuidString] | None = Field(
        default=None, min_length=1, max_length=MAX_TAG_IDS, json_schema_extra=_UNIQUE
    )
    segment_id: int | None = Field(default=None, ge=1)
    new_subscriber: bool | None = None
    all_active_contacts: bool | None = None
    status: Literal["active", "unsubscribed", "removed"] | None = None
    exclude: Exclude | None = None
    fields: list[FieldName] | None = Field(
        default=None,
        min_length=1,
        json_schema_extra=_UNIQUE,
        description="Columns to export; names Constant Contact does not know are dropped.",
    )

    @model_validator(mode="before")
    @classmethod
    def _older_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and OLD_SEGMENT_KEY in data:
            if "segment_id" in data:
                raise ValueError("give segment_id or the guide's older segment_ids, not both")
            log.warning("export request uses 'segment_ids'; the API's name is 'segment_id'")
            data = {("segment_id" if k == OLD_SEGMENT_KEY else k): v for k, v in data.items()}
        return data

    @field_validator("contact_ids", "list_ids", "tag_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any, info: ValidationInfo) -> Any:
        name = str(info.field_name)
        return _uuid_list(value, name, _ID_CAPS[name], _CAP_REASONS.get(name, "the API's cap"))

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if len(set(value)) != len(value):
            raise ValueError("fields names a column twice")
        needing = sorted(NEEDS_EMAIL_ADDRESS.intersection(value))
        if needing and "email_address" not in value:
            raise ValueError(f"{', '.join(needing)} can only be exported with email_address")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> ExportRequest:
        refused = [
            f"{a} cannot be combined with {b} ({_partners(a)})"
            for a, b in combinations(self.filters(), 2)
            if b not in ALLOWED_PARTNERS[a] and a not in ALLOWED_PARTNERS[b]
        ]
        if refused:
            raise ValueError("; ".join(refused))
        return self

    def filters(self) -> list[str]:
        """The filtering criteria this request actually uses (a false flag is no filter)."""
        return [name for name in ALLOWED_PARTNERS if getattr(self, name) not in (None, False)]

    @property
    def unknown_fields(self) -> list[str]:
        """Requested columns Constant Contact does not document; it drops them silently."""
        return [f for f in self.fields or [] if f not in KNOWN_FIELDS]

    def api_body(self) -> dict[str, Any]:
        """The whole request in the API's spelling; may hold more contact ids than one POST."""
        return self.model_dump(exclude_none=True)

    def shards(self) -> list[dict[str, Any]]:
        """The API bodies to POST, in order, each with at most MAX_CONTACT_IDS contact ids.

        Contact ids keep request order across shards, and every shard carries the same status
        and fields. A request within the API's caps is one shard: :meth:`api_body` itself.
        """
        ids = self.contact_ids
        if ids is None or len(ids) <= MAX_CONTACT_IDS:
            return [self.api_body()]
        rest = self.model_dump(exclude_none=True, exclude={"contact_ids"})
        return [
            {"contact_ids": ids[start : start + MAX_CONTACT_IDS], **copy.deepcopy(rest)}
            for start in range(0, len(ids), MAX_CONTACT_IDS)
        ]


def _partners(name: str) -> str:
    allowed = sorted(ALLOWED_PARTNERS[name] | {k for k, v in ALLOWED_PARTNERS.items() if name in v})
    return f"{name} combines only with {', '.join(allowed)}" if allowed else f"{name} stands alone"


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    bucket: str | None = Field(default=None, pattern=_BUCKET_REGEX)
    key: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        pattern=_KEY_REGEX,
        description=(
            "The object key, a template: {account}, {job_id}, {date}, {yyyy}, {mm}, {dd}, {hh} "
            "(the job's UTC start) and {ext}; a literal brace is written twice"
        ),
    )

    sse: Literal["AES256", "aws:kms"] | None = Field(
        default=None, description="server-side encryption (default: S3_SSE)"
    )
    kms_key_id: str | None = Field(
        default=None, min_length=1, max_length=2048, description="the KMS key, with sse aws:kms"
    )
    storage_class: str | None = Field(
        default=None, description="the storage class (default: S3_STORAGE_CLASS)"
    )
    tags: dict[str, str] | None = Field(
        default=None, description="object tags, added to S3_TAGS; at most 10 in all"
    )

    @model_validator(mode="after")
    def _object_options(self) -> Destination:
        problem = self.object_options.problem(merged=False)  # the rest once merged with defaults
        if problem:
            raise ValueError(problem)
        return self

    @property
    def object_options(self) -> ObjectOptions:
        return ObjectOptions.of(self.sse, self.kms_key_id, self.storage_class, self.tags)

    @field_validator("bucket", mode="before")
    @classmethod
    def _bucket(cls, value: Any) -> Any:
        if isinstance(value, str) and not _BUCKET.match(value):
            raise ValueError(
                "bucket must be 3-63 characters of lower-case letters, digits, dots and hyphens"
            )
        return value

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, value: Any) -> Any:
        if isinstance(value, str) and (value.startswith("/") or "\x00" in value):
            raise ValueError("key must not start with '/' or contain NUL")
        if isinstance(value, str):
            placeholders(value)  # a template: {date}, {job_id}, ... (workers.export.keytemplate)
        return value


class ExportJobRequest(BaseModel):
    """The kwargs of the ``contact_exports.export`` task (docs/contract.md §1)."""

    model_config = ConfigDict(extra="forbid", strict=True, title="ExportTaskKwargs")

    export: ExportRequest = Field(default_factory=ExportRequest)
    account: Annotated[str, StringConstraints(pattern=_ACCOUNT)] = "default"
    job_id: Annotated[str, StringConstraints(pattern=_JOB_ID)] | None = None
    destination: Destination = Field(default_factory=Destination)
    #: How the export is stored (workers.export.formats): Constant Contact's CSV as it is, or
    #: renamed, typed and compressed for a data pipeline.
    format: Literal["csv", "csv.gz", "csv.zst", "jsonl.gz", "parquet"] = "csv"
    #: Where to POST the result (or the failure) when the export ends, signed with HMAC-SHA256;
    #: the host must be on the worker's WEBHOOK_ALLOWED_HOSTS.
    notify_url: (
        Annotated[
            str, StringConstraints(pattern=r"^https?://[^\s/?#]+(/[^\s]*)?$", max_length=2048)
        ]
        | None
    ) = None


NonNegative = Annotated[int, Field(ge=0)]
#: ISO 8601 as the tasks write it (``2026-11-26T04:45:16.577Z``); the pattern checks it where a
#: validator does not check ``format``.
Timestamp = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"),
    Field(json_schema_extra={"format": "date-time"}),
]


class ExportResult(BaseModel):
    """What ``result.get()`` returns (docs/contract.md §2); open to keys added later."""

    model_config = ConfigDict(extra="allow", strict=True, title="ExportResult")

    job_id: str
    account: str
    activity_id: str = Field(description="Constant Contact's activity id (the first, if several)")
    bucket: str
    key: str
    uri: Annotated[str, StringConstraints(pattern=r"^s3://")]
    bytes: NonNegative = Field(description="size of the stored object")
    rows: NonNegative = Field(description="data rows, header excluded")
    columns: list[str] = Field(description="the CSV header")
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    started_at: Timestamp
    finished_at: Timestamp
    unknown_fields: list[str] = Field(description="requested fields Constant Contact dropped")
    activities: int = Field(ge=1, description="Constant Contact activities the export took")
    manifest: Annotated[str, StringConstraints(pattern=r"^s3://")] | None = Field(
        default=None, description="s3:// URI of the manifest written beside the object"
    )


class ManifestColumn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(description="the column's name in the stored object")
    header: str = Field(description="Constant Contact's header for it")
    type: Literal["string", "timestamp", "date", "integer", "boolean"] = Field(
        description="the type of its values (csv, csv.gz, csv.zst: always text)"
    )


class Manifest(BaseModel):
    """``<key>.manifest.json``, written beside the object once it is complete."""

    model_config = ConfigDict(extra="allow", strict=True, title="ExportManifest")

    job_id: str
    account: str
    request: dict[str, Any] = Field(
        description="the Constant Contact request bodies the export sent (one per activity)"
    )
    activities: list[str] = Field(description="Constant Contact's activity ids")
    format: Literal["csv", "csv.gz", "csv.zst", "jsonl.gz", "parquet"]
    bucket: str
    key: str
    bytes: NonNegative = Field(description="size of the object")
    rows: NonNegative = Field(description="data rows, header excluded")
    columns: list[ManifestColumn]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    started_at: Timestamp
    finished_at: Timestamp
    service_version: str = Field(description="the contact-export-worker that wrote it")


class CancelRequest(BaseModel):
    """The kwargs of the ``contact_exports.cancel`` task (docs/contract.md §1.2)."""

    model_config = ConfigDict(extra="forbid", strict=True, title="CancelTaskKwargs")

    job_id: Annotated[str, StringConstraints(pattern=_JOB_ID)]


class CancelResult(BaseModel):
    """What ``result.get()`` returns for a ``contact_exports.cancel`` task."""

    model_config = ConfigDict(extra="allow", strict=True, title="CancelResult")

    job_id: str
    outcome: Literal["cancelled", "cancelled already", "completed", "failed", "unknown"] = Field(
        description=(
            "cancelled: it was on its way and is stopped now; the others: nothing changed "
            "(it ended before, or there is no such job)"
        )
    )


def parse_cancel_request(kwargs: dict[str, Any]) -> CancelRequest:
    try:
        return CancelRequest.model_validate(kwargs)
    except ValidationError as error:
        message = describe(error).replace("export request", "cancel request")
        raise InvalidExportRequest(message) from None


def parse_job_request(kwargs: dict[str, Any]) -> ExportJobRequest:
    """Validate the task kwargs, turning every violation into one InvalidExportRequest."""
    try:
        return ExportJobRequest.model_validate(kwargs)
    except ValidationError as error:
        raise InvalidExportRequest(describe(error)) from None


def describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"] if not isinstance(p, int)) or "request"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "invalid export request: " + "; ".join(problems)


#: The generated schemas, by file name under ``schemas/``.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
SCHEMA_BASE_ID = "https://contact-export-worker.invalid/schemas/"


def json_schemas() -> dict[str, dict[str, Any]]:
    """The committed JSON Schemas, exactly as ``--write-schema`` writes them."""
    documents: dict[str, tuple[type[BaseModel], str]] = {
        "export-task-kwargs.schema.json": (
            ExportJobRequest,
            "The kwargs of the contact_exports.export Celery task (docs/contract.md §1).",
        ),
        "export-result.schema.json": (
            ExportResult,
            "What result.get() returns for a contact_exports.export task (docs/contract.md §2).",
        ),
        "export-manifest.schema.json": (
            Manifest,
            "<key>.manifest.json, written beside each stored export once it is complete "
            "(docs/contract.md §2).",
        ),
        "cancel-task-kwargs.schema.json": (
            CancelRequest,
            "The kwargs of the contact_exports.cancel Celery task (docs/contract.md §1.2).",
        ),
        "cancel-result.schema.json": (
            CancelResult,
            "What result.get() returns for a contact_exports.cancel task (docs/contract.md §1.2).",
        ),
    }
    schemas = {}
    for name, (model, description) in documents.items():
        schema = model.model_json_schema()
        schema["description"] = description
        schemas[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_BASE_ID + name,
            "$comment": (
                "Generated by `python -m workers.export.request --write-schema`; do not edit."
            ),
            **schema,
        }
    return schemas


def render_schema(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.export.request", description=__doc__)
    parser.add_argument("--write-schema", action="store_true", help="regenerate schemas/*.json")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="where to write them")
    args = parser.parse_args(argv)
    if not args.write_schema:
        parser.print_help()
        return 2
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (args.dir / name).write_text(render_schema(schema), encoding="utf-8")
        print(args.dir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
