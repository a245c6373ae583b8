"""S3 over https, on both local servers (rclone and SeaweedFS), each serving a certificate signed
by a throwaway CA (devstack/tls.py): what a worker stores through TLS, what it signs there, and
what an operator sees when the worker does not trust the server's certificate.

A worker trusts a private CA through ``AWS_CA_BUNDLE``, which botocore reads when a client is made;
the tests set it the same way. A client made without it is one that does not trust the server.
"""

from __future__ import annotations

import hashlib
import io
import random
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import SSLError, UnseekableStreamError

from contact_exports_cli.doctor import Outcome, check_bucket
from devstack.s3server import ACCESS_KEY, SECRET_KEY, RcloneS3, S3Server
from devstack.seaweedfs import SeaweedS3
from tests.integration.helpers import sent_headers
from workers.exceptions import StorageError
from workers.s3 import storage
from workers.s3.checksums import DEFAULT
from workers.s3.storage import MIN_PART_SIZE, MultipartWriter, make_s3_client, payload_signing
from workers.s3.streamput import ChunkedBody, put_stream
from workers.settings import Settings

pytestmark = pytest.mark.integration

BUCKET = "https-tests"
#: Random, so a part stored in the wrong place or order cannot compare equal.
BODY = random.Random(20261204).randbytes(2 * MIN_PART_SIZE + 123_457)  # three parts
SMALL = BODY[: 1024 * 1024 + 17]  # two aws-chunked chunks
METADATA = {"job-id": "j-1"}
UNTRUSTED = "S3 server's TLS certificate is not trusted"
SERVERS = {"rclone": RcloneS3, "seaweedfs": SeaweedS3}
WORKER_ATTEMPTS = storage.S3_MAX_ATTEMPTS


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp(f"{request.param}-https")
    with SERVERS[request.param](root / "data", root / "server.log", tls=True) as running:
        assert running.endpoint_url.startswith("https://")
        running.create_bucket(BUCKET)
        yield running


@pytest.fixture(scope="module")
def session() -> boto3.Session:
    """One session for the module's clients: it loads the S3 service model once."""
    return boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def settings_for(server: S3Server, **env: str) -> Settings:
    values = {k.lower(): v for k, v in (server.env() | env).items()}
    return Settings(cc_access_token="unused", **values)


