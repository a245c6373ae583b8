"""The S3 server stops in the middle of a download and comes back on the same data: the export
retries by the one retry policy and completes, with one intact object and no upload left open.

The steps run in this process (``tests.integration.chain``) against a real ``rclone serve s3``
of the module's own, which the test kills (SIGKILL) as the download step starts and starts again
on its data directory once the step has failed and been retried; the sandbox serves the results
slowly (about 11 s), so the kill falls inside the transfer. Both ways a download is
stored are covered: one streaming PUT and a multipart upload.

An S3 that answers ``503 SlowDown`` (as AWS does to a prefix written too fast) is played by a
``devstack.tcpproxy.TcpProxy`` in front of the same rclone: boto3 backs off and tries again
(standard mode, up to 5 tries a call), and past that the download comes back by the retry policy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from celery import Celery

from devstack.s3server import RcloneS3
from devstack.tcpproxy import TcpProxy
from sandbox.testing import SandboxProcess
from tests.integration.chain import Outbox, run_export
from tests.integration.conftest import ServicesFactory, SettingsFactory, Store, open_store
from tests.integration.helpers import assert_manifest_describes, assert_stored_once, wait_until
from workers.s3.storage import make_s3_client
from workers.services import Services, build_services
from workers.settings import Settings
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration

#: Transient failures the download must meet while S3 is down before it comes back: more than
#: one, so a retry that also found S3 down is seen to be retried in its turn.
FAILURES_WHILE_DOWN = 2


@pytest.fixture(scope="module")
def rclone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    with RcloneS3(tmp_path_factory.mktemp("outage") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def s3_store(rclone: RcloneS3) -> Store:
    """This module's steps write to the rclone it stops (conftest's fixtures follow it)."""
    return open_store("rclone", rclone.env())


def proxied_services(rclone: RcloneS3, settings: Settings, results_app: Celery) -> Services:
    """The steps' services, their S3 client speaking to ``settings.s3_endpoint_url`` (a proxy in
    front of ``rclone``) with rclone's credentials."""
    session = boto3.Session(
        aws_access_key_id=rclone.env()["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=rclone.env()["AWS_SECRET_ACCESS_KEY"],
    )
    return build_services(
        settings, sender=Outbox(), results=results_app.backend, s3=make_s3_client(settings, session)
    )


def download_failures(store: JobStore, job_id: str) -> int:
    record = store.record(job_id)
    return sum(int(v) for k, v in record.items() if k.endswith("failures:downloading"))


@pytest.mark.parametrize("single_put_max_mib", [128, 0], ids=["one PUT", "in parts"])
def test_an_export_rides_out_an_s3_outage_mid_download(
    rclone: RcloneS3,
    make_services: ServicesFactory,
    sandbox: SandboxProcess,
    s3: Any,
    single_put_max_mib: int,
) -> None:
    services = make_services(
        s3_single_put_max_mib=single_put_max_mib,
        # Enough tries, 1 s apart at most, to outlast the outage the test makes.
        retry_max_attempts=30,
        retry_max_seconds=1.0,
    )
    job_id = f"outage-{uuid.uuid4().hex[:8]}"
    sandbox.add_faults({"endpoint": "get_results", "bytes_per_second": 100_000, "times": 1})
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_export, services, {"export": {}, "job_id": job_id})
        wait_until(
            lambda: "attempts:download" in services.jobs.record(job_id),
            what="the download to start",
        )
        rclone.kill()
        try:
            wait_until(
                lambda: download_failures(services.jobs, job_id) >= FAILURES_WHILE_DOWN,
                timeout=60,
                what="the download to fail while S3 is down",
            )
        finally:
            rclone.start()
        summary = running.result(timeout=120)
    assert summary["job_id"] == job_id
    assert download_failures(services.jobs, job_id) >= FAILURES_WHILE_DOWN
    assert_stored_once(s3, sandbox, summary)


SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
    + f"Content-Length: {len(SLOW_DOWN_BODY)}\r\n".encode()
    + b"Connection: close\r\n\r\n"
    + SLOW_DOWN_BODY
)


@pytest.mark.parametrize(
    ("single_put_max_mib", "slow_downs", "failures"),
    [
        # A streamed PUT cannot be sent twice by boto3: each SlowDown fails one try of the
        # download, which the policy backs off.
        (128, 2, 2),
        # A part is sent again by boto3 itself, backing off (standard mode: up to 5 tries,
        # random x 1, 2, 4, 8 s apart), and the download never sees them.
        (0, 2, 0),
    ],
    ids=["one PUT", "in parts"],
)
def test_slow_down_answers_are_backed_off_then_retried_by_the_policy(
    rclone: RcloneS3,
    make_settings: SettingsFactory,
    results_app: Celery,
    sandbox: SandboxProcess,
    s3: Any,
    single_put_max_mib: int,
    slow_downs: int,
    failures: int,
) -> None:
    uploads: list[bytes] = []

    def slow_down(head: bytes) -> bytes | None:
        """SlowDown to the first uploads: a part, or the one PUT."""
        if not head.startswith(b"PUT "):
            return None
        uploads.append(head)
        return SLOW_DOWN if len(uploads) <= slow_downs else None

    with TcpProxy(rclone.port, answer=slow_down) as proxy:
        settings = make_settings(
            s3_endpoint_url=proxy.url(),
            s3_single_put_max_mib=single_put_max_mib,
            retry_max_attempts=3,
            retry_max_seconds=1.0,
        )
        services = proxied_services(rclone, settings, results_app)
        job_id = f"slowdown-{uuid.uuid4().hex[:8]}"
        summary = run_export(services, {"export": {}, "job_id": job_id})
        services.redis.close()
    assert len(proxy.answered) == slow_downs
    assert download_failures(services.jobs, job_id) == failures
    assert_stored_once(s3, sandbox, summary)


OPERATION_ABORTED_BODY = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>OperationAborted</Code><Message>A "
    b"conflicting conditional operation is in progress. Please try again.</Message></Error>"
)
#: A transient refusal botocore does not retry itself: the download step meets it at once.
OPERATION_ABORTED = (
    b"HTTP/1.1 409 Conflict\r\nContent-Type: application/xml\r\n"
    + f"Content-Length: {len(OPERATION_ABORTED_BODY)}\r\n".encode()
    + b"Connection: close\r\n\r\n"
    + OPERATION_ABORTED_BODY
)


@pytest.mark.parametrize("export_format", ["csv", "csv.gz"])
def test_a_manifest_refused_once_keeps_the_object_without_downloading_it_again(
    rclone: RcloneS3,
    make_settings: SettingsFactory,
    results_app: Celery,
    sandbox: SandboxProcess,
    s3: Any,
    export_format: str,
) -> None:
    refused: list[bytes] = []

    def refuse_manifest(head: bytes) -> bytes | None:
        """The first PUT of a manifest fails: the object is stored, its marker is not."""
        if head.startswith(b"PUT ") and b".manifest.json" in head.split(b"\r\n", 1)[0]:
            refused.append(head)
            return OPERATION_ABORTED if len(refused) == 1 else None
        return None

    with TcpProxy(rclone.port, answer=refuse_manifest) as proxy:
        settings = make_settings(
            s3_endpoint_url=proxy.url(), retry_max_attempts=3, retry_max_seconds=1.0
        )
        services = proxied_services(rclone, settings, results_app)
        job_id = f"manifest-{uuid.uuid4().hex[:8]}"
        summary = run_export(services, {"export": {}, "job_id": job_id, "format": export_format})
        services.redis.close()
    assert len(proxy.answered) == 1
    assert download_failures(services.jobs, job_id) == 1
    gets = sandbox.requests(endpoint="get_results", activity_id=summary["activity_id"])
    assert len(gets) == 1  # the second attempt took the stored object as it was
    assert_manifest_describes(s3, summary, export_format)
