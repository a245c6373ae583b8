"""The download step's own guarantees, run in-process on the sandbox, Redis and each real S3
server (``both_stores``):
a sealed export is adopted instead of streamed again; an unsealed one is rewritten identically;
the seal it owes describes the object it stored."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import redis

from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET, TOKEN, Download, Store
from tests.integration.helpers import completed_job, open_uploads, results_fetched
from workers.constant_contact.client import ConstantContactClient
from workers.export.download import sweep_uploads
from workers.export.job import Job
from workers.export.seal import seal_as_owed, seal_owed
from workers.s3.objectmeta import EncodingCheck, identity, sealed_export
from workers.s3.storage import StoredObject
from workers.settings import Settings
from workers.state.jobs import JobStore
from workers.transfer import TransferSummary

# Over https on the store that checks every checksum; rclone over https is proven by the
# storage suites (test_multipart_on_both_stores.py, test_streaming_put_on_both_stores.py, ...).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.both_stores("rclone", "seaweedfs", "seaweedfs+https"),
]


@pytest.fixture(params=["in one PUT", "in parts"])
def settings(request: pytest.FixtureRequest, s3_store: Store) -> Settings:
    """Every test runs both ways a download is stored: small exports go in one streaming PUT
    by default, large ones (here: all, with the threshold at 0) in a multipart upload."""
    values = {name.lower(): value for name, value in s3_store.env.items()}
    single_put_max = 128 if request.param == "in one PUT" else 0
    return Settings(
        cc_access_token=TOKEN, s3_part_size_mib=5, s3_single_put_max_mib=single_put_max, **values
    )


@pytest.fixture
def download(s3: Any, stream: Download) -> Download:
    """The download step's body, then the seal it owes, as the seal task applies it."""

    def run(job: Job) -> tuple[TransferSummary, StoredObject]:
        summary, stored = stream(job)
        owed = seal_owed(job, summary, stored)
        if owed is not None:
            seal_as_owed(s3, owed)
        return summary, stored

    return run


def test_a_sealed_export_is_adopted_without_fetching_the_file_again(
    sandbox: SandboxProcess,
    api: ConstantContactClient,
    owned: redis.Redis,
    s3: Any,
    download: Download,
) -> None:
    job = completed_job(api, owned, BUCKET)
    first, stored = download(job)
    assert results_fetched(sandbox, job) == 1
    # As if a Redis restart lost the result after the object was sealed: the step runs again.
    again, adopted = download(job)
    assert results_fetched(sandbox, job) == 1
    assert again == first
    assert (adopted.bucket, adopted.key, adopted.size) == (stored.bucket, stored.key, stored.size)
    data = s3.get_object(Bucket=BUCKET, Key=job.key)["Body"].read()
    assert hashlib.sha256(data).hexdigest() == first.sha256
    assert open_uploads(s3, BUCKET) == []


def test_an_unsealed_object_is_rewritten_with_identical_bytes_and_sealed(
    sandbox: SandboxProcess,
    api: ConstantContactClient,
    owned: redis.Redis,
    s3: Any,
    download: Download,
) -> None:
    job = completed_job(api, owned, BUCKET)
    first, _ = download(job)
    # As if the worker died between completing the upload and recording the result.
    s3.copy_object(
        Bucket=BUCKET,
        Key=job.key,
        CopySource={"Bucket": BUCKET, "Key": job.key},
        MetadataDirective="REPLACE",
        Metadata={"job-id": job.job_id, "activity-id": str(job.activity_id)},
        ContentType="text/csv",
    )
    again, _ = download(job)
    assert results_fetched(sandbox, job) == 2
    assert again == first
    head = s3.head_object(Bucket=BUCKET, Key=job.key)
    assert {k.lower(): v for k, v in head["Metadata"].items()}["sha256"] == first.sha256


def test_an_upload_no_record_names_is_swept_but_not_one_at_another_key(
    api: ConstantContactClient, owned: redis.Redis, s3: Any, store: JobStore
) -> None:
    job = completed_job(api, owned, BUCKET)
    # A process killed between S3 creating an upload and Redis recording it leaves the first.
    lost = s3.create_multipart_upload(Bucket=BUCKET, Key=job.key)["UploadId"]
    recorded = s3.create_multipart_upload(Bucket=BUCKET, Key=job.key)["UploadId"]
    store.add_upload(job.job_id, recorded)
    neighbour = s3.create_multipart_upload(Bucket=BUCKET, Key=f"{job.key}.other")["UploadId"]
    try:
        assert {u["UploadId"] for u in open_uploads(s3, BUCKET)} == {lost, recorded, neighbour}
        assert sweep_uploads(store, s3, job) == 2
        assert [u["UploadId"] for u in open_uploads(s3, BUCKET)] == [neighbour]
        assert store.uploads(job.job_id) == []
    finally:
        s3.abort_multipart_upload(Bucket=BUCKET, Key=f"{job.key}.other", UploadId=neighbour)


def test_the_stream_is_timed_in_the_log(
    api: ConstantContactClient,
    owned: redis.Redis,
    download: Download,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = completed_job(api, owned, BUCKET)
    with caplog.at_level("INFO", logger="workers.export.download"):
        summary, _ = download(job)
    [line] = [r for r in caplog.records if r.getMessage().startswith(f"job {job.job_id}: streamed")]
    assert f"streamed {summary.size} bytes" in line.getMessage()
    assert vars(line)["stream_seconds"] > 0


def test_the_stored_object_is_unsealed_until_the_seal_it_owes_is_applied(
    api: ConstantContactClient,
    owned: redis.Redis,
    s3: Any,
    stream: Download,
    encoding: EncodingCheck,
) -> None:
    # As on a store that drops aws-chunked (AWS S3): rclone keeps it, and there an object stored
    # in one PUT is sealed before the result (workers.s3.objectmeta.EncodingCheck).
    encoding.keeps = False
    job = completed_job(api, owned, BUCKET)
    summary, stored = stream(job)
    assert sealed_export(s3, BUCKET, job.key, identity(job.job_id, [job.activity_id or ""])) is None
    owed = seal_owed(job, summary, stored)
    assert owed is not None and owed["etag"] == stored.etag
    seal_as_owed(s3, owed)
    found = sealed_export(s3, BUCKET, job.key, owed["identity"])
    assert found is not None and found[0] == summary


def test_the_log_says_how_the_export_is_stored(
    api: ConstantContactClient,
    owned: redis.Redis,
    download: Download,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = completed_job(api, owned, BUCKET)
    with caplog.at_level("INFO", logger="workers.export.download"):
        summary, stored = download(job)
    answered = f"job {job.job_id}: results answered ({summary.size} bytes); storing them "
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith(answered)]
    assert line.endswith("in one PUT" if settings.s3_single_put_max_mib else "in parts")
    assert stored.parts == 1  # a small export: one PUT, or one part
