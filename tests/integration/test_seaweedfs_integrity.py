"""What our integrity claims rely on, checked by a server that checks it: SeaweedFS.

rclone (every other integration test) ignores a part's CRC32 and the CRC32 of an aws-chunked
trailer, so it cannot show that a corrupted body is refused. SeaweedFS's S3 gateway checks them:
each test below sends one request whose checksum is wrong and shows that it is refused and that
nothing was stored, then sends the same request with the right checksum and shows it stored.
The clients are the project's own (``make_s3_client``), configured as a worker would be.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import uuid
import zlib
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.s3server import ACCESS_KEY, SECRET_KEY
from devstack.seaweedfs import SeaweedS3
from tests.integration.helpers import sent_headers
from workers.exceptions import StorageError
from workers.s3 import streamput
from workers.s3.objectmeta import seal
from workers.s3.storage import make_s3_client
from workers.s3.streamput import TRAILER, ChunkedBody, put_stream
from workers.settings import Settings

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
    """The worker's client: by default CRC32 checksums and, over http, unsigned payloads."""
    values = {k.lower(): v for k, v in (server.env() | env).items()}
    return make_s3_client(Settings(cc_access_token="unused", **values), session)


@pytest.fixture
def s3(seaweed: SeaweedS3, session: boto3.Session) -> Any:
    """A fresh client each test, so the request log of ``sent_headers`` sees only its requests."""
    return client_for(seaweed, session)


def crc32_b64(data: bytes) -> str:
    """As S3 takes it: the four big-endian bytes of the CRC32, base64."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def corrupted(checksum_b64: str) -> str:
    """The same checksum with its lowest bit flipped: well-formed, and wrong."""
    raw = bytearray(base64.b64decode(checksum_b64))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


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


# -- a. a part's CRC32 (x-amz-checksum-crc32), as MultipartWriter sends it -----------------------


def test_a_part_with_a_wrong_crc32_is_refused_and_not_stored(s3: Any) -> None:
    key = new_key("part-crc32")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    sent = sent_headers(s3, "UploadPart")
    wrong = corrupted(crc32_b64(BODY))
    with pytest.raises(ClientError) as refused:
        s3.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=BODY, ChecksumCRC32=wrong
        )
    # The CRC32 is the only check the request carried: the refusal is the CRC32's.
    [headers] = sent
    assert headers["x-amz-checksum-crc32"] == wrong
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


def test_a_part_with_the_right_crc32_is_stored(s3: Any) -> None:
    key = new_key("part-crc32-ok")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    right = crc32_b64(BODY)
    part = s3.upload_part(
        Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=BODY, ChecksumCRC32=right
    )
    [listed] = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload)["Parts"]
    assert (listed["PartNumber"], listed["Size"], listed["ETag"]) == (1, len(BODY), part["ETag"])
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key=key,
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
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


# -- c. the CRC32 trailer of our streaming aws-chunked PUT (workers/s3/streamput.py) -------------


def test_a_streaming_put_with_a_wrong_crc32_trailer_is_refused_and_not_stored(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ChunkedBody offers no seam for a wrong trailer; it formats the trailer's CRC32 through the
    module-level name ``streamput.crc32_b64``, which is replaced here by one that flips a bit.
    Everything else (framing, lengths, headers, signing) is the project's own request."""
    key = new_key("stream-trailer")
    trailers: list[str] = []

    def wrong_crc32_b64(crc: int) -> str:
        trailers.append(corrupted(base64.b64encode(crc.to_bytes(4, "big")).decode()))
        return trailers[-1]

    monkeypatch.setattr(streamput, "crc32_b64", wrong_crc32_b64)
    sent = sent_headers(s3, "PutObject")
    with pytest.raises(StorageError, match="InvalidDigest") as refused:
        put_stream(s3, BUCKET, key, ChunkedBody(io.BytesIO(BODY), len(BODY)), metadata=METADATA)
    assert trailers == [corrupted(crc32_b64(BODY))]  # the one trailer sent, and it was wrong
    [headers] = sent
    assert headers["x-amz-trailer"] == TRAILER
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
        s3, BUCKET, key, ChunkedBody(io.BytesIO(BODY), len(BODY)), metadata=METADATA
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
    put_stream(s3, BUCKET, key, ChunkedBody(io.BytesIO(BODY), len(BODY)), metadata=METADATA)
    got = s3.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].read() == BODY  # the framing itself is decoded: only the header is wrong
    assert got.get("ContentEncoding") == "aws-chunked"


def test_after_the_seal_a_reader_sees_no_aws_chunked(s3: Any) -> None:
    key = new_key("sealed")
    summary, stored = put_stream(
        s3, BUCKET, key, ChunkedBody(io.BytesIO(BODY), len(BODY)), metadata=METADATA
    )
    assert s3.head_object(Bucket=BUCKET, Key=key).get("ContentEncoding") == "aws-chunked"
    seal(s3, stored, METADATA, summary)
    got = s3.get_object(Bucket=BUCKET, Key=key)
    assert "aws-chunked" not in got.get("ContentEncoding", "")
    assert got["ContentType"] == "text/csv"
    assert got["Body"].read() == BODY