@pytest.fixture
def trusting(server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A worker's environment with the server's CA in AWS_CA_BUNDLE."""
    monkeypatch.setenv("AWS_CA_BUNDLE", server.env()["AWS_CA_BUNDLE"])
    yield


@pytest.fixture
def not_trusting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's environment without the CA: only the usual public ones are trusted. A client
    retries a failed connection (S3_MAX_ATTEMPTS) with backoff; once is enough to see it fail."""
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setattr(storage, "S3_MAX_ATTEMPTS", 1)


def client_for(server: S3Server, session: boto3.Session, **env: str) -> Any:
    """The worker's client (``make_s3_client``), made under the environment of the test."""
    return make_s3_client(settings_for(server, **env), session)


def stored(server: S3Server, key: str) -> bytes:
    body: bytes = server.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return body


def exists(server: S3Server, key: str) -> bool:
    return bool(server.client().list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount"))


def upload_parts(s3: Any, key: str, body: bytes) -> storage.StoredObject:
    with MultipartWriter(
        s3, BUCKET, key, part_size=MIN_PART_SIZE, parts_in_flight=2, checksum=DEFAULT
    ) as writer:
        writer.write(body)
        return writer.complete()


# -- a. one streaming PUT ----------------------------------------------------------------------


@pytest.mark.usefixtures("trusting")
def test_one_streaming_put_stores_the_exact_bytes_over_https(
    server: S3Server, session: boto3.Session
) -> None:
    s3 = client_for(server, session)
    sent = sent_headers(s3, "PutObject")
    key = f"put/{uuid.uuid4().hex}.csv"
    summary, _ = put_stream(
        s3,
        BUCKET,
        key,
        ChunkedBody(io.BytesIO(SMALL), len(SMALL), checksum=DEFAULT),
        metadata=METADATA,
    )
    assert stored(server, key) == SMALL
    assert summary.sha256 == hashlib.sha256(SMALL).hexdigest()
    [headers] = sent
    assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


# -- b. a multipart upload ---------------------------------------------------------------------


@pytest.mark.usefixtures("trusting")
def test_a_multipart_upload_stores_the_exact_bytes_over_https(
    server: S3Server, session: boto3.Session
) -> None:
    key = f"parts/{uuid.uuid4().hex}.csv"
    result = upload_parts(client_for(server, session), key, BODY)
    assert (result.size, result.parts) == (len(BODY), 3)
    assert stored(server, key) == BODY


# -- c. payload signing over https -------------------------------------------------------------


@pytest.mark.usefixtures("trusting")
@pytest.mark.parametrize("signing", ["auto", "always"])
def test_over_https_parts_are_signed_only_when_always_is_asked_for(
    server: S3Server, session: boto3.Session, signing: str
) -> None:
    """``auto``: TLS protects the body, so no second hash pass (UNSIGNED-PAYLOAD); ``always``:
    each part's sha256 is signed. Either way the part's CRC32C goes in a header."""
    settings = settings_for(server, S3_PAYLOAD_SIGNING=signing)
    assert payload_signing(settings) is (signing == "always")
    s3 = make_s3_client(settings, session)
    sent = sent_headers(s3, "UploadPart")
    key = f"signing-{signing}/{uuid.uuid4().hex}.csv"
    upload_parts(s3, key, BODY)
    assert stored(server, key) == BODY
    parts = [
        BODY[:MIN_PART_SIZE],
        BODY[MIN_PART_SIZE : 2 * MIN_PART_SIZE],
        BODY[2 * MIN_PART_SIZE :],
    ]
    signed = [hashlib.sha256(part).hexdigest() for part in parts]
    hashes = sorted(headers["x-amz-content-sha256"] for headers in sent)
    if signing == "auto":
        assert hashes == ["UNSIGNED-PAYLOAD"] * 3
    else:
        assert hashes == sorted(signed)
    assert all("x-amz-checksum-crc32c" in headers for headers in sent)


# -- d. a certificate the worker does not trust ------------------------------------------------


@pytest.mark.usefixtures("not_trusting")
def test_an_untrusted_certificate_fails_a_streaming_put_saying_so(
    server: S3Server, session: boto3.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a worker has it: botocore retries the failed connection, which a stream cannot.
    monkeypatch.setattr(storage, "S3_MAX_ATTEMPTS", WORKER_ATTEMPTS)
    key = f"untrusted-put/{uuid.uuid4().hex}.csv"
    body = ChunkedBody(io.BytesIO(SMALL), len(SMALL), checksum=DEFAULT)
    with pytest.raises(StorageError, match=UNTRUSTED) as caught:
        put_stream(client_for(server, session), BUCKET, key, body, metadata=METADATA)
    assert "AWS_CA_BUNDLE" in str(caught.value)
    assert server.endpoint_url in str(caught.value)
    # botocore's own error says only that it cannot rewind the stream; the cause is kept.
    assert isinstance(caught.value.__context__, UnseekableStreamError)
    assert isinstance(caught.value.__cause__, SSLError)
    assert not exists(server, key)


@pytest.mark.usefixtures("not_trusting")
def test_an_untrusted_certificate_fails_a_multipart_upload_saying_so(
    server: S3Server, session: boto3.Session
) -> None:
    key = f"untrusted-parts/{uuid.uuid4().hex}.csv"
    with pytest.raises(StorageError, match=UNTRUSTED) as caught:
        upload_parts(client_for(server, session), key, BODY)
    assert "AWS_CA_BUNDLE" in str(caught.value)
    assert f"s3://{BUCKET}/{key}" in str(caught.value)
    assert not exists(server, key)


# -- the doctor ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("not_trusting")
def test_the_doctor_reports_an_untrusted_certificate_and_how_to_trust_it(
    server: S3Server, session: boto3.Session
) -> None:
    settings = settings_for(server)
    check = check_bucket(settings, BUCKET, make_s3_client(settings, session))
    assert check.outcome is Outcome.PROBLEM
    assert UNTRUSTED in check.detail
    assert "AWS_CA_BUNDLE" in check.detail
    assert "AWS_CA_BUNDLE" in check.fix


@pytest.mark.usefixtures("trusting")
def test_the_doctor_passes_over_https_with_the_ca_trusted(
    server: S3Server, session: boto3.Session
) -> None:
    settings = settings_for(server)
    check = check_bucket(settings, BUCKET, make_s3_client(settings, session))
    assert check.outcome is Outcome.OK, check
