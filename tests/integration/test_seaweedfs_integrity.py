"""What our integrity claims rely on, checked by a server that checks it: SeaweedFS.

rclone (every other integration test) ignores a part's CRC32C or CRC32 and the checksum of an
aws-chunked trailer, so it cannot show that a corrupted body is refused. SeaweedFS's S3 gateway
checks them: each test below sends one request whose checksum is wrong and shows that it is
refused and that nothing was stored, then sends the same request with the right checksum and
shows it stored.
The clients are the project's own (``make_s3_client``), configured as a worker would be.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.s3server import ACCESS_KEY, SECRET_KEY
from devstack.seaweedfs import SeaweedS3
from tests.integration.helpers import sent_headers, worker_s3
from workers.exceptions import StorageError
from workers.s3.checksums import DEFAULT, Algorithm, Checksum
from workers.s3.objectmeta import seal
from workers.s3.storage import MIN_PART_SIZE, MultipartWriter
from workers.s3.streamput import ChunkedBody, put_stream

pytestmark = pytest.mark.integration

BUCKET = "integrity-tests"
#: A little over 3 MiB: four aws-chunked chunks, the last one short; random, so no checksum of a
#: repeated pattern could pass by luck.
BODY = random.Random(20240607).randbytes(3 * 1024 * 1024 + 12_345)
METADATA = {"job-id": "j-1"}


@pytest.fixture(scope="module")
def seaweed(seaweedfs: SeaweedS3) -> SeaweedS3:
    seaweedfs.create_bucket(BUCKET)
    return seaweedfs


@pytest.fixture(scope="module")
def session() -> boto3.Session:
    """One session for the module's clients: it loads the S3 service model once."""
    return boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def client_for(server: SeaweedS3, session: boto3.Session, **env: str) -> Any:
    """The worker's client: by default CRC32C checksums and, over http, unsigned payloads."""
    return worker_s3(server.env() | env, session)


@pytest.fixture
def s3(seaweed: SeaweedS3, session: boto3.Session) -> Any:
    """A fresh client each test, so the request log of ``sent_headers`` sees only its requests."""
    return client_for(seaweed, session)


def corrupted(checksum_b64: str) -> str:
    """The same checksum with its lowest bit flipped: well-formed, and wrong."""
    raw = bytearray(base64.b64decode(checksum_b64))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def composite(checksum: Checksum, parts: list[str]) -> str:
    """What S3 keeps of a multipart object's part checksums: the checksum of their bytes, end to
    end, and the number of parts."""
    joined = b"".join(base64.b64decode(part) for part in parts)
    return f"{checksum.b64(checksum.update(joined))}-{len(parts)}"


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 — Content-MD5


def error_of(error: BaseException) -> tuple[int, str, str]:
    assert isinstance(error, ClientError), error
    return (
        error.response["ResponseMetadata"]["HTTPStatusCode"],
        error.response["Error"]["Code"],
        error.response["Error"]["Message"],
    )


def absent(s3: Any, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    return False


def new_key(kind: str) -> str:
    return f"{kind}/{uuid.uuid4().hex}.csv"


class Corrupted(Checksum):
    """Computes the right checksum and writes it wrong: the seam a test injects."""

    def b64(self, value: int) -> str:
        return corrupted(super().b64(value))


ALGORITHMS: list[Algorithm] = ["crc32c", "crc32"]


# -- a. a part's checksum (x-amz-checksum-crc32c or -crc32), as MultipartWriter sends it ----------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_part_with_a_wrong_checksum_is_refused_and_not_stored(
    s3: Any, algorithm: Algorithm
) -> None:
    checksum = Checksum(algorithm)
    key = new_key(f"part-{algorithm}")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm=checksum.name)
    upload = upload["UploadId"]
    sent = sent_headers(s3, "UploadPart")
    wrong = Corrupted(algorithm).of(BODY)
    with pytest.raises(ClientError) as refused:
        s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=BODY, **wrong)
    # The checksum is the only check the request carried: the refusal is the checksum's.
    [headers] = sent
    assert headers[checksum.header] == wrong[checksum.parameter]
    assert [name for name in headers if name.startswith("x-amz-checksum-")] == [checksum.header]
    assert "content-md5" not in headers
    # SeaweedFS words every digest mismatch as Content-MD5's.
    assert error_of(refused.value) == (
        400,
        "BadDigest",
        "The Content-Md5 you specified did not match what we received.",
    )
    assert s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload)
    assert absent(s3, key)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_part_with_the_right_checksum_is_stored(s3: Any, algorithm: Algorithm) -> None:
    checksum = Checksum(algorithm)
    key = new_key(f"part-{algorithm}-ok")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm=checksum.name)
    upload = upload["UploadId"]
    part = s3.upload_part(
        Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=BODY, **checksum.of(BODY)
    )
    listed_checksum = {checksum.parameter: part[checksum.parameter]}
    [listed] = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload)["Parts"]
    assert (listed["PartNumber"], listed["Size"], listed["ETag"]) == (1, len(BODY), part["ETag"])
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"], **listed_checksum}]},
    )
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == BODY
    head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert head[checksum.parameter] == composite(checksum, [checksum.of(BODY)[checksum.parameter]])


