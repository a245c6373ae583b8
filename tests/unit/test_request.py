"""Each rule of the export request has a case here that fails if the rule is removed."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from workers.exceptions import InvalidExportRequest, TransientError
from workers.export.request import ExportRequest, parse_job_request


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def many(n: int) -> list[str]:
    """``n`` distinct ids, quickly: not random, but every one a canonical UUID."""
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def rejects(export: dict[str, Any], *words: str) -> None:
    with pytest.raises(InvalidExportRequest) as caught:
        parse_job_request({"export": export})
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(
    "export",
    [
        {},
        {"contact_ids": ids(500), "status": "active"},
        {"list_ids": ids(50), "status": "removed"},
        {"list_ids": ids(2), "exclude": {"contact_ids": ids(50)}},
        {"list_ids": ids(1), "new_subscriber": True},
        {"new_subscriber": True, "exclude": {"contact_ids": ids(1)}},
        {"tag_ids": ids(50)},
        {"segment_id": 3},
        {"all_active_contacts": True, "fields": ["email_address"]},
        {"status": "unsubscribed"},
        {"fields": ["email_address", "email_optin_date", "custom_color"]},
        {"all_active_contacts": False, "list_ids": ids(1)},
    ],
)
def test_valid_requests_pass(export: dict[str, Any]) -> None:
    assert parse_job_request({"export": export}).export is not None


def test_caps() -> None:
    rejects({"contact_ids": many(50_001)}, "contact_ids", "50000", "500 per request")
    rejects({"list_ids": ids(51)}, "list_ids", "50")
    rejects({"tag_ids": ids(51)}, "tag_ids", "50")
    rejects({"list_ids": ids(1), "exclude": {"contact_ids": ids(51)}}, "exclude.contact_ids")
    for empty in ("contact_ids", "list_ids", "tag_ids"):
        rejects({empty: []}, empty, "at least 1")


def test_ids_must_be_unique_uuids() -> None:
    rejects({"contact_ids": ["not-a-uuid"]}, "contact_ids", "not a UUID")
    same = str(uuid.uuid4())
    rejects({"list_ids": [same, same.upper()]}, "list_ids", "twice")
    rejects({"tag_ids": [5]}, "tag_ids", "strings")
    rejects({"contact_ids": [*many(600)[:599], many(1)[0]]}, "contact_ids", "twice")


@pytest.mark.parametrize(
    "spelling",
    [
        "04fe9a97a57943c5bb1a58ed29bf0a6a",
        "{04fe9a97-a579-43c5-bb1a-58ed29bf0a6a}",
        "urn:uuid:04fe9a97-a579-43c5-bb1a-58ed29bf0a6a",
        "04fe9a97-a579-43c5-bb1a-58ed29bf0a6a\n",
        " 04fe9a97-a579-43c5-bb1a-58ed29bf0a6a",
        "04fe9a-a579-43c5-bb1a-58ed29bf0a6a",
    ],
)
def test_ids_are_canonical_hyphenated_uuids(spelling: str) -> None:
    """Python's UUID() takes these spellings; Constant Contact refuses them with a 400."""
    rejects({"contact_ids": [spelling]}, "contact_ids", "not a UUID")
    rejects({"list_ids": [spelling]}, "list_ids", "not a UUID")
    rejects({"exclude": {"contact_ids": [spelling]}}, "exclude.contact_ids", "not a UUID")


def test_more_than_500_contact_ids_are_sharded_in_request_order() -> None:
    wanted = many(1_234)
    fields = ["email_address", "updated_at"]
    request = ExportRequest.model_validate(
        {"contact_ids": wanted, "status": "active", "fields": fields}
    )
    shards = request.shards()
    assert [len(s["contact_ids"]) for s in shards] == [500, 500, 234]
    assert [i for s in shards for i in s["contact_ids"]] == wanted
    for shard in shards:
        assert shard == {"contact_ids": shard["contact_ids"], "status": "active", "fields": fields}
    shards[0]["fields"].append("city")
    assert shards[1]["fields"] == fields  # each shard is a body of its own
    assert request.api_body()["contact_ids"] == wanted
    assert len(ExportRequest.model_validate({"contact_ids": many(50_000)}).shards()) == 100


