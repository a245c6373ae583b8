"""What a reader of a published result finds in S3, on both real stores here.

rclone and SeaweedFS keep ``Content-Encoding: aws-chunked`` on an object written by one
streaming PUT (AWS S3 and MinIO drop it). The download path (``stream_to_s3``) therefore seals
such an object before the result is published, so no reader of a result ever sees that
encoding; on a store that drops it nothing extra happens (tests/unit/test_objectmeta.py).
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from devstack.s3server import RcloneS3, S3Server
from tests.integration.helpers import download_step, sent_headers, worker_s3
from tests.rawhttp import raw_server
from workers.constant_contact.client import ConstantContactClient, StaticToken
from workers.export.job import ActivityRef, Job
from workers.s3.objectmeta import EncodingCheck
from workers.s3.storage import PART_CONTENT_TYPE, StoredObject
from workers.settings import Settings
from workers.state.jobs import JobStore
from workers.transfer import TransferSummary

pytestmark = pytest.mark.integration

BUCKET = "published"
#: A CSV of about 2 MiB: one streaming PUT (under S3_SINGLE_PUT_MAX_MIB).
CSV = b"Email address - other,First name\r\n" + b"".join(
    f"person.{n}@example.org,{random.Random(n).choice(['Ana', 'Zoe', 'Li'])}\r\n".encode()
    for n in range(60_000)
)


@pytest.fixture(scope="module")
def rclone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    with RcloneS3(tmp_path_factory.mktemp("rclone") / "data") as server:
        yield server


@pytest.fixture(scope="module", params=["rclone", "seaweedfs"])
def store(request: pytest.FixtureRequest) -> S3Server:
    server: S3Server = request.getfixturevalue(request.param)
    server.create_bucket(BUCKET)
    return server


def s3_for(server: S3Server) -> Any:
    return worker_s3(server.env())


def download(
    s3: Any, redis_url: str, encoding: EncodingCheck
) -> tuple[TransferSummary, StoredObject, dict[str, Any]]:
    """The CSV of one completed activity through ``stream_to_s3``, as the download step runs it;
    returns its figures, the object, and what a reader then GETs."""
    job_id = uuid.uuid4().hex
    jobs = JobStore(redis.Redis.from_url(redis_url))
    answer = f"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {len(CSV)}\r\n"
    href = f"/v3/contact_exports/{job_id}.csv"
    with raw_server((answer + "Connection: close\r\n\r\n").encode() + CSV, href) as url:
        client = ConstantContactClient(url.removesuffix(href) + "/v3", StaticToken("t"))
        job = Job(
            job_id=job_id,
            result_id=job_id,
            account="default",
            requests=[{}],
            bucket=BUCKET,
            key=f"exports/{job_id}.csv",
            deadline=0.0,
            started_at="2026-12-04T00:00:00Z",
            activities=[ActivityRef("a1", "/v3/activities/a1", href, completed=True)],
        )
        settings = Settings(cc_access_token="unused", s3_part_size_mib=5)
        summary, stored = download_step(
            job, api=client, s3=s3, store=jobs, settings=settings, encoding=encoding
        )
    return summary, stored, dict(s3.get_object(Bucket=BUCKET, Key=job.key))


def test_a_reader_of_a_published_result_never_sees_aws_chunked(
    store: S3Server, redis_url: str
) -> None:
    s3 = s3_for(store)
    encoding = EncodingCheck()
    summary, stored, got = download(s3, redis_url, encoding)
    assert "aws-chunked" not in got.get("ContentEncoding", "")
    assert got["ContentType"] == "text/csv"
    assert hashlib.sha256(got["Body"].read()).hexdigest() == summary.sha256
    assert hashlib.sha256(CSV).hexdigest() == summary.sha256
    # Sealed before the result: its figures are on the object, and no seal is owed for it.
    assert encoding.keeps is True and stored.sealed and stored.parts == 1
    metadata = {k.lower(): v for k, v in got["Metadata"].items()}
    assert metadata["sha256"] == summary.sha256 and metadata["rows"] == "60000"


def test_once_a_store_is_known_to_keep_it_exports_go_in_parts(
    store: S3Server, redis_url: str
) -> None:
    """A process that has learnt its store keeps the header stores later exports in parts,
    whose object carries no such header: no seal has to come before their result."""
    s3 = s3_for(store)
    encoding = EncodingCheck()
    encoding.keeps = True  # what the first single-PUT export of the process found
    summary, stored, got = download(s3, redis_url, encoding)
    assert "aws-chunked" not in got.get("ContentEncoding", "")
    assert hashlib.sha256(got["Body"].read()).hexdigest() == summary.sha256
    assert not stored.sealed  # in parts: the seal comes after the result, as ever


def test_parts_are_sent_as_bytes_and_the_object_keeps_its_own_type(
    store: S3Server, redis_url: str
) -> None:
    """Every part says application/octet-stream (SeaweedFS would otherwise gzip a part it
    sniffs as text in its gateway and gunzip it again in its volume server); the store must
    still give the object the type it was created with, not a part's."""
    s3 = s3_for(store)
    sent = sent_headers(s3, "UploadPart")
    encoding = EncodingCheck()
    encoding.keeps = True  # in parts, as above
    summary, stored, got = download(s3, redis_url, encoding)
    assert stored.parts == 1 and len(sent) == 1
    assert sent[0]["content-type"] == PART_CONTENT_TYPE
    assert got["ContentType"] == "text/csv"
    assert s3.head_object(Bucket=BUCKET, Key=stored.key)["ContentType"] == "text/csv"
    assert hashlib.sha256(got["Body"].read()).hexdigest() == summary.sha256
