"""The export request: every rule Constant Contact applies, checked before any API call.

Rules come from the official spec (ContactsExport) and the export guide; where the two differ,
the stricter reading of the spec wins and the README's rule table says so. Violations become one
InvalidExportRequest that names each field and rule, so a caller can fix all of them at once.
"""

from __future__ import annotations

import logging
import re
from itertools import combinations
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from workers.exceptions import InvalidExportRequest

log = logging.getLogger(__name__)

#: Constant Contact's caps per request.
MAX_CONTACT_IDS = 500
MAX_LIST_IDS = 50
MAX_TAG_IDS = 50
MAX_EXCLUDED_CONTACT_IDS = 50

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

_ACCOUNT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_JOB_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

FieldName = Annotated[str, StringConstraints(min_length=1, max_length=100)]


def _uuid_list(value: Any, field: str) -> Any:
    if not isinstance(value, list):
        return value
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{field} must hold strings, got {type(item).__name__}")
        try:
            UUID(item)
        except ValueError:
            raise ValueError(f"{field} holds {item!r}, which is not a UUID") from None
        if item.lower() in seen:
            raise ValueError(f"{field} holds {item!r} twice")
        seen.add(item.lower())
    return value


class Exclude(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    contact_ids: list[str] = Field(min_length=1, max_length=MAX_EXCLUDED_CONTACT_IDS)

    @field_validator("contact_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return _uuid_list(value, "exclude.contact_ids")


class ExportRequest(BaseModel):
    """The body of POST /activities/contact_exports, as Constant Contact takes it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    contact_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_CONTACT_IDS)
    list_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_LIST_IDS)
    tag_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_TAG_IDS)
    segment_id: int | None = Field(default=None, ge=1)
    new_subscriber: bool | None = None
    all_active_contacts: bool | None = None
    status: Literal["active", "unsubscribed", "removed"] | None = None
    exclude: Exclude | None = None
    fields: list[FieldName] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _older_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "segment_ids" in data:
            if "segment_id" in data:
                raise ValueError("give segment_id or the guide's older segment_ids, not both")
            log.warning("export request uses 'segment_ids'; the API's name is 'segment_id'")
            data = {("segment_id" if k == "segment_ids" else k): v for k, v in data.items()}
        return data

    @field_validator("contact_ids", "list_ids", "tag_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any, info: Any) -> Any:
        return _uuid_list(value, info.field_name)

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
        present = self.filters()
        for a, b in combinations(present, 2):
            if b not in ALLOWED_PARTNERS[a] and a not in ALLOWED_PARTNERS[b]:
                raise ValueError(f"{a} cannot be combined with {b}")
        return self

    def filters(self) -> list[str]:
        """The filtering criteria this request actually uses (a false flag is no filter)."""
        return [name for name in ALLOWED_PARTNERS if getattr(self, name) not in (None, False)]

    @property
    def unknown_fields(self) -> list[str]:
        return [f for f in self.fields or [] if f not in KNOWN_FIELDS]

    def api_body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Destination(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    bucket: str | None = None
    key: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str | None) -> str | None:
        if value is not None and not _BUCKET.match(value):
            raise ValueError(
                "bucket must be 3-63 characters of lower-case letters, digits, dots and hyphens"
            )
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or "\x00" in value):
            raise ValueError("key must not start with '/' or contain NUL")
        return value


class ExportJobRequest(BaseModel):
    """The kwargs of the ``contact_exports.export`` task (CONTRACT.md §1)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    export: ExportRequest = Field(default_factory=ExportRequest)
    account: Annotated[str, StringConstraints(pattern=_ACCOUNT)] = "default"
    job_id: Annotated[str, StringConstraints(pattern=_JOB_ID)] | None = None
    destination: Destination = Field(default_factory=Destination)


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
