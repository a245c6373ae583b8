"""One streaming PUT on both real S3 servers (``both_stores``): what it stores, what it sends,
and that a PUT which cannot finish leaves nothing at the key.

Both decode the aws-chunked framing and check the signature; rclone ignores the trailer's CRC32
(as it ignores the parts'), SeaweedFS checks it (tests/integration/test_seaweedfs_integrity.py
shows a wrong one refused), and tests/unit/test_streamput.py checks the trailer itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.integration.conftest import BUCKET, Store
from tests.integration.helpers import sent_headers, worker_s3
from tests.rawhttp import raw_server
from workers.constant_contact.results import ResultsBody
from workers.exceptions import BodyIncomplete, TransientError
from workers.s3.checksums import DEFAULT
from workers.s3.objectmeta import seal
from workers.s3.streamput import ChunkedBody, put_stream

pytestmark = [pytest.mark.integration, pytest.mark.both_stores]

#: A CSV of a little over 3 MiB (four chunks), quoted newlines across chunk edges.
CSV = b"Email,Notes\n" + b"".join(b'a%d@x.org,"one\ntwo"\n' % i for i in range(150_000))
METADATA = {"job-id": "j-1"}


@pytest.fixture
def s3(s3_store: Store) -> Any:
    """A fresh client each test, made as a worker makes it, so the request log below sees only
    that test's requests."""
    return worker_s3(s3_store.env)


def csv_response(body: bytes, announced: int) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {announced}\r\n"
    return (head + "Connection: close\r\n\r\n").encode() + body


@contextlib.contextmanager
def results(body: bytes, announced: int) -> Iterator[ResultsBody]:
    with raw_server(csv_response(body, announced)) as url:
        response = requests.get(url, stream=True, timeout=30)
        with contextlib.closing(response):
            yield ResultsBody(response, int(response.headers["Content-Length"]))


def exists(s3: Any, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount"))


def test_the_object_is_stored_byte_for_byte_from_one_signed_streaming_put(s3: Any) -> None:
    key = f"whole/{uuid.uuid4().hex}.csv"
    sent = sent_headers(s3, "PutObject")
    with results(CSV, len(CSV)) as source:
        body = ChunkedBody(source, len(CSV), checksum=DEFAULT)
        summary, stored = put_stream(s3, BUCKET, key, body, metadata=METADATA)
    stored_object = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored_object["Body"].read() == CSV
    assert stored_object["ContentType"] == "text/csv"
    # rclone capitalises metadata names; S3 keeps them as sent (workers.s3.objectmeta reads either).
    assert {k.lower(): v for k, v in stored_object["Metadata"].items()} == METADATA
    assert summary.sha256 == hashlib.sha256(CSV).hexdigest()
    assert summary.rows == 150_000
    assert (stored.size, stored.parts) == (len(CSV), 1)
    [headers] = sent
    assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert headers["content-encoding"] == "aws-chunked"
    assert headers["content-length"] == str(body.length)
    assert headers["x-amz-decoded-content-length"] == str(len(CSV))
    assert headers["x-amz-trailer"] == "x-amz-checksum-crc32c" == DEFAULT.header
    assert headers["x-amz-sdk-checksum-algorithm"] == "CRC32C"
    assert "transfer-encoding" not in headers
    assert DEFAULT.header not in headers  # its value travels in the trailer, after the content


def test_a_body_cut_short_raises_body_incomplete_and_stores_nothing(s3: Any) -> None:
    key = f"short/{uuid.uuid4().hex}.csv"
    with results(CSV[: 2 * 1024 * 1024 + 123], len(CSV)) as source:
        body = ChunkedBody(source, len(CSV), checksum=DEFAULT)
        with pytest.raises(BodyIncomplete):
            put_stream(s3, BUCKET, key, body, metadata=METADATA)
    assert not exists(s3, key)


def test_a_lease_lost_before_the_end_stores_nothing(s3: Any) -> None:
    key = f"lease/{uuid.uuid4().hex}.csv"

    def lease_lost() -> None:
        raise TransientError("download lease lost")

    with results(CSV, len(CSV)) as source:
        body = ChunkedBody(source, len(CSV), before_end=lease_lost, checksum=DEFAULT)
        with pytest.raises(TransientError, match="lease lost"):
            put_stream(s3, BUCKET, key, body, metadata=METADATA)
    assert body.measurement.size == len(CSV)  # every content byte had been sent
    assert not exists(s3, key)


def test_the_seal_leaves_no_aws_chunked_content_encoding_behind(s3: Any) -> None:
    """S3 drops ``aws-chunked`` from what it stores; rclone keeps it as the object's
    Content-Encoding, which would tell a reader to decode a framing that is not there. The seal
    rewrites the object's headers (REPLACE), and with them this one."""
    key = f"sealed/{uuid.uuid4().hex}.csv"
    with results(CSV, len(CSV)) as source:
        summary, stored = put_stream(
            s3, BUCKET, key, ChunkedBody(source, len(CSV), checksum=DEFAULT), metadata=METADATA
        )
    seal(s3, stored, METADATA, summary)
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert "aws-chunked" not in head.get("ContentEncoding", "")
    assert head["ContentType"] == "text/csv"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == CSV
