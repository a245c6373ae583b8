"""The committed JSON Schemas in ``schemas/``: current, valid, and saying what the models say."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from workers.export.request import SCHEMA_DIR, json_schemas, main, parse_job_request, render_schema

ROOT = Path(__file__).resolve().parents[2]
KWARGS = "export-task-kwargs.schema.json"
RESULT = "export-result.schema.json"


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def sample_result() -> dict[str, Any]:
    """A result as the download step builds it (``workers.export.progress.result_of``)."""
    return {
        "job_id": "crm-sync-2026-11-26",
        "account": "default",
        "activity_id": "118e461a-0c9e-11ea-b1f5-fa163e6b01c1",
        "bucket": "exports",
        "key": "crm/contacts.csv",
        "uri": "s3://exports/crm/contacts.csv",
        "bytes": 1234,
        "rows": 3,
        "columns": ["First name", "Last name", "Email address - other", "Updated At"],
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "started_at": "2026-11-26T04:45:16.577Z",
        "finished_at": "2026-11-26T04:47:02.001Z",
        "unknown_fields": ["favourite_colour"],
        "activities": 1,
    }


@pytest.mark.parametrize("name", [KWARGS, RESULT])
def test_committed_schemas_are_current(name: str) -> None:
    committed = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert committed == render_schema(json_schemas()[name]), (
        f"schemas/{name} is stale: run `python -m workers.export.request --write-schema`"
    )
    Draft202012Validator.check_schema(json.loads(committed))


def test_write_schema_regenerates_both_files(tmp_path: Path) -> None:
    assert main(["--write-schema", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(json_schemas())
    for path in tmp_path.iterdir():
        assert path.read_text(encoding="utf-8") == (SCHEMA_DIR / path.name).read_text("utf-8")
    command = [
        sys.executable,
        "-m",
        "workers.export.request",
        "--write-schema",
        "--dir",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_a_result_validates_and_a_broken_one_does_not() -> None:
    check = validator(RESULT)
    result = sample_result()
    check.validate(result)
    check.validate({**result, "activities": 3, "shards": [1, 2]})  # new keys may be added
    for key in result:
        assert not check.is_valid({k: v for k, v in result.items() if k != key}), key
    for key, bad in [
        ("bytes", -1),
        ("rows", "3"),
        ("uri", "exports/crm/contacts.csv"),
        ("sha256", "E3B0"),
        ("columns", "First name"),
        ("started_at", "yesterday"),
        ("activities", 0),
        ("unknown_fields", None),
    ]:
        assert not check.is_valid({**result, key: bad}), key


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"export": {"contact_ids": ids(50_000), "status": "active"}},
        {
            "export": {
                "list_ids": ids(2),
                "new_subscriber": True,
                "exclude": {"contact_ids": ids(1)},
            }
        },
        {"export": {"segment_ids": 4}},
        {"export": {"all_active_contacts": False, "tag_ids": ids(3)}},
        {"export": {"fields": ["email_address", "email_optout_reason", "colour"]}},
        {"account": "acme.eu-1", "job_id": "a:b", "destination": {"bucket": "b.c-d", "key": "x"}},
    ],
)
def test_kwargs_the_model_accepts_the_schema_accepts(kwargs: dict[str, Any]) -> None:
    parse_job_request(kwargs)
    validator(KWARGS).validate(kwargs)


@pytest.mark.parametrize(
    "export",
    [
        {"contact_ids": ids(50_001)},
        {"contact_ids": ["04fe9a97a57943c5bb1a58ed29bf0a6a"]},
        {"contact_ids": ids(2) + ids(1)},
        {"list_ids": ids(51)},
        {"exclude": {"contact_ids": ids(51)}},
        {"contact_ids": ids(1), "list_ids": ids(1)},
        {"status": "active", "exclude": {"contact_ids": ids(1)}},
        {"segment_ids": 3, "status": "active"},
        {"segment_ids": 3, "segment_id": 3},
        {"all_active_contacts": True, "new_subscriber": True},
        {"fields": ["email_optin_date"]},
        {"fields": ["city", "city"]},
        {"status": "bounced"},
        {"segment_id": 0},
        {"lists": ids(1)},
    ],
)
def test_what_the_model_refuses_the_schema_refuses(export: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="invalid export request"):
        parse_job_request({"export": export})
    assert not validator(KWARGS).is_valid({"export": export})
