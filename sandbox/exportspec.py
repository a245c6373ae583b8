"""Validation of a ContactsExport request body into an :class:`ExportSpec`.

Two kinds of mistakes are treated differently, as the guide describes: a body
that is malformed, mistyped or breaks a documented rule is refused with 400;
ids that are well-formed but name nothing still get a 201 and fail later
(see :mod:`sandbox.selection`).  Unknown top-level properties are refused,
so a client typo cannot silently turn into an export of every contact.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sandbox.contacts import ContactStatus
from sandbox.fields import ContactField, effective_fields
from sandbox.wire import ErrorKey

MAX_CONTACT_IDS = 500
MAX_LIST_IDS = 50
MAX_TAG_IDS = 50
MAX_EXCLUDED_CONTACT_IDS = 50

UUID_PATTERN = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
"""Canonical hyphenated UUIDs; ``\\Z`` because ``$`` would also accept a trailing newline."""


class Criterion(StrEnum):
    """Filtering criteria whose combinations the spec restricts."""

    CONTACT_IDS = "contact_ids"
    LIST_IDS = "list_ids"
    TAG_IDS = "tag_ids"
    SEGMENT_ID = "segment_id"
    ALL_ACTIVE_CONTACTS = "all_active_contacts"
    STATUS = "status"
    NEW_SUBSCRIBER = "new_subscriber"
    EXCLUDE = "exclude"


COMPATIBLE_PAIRS = frozenset(
    frozenset(pair)
    for pair in (
        (Criterion.CONTACT_IDS, Criterion.STATUS),
        (Criterion.LIST_IDS, Criterion.STATUS),
        (Criterion.LIST_IDS, Criterion.EXCLUDE),
        (Criterion.LIST_IDS, Criterion.NEW_SUBSCRIBER),
        (Criterion.NEW_SUBSCRIBER, Criterion.EXCLUDE),
    )
)
"""Every pair of criteria present in one request must be listed here (read off the swagger)."""

KNOWN_PROPERTIES = frozenset({c.value for c in Criterion} | {"fields", "segment_ids"})


class ExportValidationError(Exception):
    """The request is refused with 400; ``errors`` become the array body."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in errors))
        self.errors = errors


@dataclass(frozen=True)
class ExportSpec:
    """A validated export request; ids are lower-cased, contact ids keep request order."""

    contact_ids: tuple[str, ...] | None = None
    list_ids: tuple[str, ...] | None = None
    tag_ids: tuple[str, ...] | None = None
    segment_id: int | None = None
    all_active_contacts: bool = False
    status: ContactStatus | None = None
    new_subscriber: bool = False
    exclude_contact_ids: tuple[str, ...] = ()
    fields: tuple[ContactField, ...] = ()

    def normalized(self) -> dict[str, Any]:
        """A canonical form for cache keys: order matters only where it changes the file."""
        return {
            "contact_ids": list(self.contact_ids) if self.contact_ids is not None else None,
            "list_ids": sorted(self.list_ids) if self.list_ids is not None else None,
            "tag_ids": sorted(self.tag_ids) if self.tag_ids is not None else None,
            "segment_id": self.segment_id,
            "all_active_contacts": self.all_active_contacts,
            "status": self.status.value if self.status else None,
            "new_subscriber": self.new_subscriber,
            "exclude": sorted(self.exclude_contact_ids),
            "fields": [f.value for f in self.fields],
        }


