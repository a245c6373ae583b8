"""The seal task: what it owes, what it does with a store that fails or an object that changed."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError

from tasks import sealing
from tests.unit.factories import a_job
from workers.export.job import Job
from workers.state.jobs import JobStore
from workers.s3.storage import StoredObject
from workers.transfer import TransferSummary

SUMMARY = TransferSummary(size=10, sha256="a" * 64, rows=2, columns=["Email"])


def job() -> Job:
    return a_job(activities=[{"activity_id": "act-1"}, {"activity_id": "act-2"}])


class FakeS3:
    """Records each copy; answers with the S3 error codes given, one per call, then succeeds."""

    def __init__(self, *codes: str) -> None:
        self.codes = list(codes)
        self.copies: list[dict[str, Any]] = []

    def copy(self, **kwargs: Any) -> None:
        self.copies.append(kwargs)
        if self.codes:
            code = self.codes.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": code}}, "CopyObject")


@pytest.fixture
def store(r: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> JobStore:
    store = JobStore(r)
    monkeypatch.setattr(sealing, "job_store", lambda: store)
    monkeypatch.setenv("CC_ACCESS_TOKEN", "t")
    return store


def owed() -> dict[str, Any]:
    stored = StoredObject("b", "k.csv", 10, 1, etag='"abc-1"')
    found = sealing.seal_owed(job(), SUMMARY, stored)
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
    }
    adopted = StoredObject("b", "k.csv", 10, 0, sealed=True)
    assert sealing.seal_owed(job(), SUMMARY, adopted) is None


def run(store: JobStore, s3: FakeS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sealing, "s3_client", lambda: s3)
    store.save_result("j1", {"rows": 2}, seal=owed())
    sealing.seal_export.apply(args=["j1", owed()]).get()


def test_the_seal_copies_the_object_onto_itself_with_its_figures(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = FakeS3()
    run(store, s3, monkeypatch)
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
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    owing: list[bool] = []
    s3 = FakeS3("SlowDown")
    original = s3.copy

    def copy(**kwargs: Any) -> None:
        owing.append("seal" in store.record("j1"))
        original(**kwargs)

    monkeypatch.setattr(s3, "copy", copy)
    run(store, s3, monkeypatch)
    assert len(s3.copies) == 2
    assert owing == [True, True]
    assert "seal" not in store.record("j1")


@pytest.mark.parametrize("code", ["PreconditionFailed", "NoSuchKey", "404"])
def test_an_object_replaced_or_gone_is_not_sealed_and_no_longer_owed(
    store: JobStore, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    s3 = FakeS3(code)
    run(store, s3, monkeypatch)
    assert len(s3.copies) == 1
    assert "seal" not in store.record("j1")
