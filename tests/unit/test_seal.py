"""The seal step: what it owes, what it does with a store that fails or an object that changed.

``seal_step`` runs on the unit tests' Redis; S3 is a fake that answers with S3 error codes.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError

from tests.unit.factories import a_job, a_settings, unit_services
from workers.export.job import ActivityRef, Job
from workers.export.outcome import Again
from workers.export.seal import seal_owed, seal_step
from workers.s3.storage import StoredObject
from workers.state.jobs import JobStore
from workers.transfer import TransferSummary

SUMMARY = TransferSummary(size=10, sha256="a" * 64, rows=2, columns=["Email"])
#: Few attempts, so that a seal that keeps failing is given up soon.
MAX_ATTEMPTS = 2


def job() -> Job:
    activities = [ActivityRef("act-1", "/v3/activities/act-1"), ActivityRef("act-2", "/x/act-2")]
    return a_job(activities=activities)


class FakeS3:
    """Records each copy; answers with the S3 error codes given, one per call, then with
    ``always`` on every call if given, else succeeds."""

    def __init__(self, *codes: str, always: str | None = None) -> None:
        self.codes = list(codes)
        self.always = always
        self.copies: list[dict[str, Any]] = []

    def copy(self, **kwargs: Any) -> None:
        self.copies.append(kwargs)
        code = self.codes.pop(0) if self.codes else self.always
        if code is not None:
            raise ClientError({"Error": {"Code": code, "Message": code}}, "CopyObject")


@pytest.fixture
def store(r: redis.Redis) -> JobStore:
    return JobStore(r)


def owed() -> dict[str, Any]:
    stored = StoredObject("b", "k.csv", 10, 1, etag='"abc-1"')
    found = seal_owed(job(), SUMMARY, stored)
    assert found is not None
    return found


def test_what_a_seal_owes_names_the_object_and_its_figures() -> None:
    assert owed() == {
        "bucket": "b",
        "key": "k.csv",
        "etag": '"abc-1"',
        "identity": {"job-id": "j1", "activity-id": "act-1,act-2"},
        "size": 10,
        "sha256": "a" * 64,
        "rows": 2,
        "options": {},
        "content_type": "text/csv",
    }
    adopted = StoredObject("b", "k.csv", 10, 0, sealed=True)
    assert seal_owed(job(), SUMMARY, adopted) is None


def run(store: JobStore, s3: FakeS3, redis_url: str) -> list[Again]:
    """The job's result recorded with its seal owed, then the seal run as the seal task runs it:
    again with one more failure counted for as long as the step asks to come back."""
    store.save_result("j1", {"rows": 2}, seal=owed())
    agains: list[Again] = []
    # The seal writes only where exports may go: here, bucket "b".
    settings = a_settings(retry_max_attempts=MAX_ATTEMPTS, jobs_redis_url=redis_url, s3_bucket="b")
    with unit_services(settings, s3=s3) as services:
        while (again := seal_step(services, "j1", owed(), failures=len(agains))) is not None:
            agains.append(again)
            assert len(agains) <= 10 * MAX_ATTEMPTS, "the seal never gives up"
    return agains


def test_the_seal_copies_the_object_onto_itself_with_its_figures(
    store: JobStore, redis_url: str
) -> None:
    s3 = FakeS3()
    assert run(store, s3, redis_url) == []
    [copy] = s3.copies
    assert copy["CopySource"] == {"Bucket": "b", "Key": "k.csv"}
    assert copy["ExtraArgs"]["CopySourceIfMatch"] == '"abc-1"'
    assert copy["ExtraArgs"]["Metadata"] == {
        "job-id": "j1",
        "activity-id": "act-1,act-2",
        "sha256": "a" * 64,
        "rows": "2",
        "bytes": "10",
    }
    assert "seal" not in store.record("j1")


def test_a_failed_seal_is_tried_again_and_stays_owed_until_done(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    owing: list[bool] = []
    s3 = FakeS3("SlowDown")
    original = s3.copy

    def copy(**kwargs: Any) -> None:
        owing.append("seal" in store.record("j1"))
        original(**kwargs)

    monkeypatch.setattr(s3, "copy", copy)
    [again] = run(store, s3, redis_url)
    assert again.countdown > 0
    assert len(s3.copies) == 2
    assert owing == [True, True]
    assert "seal" not in store.record("j1")


@pytest.mark.parametrize("code", ["PreconditionFailed", "NoSuchKey", "404"])
def test_an_object_replaced_or_gone_is_not_sealed_and_no_longer_owed(
    store: JobStore, code: str, redis_url: str
) -> None:
    s3 = FakeS3(code)
    assert run(store, s3, redis_url) == []
    assert len(s3.copies) == 1
    assert "seal" not in store.record("j1")


def test_a_seal_refused_for_good_is_given_up_at_once_as_a_dead_seal(
    store: JobStore, redis_url: str
) -> None:
    """Guards the seal that retried forever (550567c): access denied now ends after one copy,
    with the seal no longer owed and the record saying why. The result stays, and the job is
    not a failed job: it is among the dead seals, not the dead letters that ``retry`` runs."""
    s3 = FakeS3(always="AccessDenied")
    assert run(store, s3, redis_url) == []
    assert len(s3.copies) == 1
    record = store.record("j1")
    assert "seal" not in record
    assert record["state"] == "completed" and store.result("j1") == {"rows": 2}
    assert store.dead_seals() == ["j1"] and store.dead_letters() == []
    assert record["seal_error_type"] == "StorageError"
    assert "AccessDenied" in record["seal_error_message"]
    assert "error_type" not in record and "failed_step" not in record


def test_a_seal_that_keeps_failing_is_given_up_after_the_retry_limit(
    store: JobStore, redis_url: str
) -> None:
    """Guards the seal that retried forever (550567c): SlowDown on every copy is tried
    RETRY_MAX_ATTEMPTS + 1 times, then given up as a dead seal."""
    s3 = FakeS3(always="SlowDown")
    agains = run(store, s3, redis_url)
    assert len(agains) == MAX_ATTEMPTS
    assert len(s3.copies) == MAX_ATTEMPTS + 1
    assert "seal" not in store.record("j1")
    assert store.dead_seals() == ["j1"] and store.dead_letters() == []
