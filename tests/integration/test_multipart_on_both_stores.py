"""MultipartWriter and the in-place copy on both real S3 servers (``both_stores``: rclone, and
SeaweedFS, which checks each part's CRC32 and Content-MD5).

Memory is checked by counting part buffers, never by timing: the writer may hold at most
parts in flight + 1 of them, whatever the object's size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from typing import Any

import boto3
import pytest
import requests

from devstack.s3server import ACCESS_KEY, SECRET_KEY
from tests.integration.conftest import BUCKET, Store
from tests.integration.helpers import open_uploads
from tests.rawhttp import raw_server
from workers.constant_contact.results import ResultsBody
from workers.exceptions import BodyIncomplete, StorageError
from workers.s3.checksums import DEFAULT
from workers.s3.storage import MIN_PART_SIZE, MultipartWriter, make_s3_client
from workers.settings import Settings
from workers.transfer import copy_measured

pytestmark = [pytest.mark.integration, pytest.mark.both_stores]

PART = MIN_PART_SIZE
#: A CSV of a little over 4 parts, with quoted newlines across part boundaries.
CSV = b"Email,Notes\n" + b"".join(b'a%d@x.org,"one\ntwo"\n' % i for i in range(1_000_000))


def settings_for(store: Store, **env: str) -> Settings:
    values = {k.lower(): v for k, v in {**store.env, **env}.items()}
    return Settings(cc_access_token="unused", **values)


def client_for(store: Store, **env: str) -> Any:
    session = boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    return make_s3_client(settings_for(store, **env), session)


@pytest.fixture(scope="module")
def s3(s3_store: Store) -> Any:
    """The store's client as a worker makes it (``make_s3_client``)."""
    return client_for(s3_store)


def exists(s3: Any, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount"))


def csv_response(body: bytes, announced: int) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {announced}\r\n"
    return (head + "Connection: close\r\n\r\n").encode() + body


def stream(s3: Any, key: str, body: bytes, announced: int, *, in_flight: int = 2) -> Any:
    with raw_server(csv_response(body, announced)) as url:
        response = requests.get(url, stream=True, timeout=30)
        results = ResultsBody(response, int(response.headers["Content-Length"]))
        with (
            contextlib.closing(response),
            MultipartWriter(
                s3, BUCKET, key, part_size=PART, parts_in_flight=in_flight, checksum=DEFAULT
            ) as writer,
        ):
            summary = copy_measured(results.chunks(1 << 20), writer)
            stored = writer.complete()
    return summary, stored, writer


def test_a_whole_body_lands_byte_for_byte_in_bounded_buffers(s3: Any) -> None:
    key = f"whole/{uuid.uuid4().hex}.csv"
    summary, stored, writer = stream(s3, key, CSV, len(CSV))
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert data == CSV
    assert summary.sha256 == hashlib.sha256(CSV).hexdigest()
    assert summary.rows == 1_000_000
    assert stored.size == len(CSV)
    assert stored.parts == -(-len(CSV) // PART) > 3
    assert writer.buffers_allocated <= writer.max_buffers == 3


def test_a_body_cut_short_leaves_no_object_and_no_open_upload(s3: Any) -> None:
    key = f"cut/{uuid.uuid4().hex}.csv"
    with pytest.raises(BodyIncomplete):
        stream(s3, key, CSV[: 3 * PART + 123], len(CSV))
    assert not exists(s3, key)
    assert [u for u in open_uploads(s3, BUCKET) if u["Key"] == key] == []


def test_memory_stays_at_parts_in_flight_plus_one_however_many_parts(s3: Any) -> None:
    key = f"bounded/{uuid.uuid4().hex}.csv"
    block = os.urandom(1 << 20)
    with MultipartWriter(
        s3, BUCKET, key, part_size=PART, parts_in_flight=2, checksum=DEFAULT
    ) as writer:
        for _ in range(12 * 5):  # twelve parts
            writer.write(block)
            assert writer.buffers_allocated <= 3
        stored = writer.complete()
    assert stored.parts == 12
    assert writer.buffers_allocated == 3


def test_a_failing_part_upload_stops_the_writer_and_aborts(s3: Any) -> None:
    key = f"failing/{uuid.uuid4().hex}.csv"
    block = bytes(1 << 20)
    writer = MultipartWriter(s3, BUCKET, key, part_size=PART, parts_in_flight=1, checksum=DEFAULT)
    with pytest.raises(StorageError, match="upload_part"), writer:
        s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=writer.upload_id)
        for _ in range(40):
            writer.write(block)
        writer.complete()
    assert not exists(s3, key)


def test_an_empty_body_is_an_empty_object(s3: Any) -> None:
    key = f"empty/{uuid.uuid4().hex}.csv"
    summary, stored, _ = stream(s3, key, b"", 0)
    assert stored.size == summary.size == summary.rows == 0
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b""


def test_content_md5_parts_are_checked_by_the_server(s3_store: Store) -> None:
    s3 = client_for(s3_store, S3_CONTENT_MD5="true", S3_CHECKSUM="when_required")
    key = f"md5/{uuid.uuid4().hex}.csv"
    summary, _, _ = stream(s3, key, CSV, len(CSV))
    assert summary.sha256 == hashlib.sha256(CSV).hexdigest()
    # A wrong Content-MD5 is refused: the header really is checked by this server.
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key + ".bad")["UploadId"]
    with pytest.raises(s3.exceptions.ClientError, match="BadDigest"):
        s3.upload_part(
            Bucket=BUCKET,
            Key=key + ".bad",
            UploadId=upload,
            PartNumber=1,
            Body=b"x",
            ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==",
        )
    with contextlib.suppress(s3.exceptions.NoSuchUpload):  # rclone may drop it on BadDigest
        s3.abort_multipart_upload(Bucket=BUCKET, Key=key + ".bad", UploadId=upload)
