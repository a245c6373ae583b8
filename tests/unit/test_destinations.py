"""Where workers may write (S3_ALLOWED_BUCKETS): a job naming another bucket, a key outside its
bucket's prefix or an unsafe key is refused as InvalidExportRequest when the job starts, before
its record is opened or any API call is made; allowed ones start."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.unit.factories import a_settings, unit_services
from workers.exceptions import InvalidExportRequest
from workers.export.outcome import Next
from workers.export.start import start_export
from workers.s3.destinations import AllowedDestinations
from workers.state.jobs import JobStore

ALLOWED = "exports, lake/contacts/,lake/crm/"


def start(r: redis.Redis, redis_url: str, kwargs: dict[str, Any], **settings: Any) -> Next:
    values = {"s3_bucket": "exports", "s3_allowed_buckets": ALLOWED, **settings}
    with unit_services(a_settings(jobs_redis_url=redis_url, **values), s3=object()) as services:
        outcome = start_export(services, {"export": {}, **kwargs}, result_id="r-1")
    assert isinstance(outcome, Next)
    return outcome


@pytest.mark.parametrize(
    "destination",
    [
        {},  # S3_BUCKET, the key from EXPORT_KEY_TEMPLATE
        {"bucket": "exports", "key": "any/where.csv"},
        {"bucket": "lake", "key": "contacts/dt=2026-12-04/a.csv"},
        {"bucket": "lake", "key": "crm/a.csv"},
        {"key": "a/..b/c..d/e.csv"},  # dots inside a segment are a name, not a step up
    ],
)
def test_an_allowed_destination_starts(
    r: redis.Redis, redis_url: str, destination: dict[str, str]
) -> None:
    job = start(r, redis_url, {"destination": destination, "job_id": "j-1"}).job
    assert (job.bucket, job.key) == (
        destination.get("bucket", "exports"),
        destination.get("key", "contact-exports/default/j-1.csv"),
    )
    assert JobStore(r).record("j-1")["state"] == "queued"


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ({"bucket": "someone-elses"}, "'someone-elses' is not a bucket this service may write"),
        ({"bucket": "lake", "key": "finance/a.csv"}, "must start with 'contacts/' or 'crm/'"),
        ({"bucket": "lake"}, "must start with"),  # the template's key is checked too
        ({"key": "exports/../../etc/a.csv"}, "'..' segment"),
        ({"key": "a/\x1b[2Jb.csv"}, "control characters"),
        ({"key": "é" * 513}, "longer than 1024 bytes"),
    ],
)
def test_any_other_destination_is_refused_before_the_job_opens(
    r: redis.Redis, redis_url: str, destination: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidExportRequest, match=message):
        start(r, redis_url, {"destination": destination, "job_id": "j-2"})
    assert JobStore(r).record("j-2") == {}


def test_unset_allows_s3_bucket_alone(r: redis.Redis, redis_url: str) -> None:
    start(r, redis_url, {"job_id": "j-3"}, s3_allowed_buckets=None)
    with pytest.raises(InvalidExportRequest, match="'other' is not a bucket"):
        start(r, redis_url, {"destination": {"bucket": "other"}}, s3_allowed_buckets=None)


def test_a_list_that_leaves_out_s3_bucket_stops_the_worker_at_start() -> None:
    with pytest.raises(ValueError, match="leaves out S3_BUCKET"):
        a_settings(s3_bucket="exports", s3_allowed_buckets="lake/contacts/")
    with pytest.raises(ValueError, match="names no bucket"):
        AllowedDestinations.parse(" , ", None)
    assert AllowedDestinations.parse(None, None).buckets == {}
