"""The export request as the command line builds it from flags or a file, and checks it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contact_exports_cli.exceptions import InvalidUsageError
from contact_exports_cli.request import Filters, Target, build_kwargs, split_commas, validate
from workers.exceptions import InvalidExportRequest
from workers.export.request import parse_job_request

LIST = "0b7e8c5a-8f4e-4f51-9a62-2b5e8e7f1c10"
CONTACT = "5a4e2f8c-1d3b-4c6a-8e9f-0a1b2c3d4e5f"


def test_flags_become_the_api_body_with_only_what_was_given() -> None:
    filters = Filters(
        list_ids=[LIST], status="active", fields=split_commas(["email_address,first_name"])
    )
    kwargs = build_kwargs(filters, Target(), None)
    assert kwargs == {
        "export": {
            "list_ids": [LIST],
            "status": "active",
            "fields": ["email_address", "first_name"],
        }
    }


def test_each_flag_has_its_api_name() -> None:
    body = Filters(contact_ids=[CONTACT], tag_ids=[LIST], segment_id=7, all_active=True).body()
    assert body == {
        "contact_ids": [CONTACT],
        "tag_ids": [LIST],
        "segment_id": 7,
        "all_active_contacts": True,
    }


def test_no_flags_is_the_empty_body_every_contact() -> None:
    assert build_kwargs(Filters(), Target(), None) == {"export": {}}


def test_fields_split_on_commas_and_repeats_alike() -> None:
    assert split_commas(["a, b", "c", ",", " d "]) == ["a", "b", "c", "d"]
    assert split_commas(None) == []


def test_target_flags_fill_in_job_account_and_destination() -> None:
    kwargs = build_kwargs(Filters(), Target("job-1", "acme", "bucket-a", "k/x.csv"), None)
    assert kwargs == {
        "export": {},
        "job_id": "job-1",
        "account": "acme",
        "destination": {"bucket": "bucket-a", "key": "k/x.csv"},
    }


def test_a_file_with_export_is_the_whole_kwargs_and_flags_override_it(tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text(
        json.dumps(
            {
                "export": {"list_ids": [LIST]},
                "job_id": "from-file",
                "destination": {"bucket": "file-bucket", "key": "file.csv"},
            }
        )
    )
    kwargs = build_kwargs(Filters(), Target(job_id="from-flag", key="flag.csv"), path)
    assert kwargs == {
        "export": {"list_ids": [LIST]},
        "job_id": "from-flag",
        "destination": {"bucket": "file-bucket", "key": "flag.csv"},
    }


def test_a_file_without_export_is_the_body_alone(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"segment_id": 3}))
    assert build_kwargs(Filters(), Target(), path) == {"export": {"segment_id": 3}}


def test_a_file_and_body_flags_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text("{}")
    with pytest.raises(InvalidUsageError, match="not both"):
        build_kwargs(Filters(status="active"), Target(), path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("not json", "is not JSON"), ("[1, 2]", "must hold a JSON object")],
)
def test_a_file_that_is_no_json_object_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InvalidUsageError, match=message):
        build_kwargs(Filters(), Target(), path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidUsageError, match="cannot read"):
        build_kwargs(Filters(), Target(), tmp_path / "nope.json")


def test_an_invalid_request_is_refused_with_the_workers_own_message() -> None:
    kwargs = {"export": {"contact_ids": ["not-a-uuid"], "segment_id": 2}}
    with pytest.raises(InvalidExportRequest) as worker_side:
        parse_job_request(kwargs)
    with pytest.raises(InvalidUsageError) as ours:
        validate(kwargs)
    assert ours.value.message == str(worker_side.value)
    assert "contact_ids" in ours.value.message


def test_a_valid_request_passes() -> None:
    validate({"export": {"list_ids": [LIST], "status": "active"}, "job_id": "ok-1"})


def test_object_option_flags_join_the_destination_and_are_checked_like_the_workers() -> None:
    target = Target(
        key="contacts/dt={date}/{job_id}.{ext}",
        sse="aws:kms",
        kms_key_id="k1",
        storage_class="STANDARD_IA",
        tags=("team=crm", "pii=yes"),
    )
    kwargs = build_kwargs(Filters(), target, None)
    assert kwargs["destination"] == {
        "key": "contacts/dt={date}/{job_id}.{ext}",
        "sse": "aws:kms",
        "kms_key_id": "k1",
        "storage_class": "STANDARD_IA",
        "tags": {"team": "crm", "pii": "yes"},
    }
    validate(kwargs)
    with pytest.raises(InvalidUsageError, match="--tag takes key=value"):
        build_kwargs(Filters(), Target(tags=("team",)), None)
    with pytest.raises(InvalidUsageError, match="storage_class: 'COLD' is not one of"):
        validate(build_kwargs(Filters(), Target(storage_class="COLD"), None))