@pytest.mark.parametrize(
    "export",
    [
        {},
        {"contact_ids": ids(500), "status": "removed"},
        {"contact_ids": ids(1)},
        {"list_ids": ids(3), "exclude": {"contact_ids": ids(2)}, "fields": ["city"]},
        {"segment_ids": 4},
    ],
)
def test_a_request_within_the_caps_is_one_shard(export: dict[str, Any]) -> None:
    request = ExportRequest.model_validate(export)
    assert request.shards() == [request.api_body()]


def test_more_than_500_contact_ids_still_combine_only_with_status() -> None:
    rejects({"contact_ids": many(501), "list_ids": ids(1)}, "contact_ids", "list_ids")
    rejects({"contact_ids": many(501), "new_subscriber": True}, "contact_ids", "new_subscriber")


def test_invalid_requests_are_not_retried() -> None:
    assert not issubclass(InvalidExportRequest, TransientError)


@pytest.mark.parametrize(
    ("export", "pair"),
    [
        (
            {"contact_ids": ids(1), "list_ids": ids(1)},
            "contact_ids cannot be combined with list_ids",
        ),
        (
            {"contact_ids": ids(1), "segment_id": 1},
            "contact_ids cannot be combined with segment_id",
        ),
        ({"list_ids": ids(1), "tag_ids": ids(1)}, "list_ids cannot be combined with tag_ids"),
        ({"tag_ids": ids(1), "status": "active"}, "status cannot be combined with tag_ids"),
        ({"segment_id": 1, "status": "active"}, "status cannot be combined with segment_id"),
        ({"all_active_contacts": True, "list_ids": ids(1)}, "list_ids cannot be combined"),
        ({"all_active_contacts": True, "status": "active"}, "cannot be combined"),
        ({"new_subscriber": True, "contact_ids": ids(1)}, "cannot be combined"),
        ({"new_subscriber": True, "status": "active"}, "cannot be combined"),
        ({"exclude": {"contact_ids": ids(1)}, "contact_ids": ids(1)}, "cannot be combined"),
        ({"list_ids": ids(1), "status": "active", "exclude": {"contact_ids": ids(1)}}, "status"),
    ],
)
def test_mutually_exclusive_sources(export: dict[str, Any], pair: str) -> None:
    rejects(export, pair)


def test_status_must_be_known() -> None:
    rejects({"status": "bounced"}, "status")


def test_opt_in_and_opt_out_details_need_email_address() -> None:
    rejects(
        {"fields": ["first_name", "email_optout_reason"]}, "email_optout_reason", "email_address"
    )


def test_fields_must_be_distinct_and_non_empty() -> None:
    rejects({"fields": []}, "fields")
    rejects({"fields": ["city", "city"]}, "twice")


def test_unknown_keys_and_wrong_types_are_named() -> None:
    rejects({"lists": ids(1)}, "lists")
    rejects({"segment_id": "4"}, "segment_id")
    rejects({"all_active_contacts": "yes"}, "all_active_contacts")
    with pytest.raises(InvalidExportRequest, match="colour"):
        parse_job_request({"export": {}, "colour": "blue"})


def test_unknown_fields_are_passed_on_and_listed() -> None:
    request = ExportRequest.model_validate({"fields": ["email_address", "favourite_colour"]})
    assert request.api_body() == {"fields": ["email_address", "favourite_colour"]}
    assert request.unknown_fields == ["favourite_colour"]


def test_older_segment_ids_spelling_is_accepted_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        request = ExportRequest.model_validate({"segment_ids": 9})
    assert request.api_body() == {"segment_id": 9}
    assert "segment_ids" in caplog.text


def test_destination_and_job_fields() -> None:
    with pytest.raises(InvalidExportRequest, match="bucket"):
        parse_job_request({"destination": {"bucket": "ab"}})
    with pytest.raises(InvalidExportRequest, match="key"):
        parse_job_request({"destination": {"key": "/abs"}})
    with pytest.raises(InvalidExportRequest, match="job_id"):
        parse_job_request({"job_id": "../../etc"})
    with pytest.raises(InvalidExportRequest, match="account"):
        parse_job_request({"account": ""})
    parsed = parse_job_request(
        {"job_id": "crm-sync-2026-11-26", "destination": {"bucket": "exports", "key": "a/b.csv"}}
    )
    assert parsed.destination.key == "a/b.csv"