class _Collector:
    """Gathers every problem so one 400 reports them all, like Constant Contact does."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def add(self, key: ErrorKey, message: str) -> None:
        self.errors.append((key.value, message))

    def uuid_array(self, name: str, value: Any, limit: int) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(ErrorKey.INVALID_VALUE, f"{name} must be an array of strings")
            return None
        if not value:
            self.add(ErrorKey.INVALID_VALUE, f"{name} must not be empty")
        if len(value) > limit:
            self.add(ErrorKey.TOO_MANY_ITEMS, f"{name} accepts at most {limit} items")
        bad = [v for v in value if not UUID_PATTERN.match(v)]
        if bad:
            self.add(ErrorKey.INVALID_ID, f"{name} contains values that are not UUIDs: {bad[:5]}")
        return tuple(dict.fromkeys(v.lower() for v in value))

    def boolean(self, name: str, value: Any) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            self.add(ErrorKey.INVALID_VALUE, f"{name} must be a boolean")
            return False
        return value

    def segment(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.add(ErrorKey.INVALID_VALUE, "segment_id must be a positive integer")
            return None
        return value

    def status(self, value: Any) -> ContactStatus | None:
        if value is None:
            return None
        try:
            return ContactStatus(value)
        except ValueError:
            allowed = ", ".join(s.value for s in ContactStatus)
            self.add(ErrorKey.INVALID_VALUE, f"status must be one of: {allowed}")
            return None

    def exclude(self, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, dict) or set(value) - {"contact_ids"}:
            self.add(ErrorKey.INVALID_VALUE, "exclude must be an object with only contact_ids")
            return ()
        ids = self.uuid_array(
            "exclude.contact_ids", value.get("contact_ids"), MAX_EXCLUDED_CONTACT_IDS
        )
        return ids or ()

    def fields(self, value: Any) -> tuple[ContactField, ...]:
        if value is None:
            return effective_fields(None)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(ErrorKey.INVALID_VALUE, "fields must be an array of strings")
            return ()
        if not value:
            self.add(ErrorKey.INVALID_VALUE, "fields must not be empty")
        return effective_fields(value)


def _decode(raw: bytes) -> dict[str, Any]:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ExportValidationError(
            [(ErrorKey.MALFORMED_JSON.value, f"Malformed JSON: {exc}")]
        ) from exc
    if not isinstance(body, dict):
        raise ExportValidationError(
            [(ErrorKey.MALFORMED_JSON.value, "The body must be a JSON object")]
        )
    return body


def _segment_value(body: dict[str, Any], check: _Collector) -> Any:
    """Accept the guide's older ``segment_ids`` spelling, but not both spellings at once."""
    if "segment_id" in body and "segment_ids" in body:
        check.add(ErrorKey.MUTUALLY_EXCLUSIVE, "Use segment_id or segment_ids, not both")
    return body.get("segment_id", body.get("segment_ids"))


def _present_criteria(spec: ExportSpec) -> list[Criterion]:
    present = {
        Criterion.CONTACT_IDS: spec.contact_ids is not None,
        Criterion.LIST_IDS: spec.list_ids is not None,
        Criterion.TAG_IDS: spec.tag_ids is not None,
        Criterion.SEGMENT_ID: spec.segment_id is not None,
        Criterion.ALL_ACTIVE_CONTACTS: spec.all_active_contacts,
        Criterion.STATUS: spec.status is not None,
        Criterion.NEW_SUBSCRIBER: spec.new_subscriber,
        Criterion.EXCLUDE: bool(spec.exclude_contact_ids),
    }
    return [criterion for criterion, on in present.items() if on]


def _check_combinations(spec: ExportSpec, check: _Collector) -> None:
    present = _present_criteria(spec)
    for n, first in enumerate(present):
        for second in present[n + 1 :]:
            if frozenset((first, second)) not in COMPATIBLE_PAIRS:
                check.add(
                    ErrorKey.MUTUALLY_EXCLUSIVE,
                    f"{first.value} and {second.value} are mutually exclusive",
                )


def parse_export_request(raw: bytes) -> ExportSpec:
    """Validate a POST /activities/contact_exports body; raise :class:`ExportValidationError`."""
    body = _decode(raw)
    check = _Collector()
    for name in sorted(set(body) - KNOWN_PROPERTIES):
        check.add(ErrorKey.UNKNOWN_PROPERTY, f"Unknown property: {name}")
    spec = ExportSpec(
        contact_ids=check.uuid_array("contact_ids", body.get("contact_ids"), MAX_CONTACT_IDS),
        list_ids=check.uuid_array("list_ids", body.get("list_ids"), MAX_LIST_IDS),
        tag_ids=check.uuid_array("tag_ids", body.get("tag_ids"), MAX_TAG_IDS),
        segment_id=check.segment(_segment_value(body, check)),
        all_active_contacts=check.boolean("all_active_contacts", body.get("all_active_contacts")),
        status=check.status(body.get("status")),
        new_subscriber=check.boolean("new_subscriber", body.get("new_subscriber")),
        exclude_contact_ids=check.exclude(body.get("exclude")),
        fields=check.fields(body.get("fields")),
    )
    _check_combinations(spec, check)
    if check.errors:
        raise ExportValidationError(check.errors)
    return spec
