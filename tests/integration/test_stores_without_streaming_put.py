"""Stores that do not take one streaming PUT, on both real S3 servers (``both_stores``): the
download sends them parts, and never leaves a wrong object behind.

Some S3-compatible stores refuse the aws-chunked request (501 NotImplemented, 400 InvalidRequest,
411 MissingContentLength, ...); some that know no aws-chunked take it as a plain PUT and store
its framing as the content (s3rver 3.7.1 does). rclone and SeaweedFS are neither, so each test
makes the request reach the store as it would reach such a store: refused before its body is
sent, or signed and sent as a plain PUT of the framed bytes, which the store then keeps as
they are. Everything else (the sandbox's results, the store, the parts) is real.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from botocore.awsrequest import AWSResponse

from contact_exports_cli.doctor import Outcome, check_bucket
from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET, TOKEN, Download, Store
from tests.integration.helpers import completed_job, results_fetched, worker_s3
from workers.constant_contact.client import ConstantContactClient
from workers.exceptions import TransientError
from workers.s3.objectmeta import EncodingCheck
from workers.s3.streamput import ChunkedBody
from workers.settings import Settings
from workers.state.jobs import JobStore

pytestmark = [pytest.mark.integration, pytest.mark.both_stores("rclone", "seaweedfs")]

STREAMING = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header'
    b" you provided implies functionality that is not implemented</Message></Error>"
)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def refuse_streaming_puts(s3: Any, *, after: int = 0) -> list[str]:
    """Answer every streaming PUT ``s3`` sends as a store without aws-chunked does: at once
    (``after=0``), or once it has read ``after`` bytes of the body. The keys so refused are
    listed."""
    refused: list[str] = []

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        sha = request.headers.get("x-amz-content-sha256", b"")
        if (sha.decode() if isinstance(sha, bytes) else sha) != STREAMING:
            return None
        refused.append(request.url)
        if after:
            request.body.read(after)  # as a store that reads some of the body before it answers
        return AWSResponse(request.url, 501, {}, _Raw(NOT_IMPLEMENTED))

    s3.meta.events.register("before-send.s3.PutObject", answer)
    return refused


def send_streaming_puts_as_plain(s3: Any) -> None:
    """Sign and send every streaming PUT as a plain one: what a store that knows no aws-chunked
    makes of it, so the store keeps the framed bytes as the object."""

    def plain(request: Any, **_: Any) -> None:
        if isinstance(request.body, ChunkedBody):
            request.context.pop("checksum", None)  # signed UNSIGNED-PAYLOAD, not a trailer
            for name in ("Content-Encoding", "X-Amz-Trailer", "X-Amz-Decoded-Content-Length"):
                del request.headers[name]

    s3.meta.events.register_last("before-sign.s3.PutObject", plain)


@pytest.fixture
def settings(s3_store: Store) -> Settings:
    """Exports this small go in one streaming PUT where the store takes it."""
    values = {name.lower(): value for name, value in s3_store.env.items()}
    return Settings(cc_access_token=TOKEN, s3_part_size_mib=5, **values)


@pytest.fixture
def s3(s3_store: Store) -> Any:
    """A client made as a worker makes it, of the test's own: the hooks above stay on it."""
    return worker_s3(s3_store.env)


def stored_bytes(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_a_store_that_refuses_the_streaming_put_is_sent_parts_from_the_same_answer(
    sandbox: SandboxProcess,
    api: ConstantContactClient,
    owned: redis.Redis,
    s3: Any,
    stream: Download,
    encoding: EncodingCheck,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = refuse_streaming_puts(s3)
    job = completed_job(api, owned, BUCKET)
    with caplog.at_level("WARNING", logger="workers.export.download"):
        summary, stored = stream(job)
    assert len(refused) == 1
    # Refused before a byte was read: the same results answer went in parts, fetched once.
    assert results_fetched(sandbox, job) == 1
    assert stored.parts == 1 and stored.size == summary.size
    assert hashlib.sha256(stored_bytes(s3, job.key)).hexdigest() == summary.sha256
    assert encoding.refused is not None and "501 NotImplemented" in encoding.refused
    assert "sends the store parts from now on" in caplog.text
    # The process remembers: the next export goes in parts without trying.
    later = completed_job(api, owned, BUCKET)
    stream(later)
    assert len(refused) == 1


def test_a_refusal_after_the_results_were_read_sends_the_jobs_retry_in_parts_anywhere(
    sandbox: SandboxProcess,
    api: ConstantContactClient,
    owned: redis.Redis,
    s3: Any,
    stream: Download,
    encoding: EncodingCheck,
    store: JobStore,
) -> None:
    refused = refuse_streaming_puts(s3, after=1024 * 1024)
    job = completed_job(api, owned, BUCKET)
    with pytest.raises(TransientError, match="501 NotImplemented"):
        stream(job)
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix=job.key).get("KeyCount")
    assert encoding.refused is None  # not yet believed: the job's own options may draw it
    assert "501 NotImplemented" in (store.in_parts(job.job_id) or "")
    # The retry: this process has learnt nothing of the store, as another would not have; the
    # job's record sends it in parts, after which the process believes the refusal.
    summary, _ = stream(job)
    assert len(refused) == 1 and results_fetched(sandbox, job) == 2
    assert hashlib.sha256(stored_bytes(s3, job.key)).hexdigest() == summary.sha256
    assert encoding.refused is not None and "501 NotImplemented" in encoding.refused


def test_a_store_that_keeps_the_framing_as_content_loses_that_object_and_gets_parts(
    sandbox: SandboxProcess,
    api: ConstantContactClient,
    owned: redis.Redis,
    s3: Any,
    stream: Download,
    encoding: EncodingCheck,
    store: JobStore,
) -> None:
    send_streaming_puts_as_plain(s3)
    job = completed_job(api, owned, BUCKET)
    with pytest.raises(TransientError, match="does not decode aws-chunked"):
        stream(job)
    # The object held the framing: it is gone, and no manifest or result names it.
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix=job.key).get("KeyCount")
    assert encoding.refused is not None  # proof enough: this process sends parts from now on
    assert "does not decode aws-chunked" in (store.in_parts(job.job_id) or "")
    # The task's retry, in another process, which knows nothing of the store: parts.
    summary, stored = stream(job, EncodingCheck())
    assert results_fetched(sandbox, job) == 2
    data = stored_bytes(s3, job.key)
    assert len(data) == summary.size == stored.size
    assert hashlib.sha256(data).hexdigest() == summary.sha256
    assert b"\r\n0\r\n" not in data[-64:]  # no trailer kept


def test_the_doctor_says_a_store_takes_every_write(settings: Settings, s3: Any) -> None:
    check = check_bucket(settings, BUCKET, s3)
    assert check.outcome is Outcome.OK, check
    assert check.detail.endswith("takes every write")
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="contact-exports-doctor/").get("KeyCount")


@pytest.mark.parametrize("store_kind", ["refuses", "keeps the framing"])
def test_the_doctor_warns_of_a_store_without_streaming_puts_and_says_what_to_set(
    settings: Settings, s3: Any, store_kind: str
) -> None:
    if store_kind == "refuses":
        refuse_streaming_puts(s3)
    else:
        send_streaming_puts_as_plain(s3)
    check = check_bucket(settings, BUCKET, s3)
    assert check.outcome is Outcome.WARNING, check
    assert "cannot go in one streaming PUT" in check.detail
    assert "S3_SINGLE_PUT_MAX_MIB=0" in check.fix
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="contact-exports-doctor/").get("KeyCount")
