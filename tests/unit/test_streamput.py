"""ChunkedBody: the aws-chunked encoding of a measured stream, its length known in advance.

The framing is decoded here by the rules of the format, not by re-running the encoder; the PUT
against a real S3 server is in tests/integration/test_streamput_rclone.py.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from types import SimpleNamespace
from typing import Any

import crc32c
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, UnseekableStreamError
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import given
from hypothesis import strategies as st

from workers.exceptions import BodyIncomplete, StorageError, TransientError
from workers.s3.checksums import DEFAULT, Checksum
from workers.s3.streamput import (
    MAX_PUT_BYTES,
    ChunkedBody,
    put_stream,
    refusal,
    single_put_allowed,
)
from workers.settings import Settings

CSV = b"Email,Notes\n" + b"".join(b'a%d@x.org,"one\ntwo"\n' % i for i in range(400))


def read_all(body: ChunkedBody, size: int = -1) -> bytes:
    out = bytearray()
    while block := body.read(size):
        out += block
    return bytes(out)


def decode(wire: bytes) -> tuple[bytes, dict[str, str], list[int]]:
    """Content, trailer headers and chunk sizes of an aws-chunked body."""
    content, sizes, at = bytearray(), [], 0
    while True:
        line_end = wire.index(b"\r\n", at)
        size = int(wire[at:line_end], 16)
        at = line_end + 2
        if size == 0:
            break
        content += wire[at : at + size]
        sizes.append(size)
        assert wire[at + size : at + size + 2] == b"\r\n"
        at += size + 2
    trailers = {}
    while (line_end := wire.index(b"\r\n", at)) != at:
        name, value = wire[at:line_end].decode().split(":", 1)
        trailers[name] = value
        at = line_end + 2
    assert at + 2 == len(wire), "nothing may follow the blank line that ends the trailer"
    return bytes(content), trailers, sizes


def crc32c_b64(data: bytes) -> str:
    return base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()


class Trickle:
    """A source that hands out at most ``most`` bytes per read, as a socket may."""

    def __init__(self, data: bytes, most: int) -> None:
        self._data = io.BytesIO(data)
        self._most = most

    def readinto(self, buffer: bytearray | memoryview) -> int:
        with memoryview(buffer) as view, view[: self._most] as some:
            return self._data.readinto(some)


@given(
    data=st.binary(max_size=300),
    chunk=st.integers(min_value=1, max_value=64),
    read_size=st.sampled_from([-1, 1, 3, 7, 64, 1000]),
    source_read=st.integers(min_value=1, max_value=100),
)
def test_the_wire_is_the_content_framed_with_its_crc32c_in_the_trailer(
    data: bytes, chunk: int, read_size: int, source_read: int
) -> None:
    body = ChunkedBody(Trickle(data, source_read), len(data), chunk_bytes=chunk, checksum=DEFAULT)
    wire = read_all(body, read_size)
    assert len(wire) == body.length  # what Content-Length announces, before a byte is read
    content, trailers, sizes = decode(wire)
    assert content == data
    assert trailers == {"x-amz-checksum-crc32c": crc32c_b64(data)}
    # Every chunk but the last is full: that is what makes the length known in advance.
    assert all(size == chunk for size in sizes[:-1])


def test_the_stream_is_measured_as_it_is_sent() -> None:
    body = ChunkedBody(io.BytesIO(CSV), len(CSV), chunk_bytes=1000, checksum=DEFAULT)
    read_all(body, 16384)
    summary = body.measurement.summary()
    assert summary.size == len(CSV)
    assert summary.sha256 == hashlib.sha256(CSV).hexdigest()
    assert summary.rows == len(list(csv.reader(io.StringIO(CSV.decode(), newline="")))) - 1
    assert summary.columns == ["Email", "Notes"]


def test_progress_is_reported_every_16_mib_not_every_chunk() -> None:
    data = b"x" * (40 * 1024 * 1024)
    seen: list[int] = []
    body = ChunkedBody(io.BytesIO(data), len(data), on_progress=seen.append, checksum=DEFAULT)
    read_all(body)
    assert seen == [16 << 20, 32 << 20]


def test_a_source_shorter_than_announced_never_reaches_the_trailer() -> None:
    body = ChunkedBody(io.BytesIO(CSV[:-10]), len(CSV), chunk_bytes=1000, checksum=DEFAULT)
    wire = bytearray()
    with pytest.raises(BodyIncomplete, match=f"{len(CSV) - 10} of {len(CSV)} announced"):
        while block := body.read():
            wire += block
    assert DEFAULT.header.encode() not in wire


def test_before_end_runs_once_the_last_chunk_is_read_and_before_it_is_sent() -> None:
    sent = bytearray()
    calls: list[int] = []
    body: ChunkedBody

    def before_end() -> None:
        calls.append(body.measurement.size)
        raise RuntimeError("lease lost")

    body = ChunkedBody(
        io.BytesIO(CSV), len(CSV), chunk_bytes=1000, before_end=before_end, checksum=DEFAULT
    )
    with pytest.raises(RuntimeError, match="lease lost"):
        while block := body.read():
            sent += block
    content, _, _ = decode(bytes(sent) + b"0\r\n\r\n")
    assert calls == [len(CSV)]  # the whole source was read and measured, once...
    assert content == CSV[: len(CSV) // 1000 * 1000]  # ...but the last chunk never went out


def test_before_end_that_passes_changes_nothing() -> None:
    calls: list[int] = []
    body = ChunkedBody(
        io.BytesIO(CSV),
        len(CSV),
        chunk_bytes=1000,
        before_end=lambda: calls.append(1),
        checksum=DEFAULT,
    )
    content, trailers, _ = decode(read_all(body))
    assert (content, calls) == (CSV, [1])
    assert trailers == {DEFAULT.header: crc32c_b64(CSV)}


def settings(**values: object) -> Settings:
    return Settings(cc_access_token="unused", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "size", "allowed"),
    [
        ({}, 64 << 20, True),
        ({}, 1024 << 20, True),
        ({}, (1024 << 20) + 1, False),
        ({}, None, False),  # no Content-Length: the encoded length is unknown
        ({}, 0, False),  # no last chunk to hold back
        ({"s3_single_put_max_mib": 0}, 1, False),
        ({"s3_single_put_max_mib": 5120}, MAX_PUT_BYTES + 1, False),
        ({"s3_checksum": "when_required"}, 1 << 20, False),
        ({"s3_content_md5": True}, 1 << 20, False),
        ({"s3_payload_signing": "always"}, 1 << 20, False),
    ],
)
def test_one_put_only_where_its_trailer_is_all_the_integrity_asked_for(
    values: dict[str, object], size: int | None, allowed: bool
) -> None:
    assert single_put_allowed(settings(**values), size) is allowed


class FailingS3:
    """A client whose PUT fails as botocore would report it."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.meta = SimpleNamespace(events=SimpleNamespace(register=lambda *a, **k: None))

    def put_object(self, **_: object) -> dict[str, str]:
        raise self.error


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        # botocore wanted to retry (5xx, throttling, a dropped connection) but cannot rewind.
        (UnseekableStreamError(stream_object="body"), TransientError),
        (ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject"), StorageError),
        (EndpointConnectionError(endpoint_url="http://s3"), StorageError),
    ],
)
def test_a_failed_put_is_retried_from_the_download_only_where_botocore_would_retry(
    error: Exception, raised: type[Exception]
) -> None:
    body = ChunkedBody(io.BytesIO(CSV), len(CSV), checksum=DEFAULT)
    with pytest.raises(raised) as caught:
        put_stream(FailingS3(error), "b", "k", body, metadata={})  # type: ignore[arg-type]
    assert type(caught.value) is raised


