"""A job whose message was lost is found by the janitor and finished, on the caller's id.

Real Redis, rclone S3, the sandbox and a worker whose timeouts are short enough that the janitor
calls a job orphaned after a few seconds.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from contact_exports_client import make_app, submit_export
from sandbox.testing import SandboxProcess
from tests.integration.conftest import BUCKET, WorkerFactory
from tests.integration.helpers import RESULT_TIMEOUT, assert_stored_once, created_activities
from workers.export.job import Job
from workers.state.jobs import JobStore

pytestmark = pytest.mark.integration

#: Short enough that the janitor calls a job orphaned after a few seconds.
SHORT_TIMEOUTS = {
    "JANITOR_INTERVAL_SECONDS": "1",
    "BROKER_VISIBILITY_TIMEOUT": "3",
    "POLL_MAX_SECONDS": "1",
    "RETRY_MAX_SECONDS": "1",
    "LEASE_TTL_SECONDS": "2",
}


def test_an_export_whose_first_message_was_lost_is_sent_again_and_completes_once(
    start_worker: WorkerFactory, sandbox: SandboxProcess, s3: Any, redis_url: str
) -> None:
    """A broker restart can drop a message no worker has seen: the caller's record remains.

    First in this module, so that no worker is running yet to take the message.
    """
    broker = redis.Redis.from_url(redis_url)
    app = make_app(redis_url)
    result = submit_export({"fields": ["email_address"]}, app=app)
    queued = [key for key in broker.scan_iter("contact_exports*") if broker.type(key) == b"list"]
    assert [broker.llen(key) for key in queued] == [1]
    broker.delete(*queued)  # what Redis did to soak-655: popped, and never delivered
    before = created_activities(sandbox)
    start_worker(concurrency=1, **SHORT_TIMEOUTS)

    summary: dict[str, Any] = result.get(timeout=RESULT_TIMEOUT)

    assert summary["job_id"] == result.id
    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)


def test_an_orphaned_job_is_sent_again_and_completes_once(
    start_worker: WorkerFactory,
    client: Celery,
    sandbox: SandboxProcess,
    s3: Any,
    redis_url: str,
) -> None:
    start_worker(concurrency=1, **SHORT_TIMEOUTS)
    store = JobStore(redis.Redis.from_url(redis_url))
    job_id = f"orphan-{uuid.uuid4().hex[:8]}"
    result_id = str(uuid.uuid4())
    # What the export task writes before its chain's first message — which Redis then lost.
    job = Job(
        job_id=job_id,
        result_id=result_id,
        account="default",
        requests=[{"fields": ["email_address"]}],
        bucket=BUCKET,
        key=f"contact-exports/default/{job_id}.csv",
        deadline=time.time() + 300,
        started_at="2026-11-26T00:00:00Z",
    )
    assert store.open(job, {"export": {"fields": ["email_address"]}, "job_id": job_id})
    before = created_activities(sandbox)

    summary: dict[str, Any] = AsyncResult(result_id, app=client).get(timeout=RESULT_TIMEOUT)

    assert summary["job_id"] == job_id
    assert created_activities(sandbox)[len(before) :] == [summary["activity_id"]]
    assert_stored_once(s3, sandbox, summary)


def test_live_and_finished_jobs_are_not_stale(redis_url: str) -> None:
    store = JobStore(redis.Redis.from_url(redis_url))
    job = Job(
        job_id=f"fresh-{uuid.uuid4().hex[:8]}",
        result_id="r",
        account="default",
        requests=[{}],
        bucket=BUCKET,
        key="k.csv",
        deadline=time.time() + 300,
        started_at="2026-11-26T00:00:00Z",
    )
    store.open(job, {"export": {}, "job_id": job.job_id})
    assert job.job_id not in {r["job_id"] for r in store.stale(60)}
    assert job.job_id in {r["job_id"] for r in store.stale(0)}
    store.save_result(job.job_id, {"rows": 1})
    assert job.job_id not in {r["job_id"] for r in store.stale(0)}