def test_the_writer_sends_every_part_with_its_crc32c_and_the_store_keeps_it(s3: Any) -> None:
    """MultipartWriter as the download uses it, with the worker's default settings."""
    key = new_key("writer")
    sent = sent_headers(s3, "UploadPart")
    with MultipartWriter(
        s3, BUCKET, key, part_size=MIN_PART_SIZE, parts_in_flight=2, checksum=DEFAULT
    ) as writer:
        writer.write(BODY)
        stored = writer.complete()
    assert stored.parts == 1 and len(BODY) < MIN_PART_SIZE
    [headers] = sent
    assert headers["x-amz-checksum-crc32c"] == DEFAULT.of(BODY)["ChecksumCRC32C"]
    head = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == composite(DEFAULT, [DEFAULT.of(BODY)["ChecksumCRC32C"]])
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == BODY


# -- b. Content-MD5 of a PutObject (S3_CONTENT_MD5 with S3_CHECKSUM=when_required) ---------------


@pytest.fixture
def md5_client(seaweed: SeaweedS3, session: boto3.Session) -> Any:
    """No CRC32 besides: the Content-MD5 is the request's only checksum."""
    return client_for(seaweed, session, S3_CHECKSUM="when_required", S3_CONTENT_MD5="true")


def test_a_put_with_a_wrong_content_md5_is_refused_and_not_stored(md5_client: Any) -> None:
    key = new_key("put-md5")
    sent = sent_headers(md5_client, "PutObject")
    wrong = corrupted(md5_b64(BODY))
    with pytest.raises(ClientError) as refused:
        md5_client.put_object(Bucket=BUCKET, Key=key, Body=BODY, ContentMD5=wrong)
    [headers] = sent
    assert headers["content-md5"] == wrong
    assert not [name for name in headers if name.startswith("x-amz-checksum-")]
    assert error_of(refused.value) == (
        400,
        "BadDigest",
        "The Content-Md5 you specified did not match what we received.",
    )
    assert absent(md5_client, key)


def test_a_put_with_the_right_content_md5_is_stored(md5_client: Any) -> None:
    key = new_key("put-md5-ok")
    answer = md5_client.put_object(Bucket=BUCKET, Key=key, Body=BODY, ContentMD5=md5_b64(BODY))
    assert answer["ETag"] == f'"{hashlib.md5(BODY).hexdigest()}"'  # noqa: S324
    assert md5_client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == BODY


# -- c. the checksum trailer of our streaming aws-chunked PUT (workers/s3/streamput.py) -----------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_streaming_put_with_a_wrong_trailer_is_refused_and_not_stored(
    s3: Any, algorithm: Algorithm
) -> None:
    """Everything but the trailer's value (framing, lengths, headers, signing) is the project's
    own request, as the download sends it."""
    key = new_key(f"stream-trailer-{algorithm}")
    sent = sent_headers(s3, "PutObject")
    body = ChunkedBody(io.BytesIO(BODY), len(BODY), checksum=Corrupted(algorithm))
    with pytest.raises(StorageError, match="InvalidDigest") as refused:
        put_stream(s3, BUCKET, key, body, metadata=METADATA)
    [headers] = sent
    assert headers["x-amz-trailer"] == f"x-amz-checksum-{algorithm}"
    assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert "content-md5" not in headers
    assert error_of(refused.value.__cause__ or refused.value) == (
        400,
        "InvalidDigest",
        "The Content-Md5 you specified is not valid.",
    )
    assert absent(s3, key)


def test_a_streaming_put_stores_exactly_the_bytes(s3: Any) -> None:
    key = new_key("stream")
    summary, stored = put_stream(
        s3,
        BUCKET,
        key,
        ChunkedBody(io.BytesIO(BODY), len(BODY), checksum=DEFAULT),
        metadata=METADATA,
    )
    got = s3.get_object(Bucket=BUCKET, Key=key)
    content = got["Body"].read()
    assert hashlib.sha256(content).hexdigest() == summary.sha256 == hashlib.sha256(BODY).hexdigest()
    assert got["ContentLength"] == stored.size == len(BODY)
    assert got["Metadata"] == METADATA


# -- what a reader sees of a streamed object before and after the seal ---------------------------


def test_a_streaming_put_alone_leaves_aws_chunked_as_the_objects_encoding(s3: Any) -> None:
    """SeaweedFS (like rclone, unlike AWS S3 and MinIO) keeps ``Content-Encoding: aws-chunked``
    on an object written by one streaming PUT. This is why the download step seals such an
    object before it publishes the result (test_published_objects_on_both_stores.py)."""
    key = new_key("encoding")
    put_stream(
        s3,
        BUCKET,
        key,
        ChunkedBody(io.BytesIO(BODY), len(BODY), checksum=DEFAULT),
        metadata=METADATA,
    )
    got = s3.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].read() == BODY  # the framing itself is decoded: only the header is wrong
    assert got.get("ContentEncoding") == "aws-chunked"


def test_after_the_seal_a_reader_sees_no_aws_chunked(s3: Any) -> None:
    key = new_key("sealed")
    summary, stored = put_stream(
        s3,
        BUCKET,
        key,
        ChunkedBody(io.BytesIO(BODY), len(BODY), checksum=DEFAULT),
        metadata=METADATA,
    )
    assert s3.head_object(Bucket=BUCKET, Key=key).get("ContentEncoding") == "aws-chunked"
    seal(s3, stored, METADATA, summary)
    got = s3.get_object(Bucket=BUCKET, Key=key)
    assert "aws-chunked" not in got.get("ContentEncoding", "")
    assert got["ContentType"] == "text/csv"
    assert got["Body"].read() == BODY