class RetryingS3(FailingS3):
    """Reads the body as botocore sends it; a read that fails is retried, which cannot rewind."""

    def put_object(self, *, Body: ChunkedBody, **_: object) -> dict[str, str]:  # noqa: N803
        try:
            while Body.read(16384):
                pass
        except Exception as error:
            raise UnseekableStreamError(stream_object=Body) from error
        return {"ETag": '"e"'}


def test_a_source_that_breaks_mid_put_surfaces_as_itself_not_as_botocores_retry() -> None:
    body = ChunkedBody(io.BytesIO(CSV[:-10]), len(CSV), chunk_bytes=1000, checksum=DEFAULT)
    with pytest.raises(BodyIncomplete):
        put_stream(RetryingS3(RuntimeError()), "b", "k", body, metadata={})  # type: ignore[arg-type]


@given(data=st.binary(max_size=300), chunk=st.integers(min_value=1, max_value=64))
def test_the_wire_is_byte_for_byte_what_botocores_own_trailer_path_sends(
    data: bytes, chunk: int
) -> None:
    """botocore sends this encoding to AWS S3 over https (its AwsChunkedWrapper with a CRC32):
    the same bytes from this body are what AWS already accepts and checks. (botocore's CRC32C
    needs awscrt, so the comparison is made with CRC32; the algorithm changes only the trailer.)"""
    crc32 = Checksum("crc32")
    botocore_wire = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=Crc32Checksum, checksum_name=crc32.header, chunk_size=chunk
    ).read()
    body = ChunkedBody(io.BytesIO(data), len(data), chunk_bytes=chunk, checksum=crc32)
    assert read_all(body) == botocore_wire


def answer(status: int, code: str) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (501, "NotImplemented"),
        (400, "InvalidRequest"),
        (400, "AuthorizationHeaderMalformed"),
        (411, "MissingContentLength"),
        (501, ""),  # whatever a 501 is called: the server lacks what the request needs
    ],
)
def test_answers_that_refuse_the_request_form_are_refusals(status: int, code: str) -> None:
    assert refusal(answer(status, code)) == f"{status} {code}".strip()


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "BadDigest"),  # the bytes went wrong on the way: the stream is retried as it is
        (400, "InvalidDigest"),
        (403, "AccessDenied"),
        (403, "SignatureDoesNotMatch"),  # the credentials: permanent, in parts as in one PUT
        (404, "NoSuchBucket"),
        (500, "InternalError"),
        (503, "SlowDown"),
    ],
)
def test_other_answers_are_not_refusals(status: int, code: str) -> None:
    assert refusal(answer(status, code)) is None
    assert refusal(EndpointConnectionError(endpoint_url="http://s3")) is None
