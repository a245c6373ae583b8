"""Object options (``workers.s3.objectoptions``): S3's rules checked before any call, a job's
options over the environment's defaults, and the arguments each kind of write sends."""

from __future__ import annotations

import pytest

from tests.unit.factories import a_settings
from workers.exceptions import InvalidExportRequest
from workers.export.request import parse_job_request
from workers.s3.objectoptions import ObjectOptions, parse_tags


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ObjectOptions(sse="aws:kms:dsse"), "sse: 'aws:kms:dsse' is not one of AES256, aws:kms"),
        (ObjectOptions(sse="AES256", kms_key_id="k"), "kms_key_id: needs sse 'aws:kms'"),
        (ObjectOptions(storage_class="DEEP_ARCHIVE"), "DEEP_ARCHIVE cannot be sealed"),
        (ObjectOptions(storage_class="COLD"), "storage_class: 'COLD' is not one of"),
        (ObjectOptions.of(tags={f"k{n}": "v" for n in range(11)}), "at most 10"),
        (ObjectOptions.of(tags={"": "v"}), "a key must be 1 to 128 characters"),
        (ObjectOptions.of(tags={"k" * 129: "v"}), "a key must be 1 to 128 characters"),
        (ObjectOptions.of(tags={"k": "v" * 257}), "longer than 256"),
        (ObjectOptions.of(tags={"AWS:x": "v"}), "the aws: prefix"),
        (ObjectOptions.of(tags={"k": "a&b"}), "only letters, digits"),
    ],
)
def test_what_s3_would_refuse_is_named(options: ObjectOptions, message: str) -> None:
    problem = options.problem()
    assert problem is not None and message in problem


def test_what_s3_takes_passes() -> None:
    fine = ObjectOptions.of(
        "aws:kms", "arn:aws:kms:eu-west-1:1:key/k", "INTELLIGENT_TIERING", {"Team name": "a+b=c"}
    )
    assert fine.problem() is None


def test_a_jobs_options_win_over_the_defaults_and_tags_add_up() -> None:
    defaults = ObjectOptions.of("aws:kms", "default-key", "STANDARD_IA", {"team": "crm", "a": "1"})
    job = ObjectOptions.of(None, None, "STANDARD", {"a": "2"})
    assert job.over(defaults) == ObjectOptions.of(
        "aws:kms", "default-key", "STANDARD", {"team": "crm", "a": "2"}
    )
    # A job that names another encryption does not inherit the default's key; one that names
    # aws:kms without a key does, and so does a key alone... for the default aws:kms.
    assert ObjectOptions(sse="AES256").over(defaults).kms_key_id is None
    assert ObjectOptions(sse="aws:kms").over(defaults).kms_key_id == "default-key"
    assert ObjectOptions(kms_key_id="mine").over(defaults).kms_key_id == "mine"
    lone_key = ObjectOptions(kms_key_id="mine").over(ObjectOptions(sse="AES256"))
    assert lone_key.problem() == "kms_key_id: needs sse 'aws:kms'"


def test_each_write_gets_its_arguments() -> None:
    options = ObjectOptions.of("aws:kms", "k1", "STANDARD_IA", {"a": "1", "b c": "2"})
    assert options.write_args() == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "k1",
        "StorageClass": "STANDARD_IA",
        "Tagging": "a=1&b+c=2",
    }
    # The seal's copy keeps them: the same encryption and class, the tags copied.
    assert options.copy_args() == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "k1",
        "StorageClass": "STANDARD_IA",
        "TaggingDirective": "COPY",
    }
    assert ObjectOptions().write_args() == {} and ObjectOptions().copy_args() == {}
    assert ObjectOptions.from_json(options.to_json()) == options


def test_a_request_with_bad_options_is_an_invalid_export_request() -> None:
    with pytest.raises(InvalidExportRequest, match=r"destination: .*DEEP_ARCHIVE cannot be"):
        parse_job_request({"destination": {"storage_class": "DEEP_ARCHIVE"}})
    # A key alone is for the workers' default encryption: checked once merged with it.
    assert parse_job_request({"destination": {"kms_key_id": "k"}})
    with pytest.raises(InvalidExportRequest, match=r"destination\.sse"):
        parse_job_request({"destination": {"sse": "none"}})


def test_the_defaults_are_checked_at_start() -> None:
    assert parse_tags(" team = crm , pii=yes,") == {"team": "crm", "pii": "yes"}
    with pytest.raises(ValueError, match="S3_TAGS: 'team' is not key=value"):
        a_settings(s3_tags="team")
    with pytest.raises(ValueError, match="S3_STORAGE_CLASS: storage_class: GLACIER cannot"):
        a_settings(s3_storage_class="GLACIER")
    settings = a_settings(s3_sse="AES256", s3_tags="team=crm")
    assert settings.object_options == ObjectOptions.of("AES256", tags={"team": "crm"})
