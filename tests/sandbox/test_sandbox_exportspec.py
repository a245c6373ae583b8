"""Validation of ContactsExport bodies: what is refused (400) and what is accepted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sandbox.contacts import ContactStatus
from sandbox.exportspec import ExportValidationError, parse_export_request
from sandbox.fields import DEFAULT_FIELDS, ContactField

ID = "04fe9a97-a579-43c5-bb1a-58ed29bf0a6a"
ID2 = "af424130-f968-11e8-9c64-fa163e6b01c1"


def ids(count: int) -> list[str]:
    return [f"00000000-0000-4000-8000-{n:012x}" for n in range(count)]


def parse(body: Any) -> Any:
    return parse_export_request(json.dumps(body).encode())


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"contact_ids": ids(501)}, "too.many.items"),
        ({"list_ids": ids(51)}, "too.many.items"),
        ({"tag_ids": ids(51)}, "too.many.items"),
        ({"exclude": {"contact_ids": ids(51)}}, "too.many.items"),
        ({"contact_ids": ["not-a-uuid"]}, "invalid.id"),
        ({"list_ids": [ID[:-1]]}, "invalid.id"),
        ({"contact_ids": ID}, "invalid.value"),
        ({"contact_ids": []}, "invalid.value"),
        ({"segment_id": "12"}, "invalid.value"),
        ({"segment_id": True}, "invalid.value"),
        ({"all_active_contacts": "yes"}, "invalid.value"),
        ({"status": "deleted"}, "invalid.value"),
        ({"fields": "email_address"}, "invalid.value"),
        ({"fields": []}, "invalid.value"),
        ({"exclude": [ID]}, "invalid.value"),
        ({"contact_ids": [ID], "list_ids": [ID2]}, "mutually.exclusive"),
        ({"contact_ids": [ID], "all_active_contacts": True}, "mutually.exclusive"),
        ({"contact_ids": [ID], "new_subscriber": True}, "mutually.exclusive"),
        ({"list_ids": [ID], "segment_id": 3}, "mutually.exclusive"),
        ({"tag_ids": [ID], "status": "active"}, "mutually.exclusive"),
        ({"segment_id": 2, "status": "active"}, "mutually.exclusive"),
        ({"all_active_contacts": True, "status": "active"}, "mutually.exclusive"),
        ({"status": "active", "exclude": {"contact_ids": [ID]}}, "mutually.exclusive"),
        ({"segment_id": 1, "segment_ids": 1}, "mutually.exclusive"),
        ({"contactIds": [ID]}, "unknown.property"),
    ],
)
def test_rule_violations_are_refused(body: dict[str, Any], key: str) -> None:
    with pytest.raises(ExportValidationError) as caught:
        parse(body)
    assert key in [k for k, _ in caught.value.errors]


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"x"', b"\xff\xfe", b'{"segment_id": NaN}'])
def test_malformed_json_is_refused(raw: bytes) -> None:
    with pytest.raises(ExportValidationError) as caught:
        parse_export_request(raw)
    assert caught.value.errors[0][0] == "malformed.json"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"contact_ids": ids(500), "status": "removed"},
        {"list_ids": ids(50), "status": "unsubscribed"},
        {"list_ids": [ID], "exclude": {"contact_ids": ids(50)}},
        {"list_ids": [ID], "new_subscriber": True, "exclude": {"contact_ids": [ID2]}},
        {"new_subscriber": True},
        {"tag_ids": ids(50)},
        {"segment_id": 3},
        {"all_active_contacts": True},
        {"all_active_contacts": False, "contact_ids": [ID]},
        {"status": "active"},
        {"exclude": {"contact_ids": [ID]}},
    ],
)
def test_documented_combinations_are_accepted(body: dict[str, Any]) -> None:
    parse(body)


def test_contact_ids_keep_request_order_and_drop_duplicates() -> None:
    spec = parse({"contact_ids": [ID2, ID.upper(), ID2], "status": "active"})
    assert spec.contact_ids == (ID2, ID)
    assert spec.status is ContactStatus.ACTIVE


def test_old_segment_ids_spelling_is_accepted() -> None:
    assert parse({"segment_ids": 4}).segment_id == 4


def test_fields_unknown_dropped_order_kept_email_dependents_need_email() -> None:
    assert parse({}).fields == DEFAULT_FIELDS
    spec = parse({"fields": ["updated_at", "bogus", "first_name", "email_optin_date"]})
    assert spec.fields == (ContactField.UPDATED_AT, ContactField.FIRST_NAME)
    spec = parse({"fields": ["email_optout_reason", "email_address"]})
    assert spec.fields == (ContactField.EMAIL_OPTOUT_REASON, ContactField.EMAIL_ADDRESS)
    assert parse({"fields": ["nope"]}).fields == ()


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ExportValidationError) as caught:
        parse({"contact_ids": ["x"] * 501, "status": "nope", "extra": 1})
    keys = {k for k, _ in caught.value.errors}
    assert {"too.many.items", "invalid.id", "invalid.value", "unknown.property"} <= keys


@pytest.mark.parametrize(
    "bad",
    [
        ID + "\n",
        ID.replace("-", ""),
        "{" + ID + "}",
        "urn:uuid:" + ID,
        " " + ID,
    ],
)
def test_ids_must_be_canonical_uuids(bad: str) -> None:
    for body in ({"contact_ids": [bad]}, {"list_ids": [bad]}, {"exclude": {"contact_ids": [bad]}}):
        with pytest.raises(ExportValidationError) as caught:
            parse(body)
        assert "invalid.id" in [k for k, _ in caught.value.errors]
